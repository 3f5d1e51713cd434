"""The sound labels the detector names, and which of them are distress: one definition for the models, fusion,
the incident rules' settings (severity by label) and alert routes (routes by label).

A checkpoint records the labels it was trained on (distress-cnn 1.x: the first seven); events carry a label as its
name, so adding a label never changes an event's schema.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def check_labels(labels: Iterable[str]) -> None:
    """A ValueError naming those of ``labels`` that are no sound label (a typo in a setting must not go unheard)."""
    if unknown := [label for label in labels if label not in SOUND_LABELS]:
        known = ", ".join(SOUND_LABELS)
        raise ValueError(f"unknown sound label(s) {', '.join(map(repr, unknown))}; the labels are {known}")
