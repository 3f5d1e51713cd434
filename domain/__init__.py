"""The product's vocabulary, defined once: what every layer above (events, models, actors, projections, frontend)
agrees on about audio and incidents.

* ``domain.audio`` - the audio contract: the pipeline's sample rate.
* ``domain.types`` - the words events, alerts, read models and the dashboard share: ``Severity``,
  ``IncidentStatus``, ``IncidentAction``, the reserved ``SYSTEM_ACTOR``.
* ``domain.incidents`` - an incident as its events tell it: ``IncidentRecord`` and its fold, the refusal rules for
  operator actions, incident and derived event ids, and the concurrency policy for incident events.

Layering: ``domain.audio`` and ``domain.types`` import nothing of this project, so ``events`` can type its fields
with them. ``domain.incidents`` folds event classes, so it imports ``events`` (and ``domain.types``) and nothing
else; nothing in ``events`` may import it. No module of ``domain`` imports ``actors``, ``models``, ``projections``,
``frontend``, ``config`` or ``cli``, and this package imports none of its modules, so each is imported on its own.
"""
