"""The sound labels the detector names, and which of them are distress: one definition for models and fusion.

A checkpoint records the labels it was trained on (distress-cnn 1.x: the first seven); events carry a label as its
name, so adding a label never changes an event's schema.
"""

from __future__ import annotations

SOUND_LABELS: tuple[str, ...] = (
    "background",
    "speech",
    "shout",
    "scream",
    "crying",
    "glass",
    "impact",
    "gunshot",  # gunfire and explosions
    "alarm",  # smoke and fire alarms, sirens
)
DISTRESS_LABELS: frozenset[str] = frozenset(SOUND_LABELS) - {"background", "speech"}
