"""Training apart from inference: the dataset and its synthesiser, training, metrics, evaluation, comparison and
the model card. Installed with the ``[train]`` extra; nothing at runtime imports it."""
