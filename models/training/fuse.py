"""How the YAMNet head and the CNN are fused, chosen on validation only (issue #30: the CNN is fused "only where
measurement shows it adds").

Both members are run once through the product's chain over the validation hours and events of
``models.training.decision``, and their scored windows kept. For each weighting of their log-odds
(``models.fused.mixed_probability``) the decision rule is then chosen as for a head alone, on the mixed windows,
by the product's own fusion and incident rules. The weighting whose rule catches the most validation events,
while opening no incident in the everyday hours, is kept; a tie goes to the rule that needs more evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from events.catalogue import DistressScored
from models.fused import mixed_probability
from models.training.decision import Replay, ScoredEvent, Trial, ValidationWindows, choose_decision
from models.training.head import Progress

# The head's weight first: it is the member that knows real-world sound; the CNN's share is what is measured.
WEIGHTINGS: tuple[Mapping[str, float], ...] = (
    {"yamnet": 3.0, "cnn": 1.0},
    {"yamnet": 2.0, "cnn": 1.0},
    {"yamnet": 1.0, "cnn": 1.0},
    {"yamnet": 1.0, "cnn": 2.0},
)


@dataclass(frozen=True)
class FusionTrial:
    """One weighting of the members with the best rule found for it."""

    weights: Mapping[str, float]
    trial: Trial


def mixed(
    head: Sequence[DistressScored], cnn: Sequence[DistressScored], weights: Mapping[str, float]
) -> list[DistressScored]:
    """The head's windows of a recording, each with the two members' probabilities mixed by ``weights``."""
    by_offset = {window.sample_offset: window for window in cnn}
    if len(by_offset) != len(cnn) or by_offset.keys() != {window.sample_offset for window in head}:
        raise ValueError("the two members' windows of one recording are not the same windows")
    return [
        replace(
            window,
            acoustic_probability=mixed_probability(
                window.acoustic_probability, by_offset[window.sample_offset].acoustic_probability, weights
            ),
        )
        for window in head
    ]


def mixed_windows(head: ValidationWindows, cnn: ValidationWindows, weights: Mapping[str, float]) -> ValidationWindows:
    """Both members' recorded validation windows as those of one fused model (``strict``: the same audio)."""
    return ValidationWindows(
        [mixed(hour, other, weights) for hour, other in zip(head.everyday, cnn.everyday, strict=True)],
        [
            ScoredEvent(event.label, event.start_s, event.end_s, mixed(event.windows, other.windows, weights))
            for event, other in zip(head.events, cnn.events, strict=True)
        ],
    )


def choose_fusion(
    head: ValidationWindows, cnn: ValidationWindows, replay: Replay, progress: Progress | None = None
) -> list[FusionTrial]:
    """Every weighting of ``WEIGHTINGS`` with the rule ``choose_decision`` keeps for it; the chosen one first."""
    tried = []
    for done, weights in enumerate(WEIGHTINGS):
        if progress:
            progress("fusion weightings", done, len(WEIGHTINGS))
        tried.append(FusionTrial(weights, choose_decision(mixed_windows(head, cnn, weights), replay)[0]))
    return sorted(tried, key=lambda fusion: (-fusion.trial.recall, -fusion.trial.accumulation.needed))
