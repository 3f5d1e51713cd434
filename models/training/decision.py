"""How a head's windows add up to an incident, chosen on validation only (issue #30, item 5).

The head is run once, through the product's chain, over hours of everyday validation audio and over validation
distress events placed in everyday audio; its scored windows are kept. Every candidate rule (operating point,
memory of the leaky evidence sum, evidence needed, weight of a loudness jump) is then tried on those windows by
the product's own fusion and incident rules (a ``Replay``, built on ``actors.whatif.fuse_again``), without running
the model again.
The rule kept catches the most validation events while opening no incident in the everyday hours; a tie goes to
the rule that needs more evidence, then to the higher point.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from events.catalogue import DistressScored
from models.fusion import Accumulation
from models.training.dataset import Dataset, benign_stream
from models.training.evaluate import distress_events, event_context
from models.training.head import Progress
from models.training.synth import Audio

# The scored windows of a recording through the product's chain (it lives in ``actors``, above the models).
Record = Callable[[Audio], list[DistressScored]]
# The onsets (s) of the incidents a rule opens on one stream's scored windows.
Replay = Callable[[Sequence[DistressScored], float, Accumulation], list[float]]

# An hour each. Six, not three: a rule that opened nothing in three such hours opened 3 incidents in six other
# validation hours (seeds 100-105, as `evaluate-head --split validation` runs them; docs/yamnet.md).
VALIDATION_EVERYDAY_SEEDS = (200, 201, 202, 203, 204, 205)
VALIDATION_EVENTS_PER_LABEL = 40
POINTS = (0.99, 0.98, 0.95, 0.9, 0.8, 0.7, 0.5)
MEMORIES = (0.0, 0.5, 0.7, 0.85)
NEEDED = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
JUMP_WEIGHTS = (0.0, 1.0, 2.0)


@dataclass(frozen=True)
class ScoredEvent:
    label: str
    start_s: float
    end_s: float
    windows: list[DistressScored]

    def caught_by(self, onsets_s: Sequence[float]) -> bool:
        return any(self.start_s - 1.5 <= onset <= self.end_s + 0.5 for onset in onsets_s)


@dataclass(frozen=True)
class ValidationWindows:
    """The head's scored windows of everyday validation hours and of validation distress events."""

    everyday: list[list[DistressScored]]
    events: list[ScoredEvent]


@dataclass(frozen=True)
class Trial:
    """One rule on the validation windows."""

    point: float
    accumulation: Accumulation
    everyday_incidents: int
    caught: dict[str, int]
    events: dict[str, int]

    @property
    def recall(self) -> float:
        return sum(self.caught.values()) / max(1, sum(self.events.values()))


def record_validation(
    record: Record,
    dataset: Dataset,
    data_dir: Path,
    *,
    everyday_s: float = 3600.0,
    events_per_label: int = VALIDATION_EVENTS_PER_LABEL,
    progress: Progress | None = None,
) -> ValidationWindows:
    """Run the chain once over the validation hours (``everyday_s`` each) and events, keeping its scored windows."""
    everyday = []
    for done, seed in enumerate(VALIDATION_EVERYDAY_SEEDS):
        if progress:
            progress("everyday validation hours", done, len(VALIDATION_EVERYDAY_SEEDS))
        everyday.append(record(benign_stream(dataset.config, everyday_s, "validation", data_dir, seed=seed)))
    context = event_context(dataset.config, "validation", data_dir)
    placed = distress_events(dataset.split("validation"), context, events_per_label, labels=dataset.config.labels)
    events = [ScoredEvent(event.label, event.start_s, event.end_s, record(event.audio)) for event in placed]
    return ValidationWindows(everyday, events)


def trial(windows: ValidationWindows, replay: Replay, point: float, accumulation: Accumulation) -> Trial:
    """One rule on the recorded windows; stops counting the everyday hours at their first incident."""
    incidents = 0
    for hour in windows.everyday:
        incidents += len(replay(hour, point, accumulation))
        if incidents:
            break
    events: dict[str, int] = {}
    caught: dict[str, int] = {}
    for event in windows.events if not incidents else ():  # a rule that fails the hours is not kept
        events[event.label] = events.get(event.label, 0) + 1
        caught[event.label] = caught.get(event.label, 0) + event.caught_by(replay(event.windows, point, accumulation))
    return Trial(point, accumulation, incidents, caught, events)


def choose_decision(windows: ValidationWindows, replay: Replay, progress: Progress | None = None) -> list[Trial]:
    """For every point, memory and jump weight, the least evidence that opens no incident in the everyday hours
    (each is tried from the least up); the chosen rule first, then the others, best first."""
    kept: list[Trial] = []
    grid = list(itertools.product(POINTS, MEMORIES, JUMP_WEIGHTS))
    for done, (point, memory, jump_weight) in enumerate(grid):
        if progress:
            progress("decision rules", done, len(grid))
        for needed in NEEDED:
            rule = Accumulation(memory=memory, needed=needed, jump_weight=jump_weight)
            if not (tried := trial(windows, replay, point, rule)).everyday_incidents:
                kept.append(tried)
                break
    if not kept:
        raise ValueError("every decision rule tried opens an incident in the everyday validation hours")
    return sorted(kept, key=lambda tried: (-tried.recall, -tried.accumulation.needed, -tried.point))
