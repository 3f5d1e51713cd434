"""The head in the product's terms, through the chain of `distress detect --no-asr` (given as a callable: the
chain lives in ``actors``, above the models): 3 s distress events of every label in everyday audio, screams cut
short, and false incidents over hours of everyday audio. Its decision rule is chosen on validation apart
(``models.training.decision``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domain.audio import SAMPLE_RATE
from models.training.dataset import ClipSet, Dataset, Split, benign_stream
from models.training.evaluate import (
    EventRecall,
    ProductChain,
    event_context,
    event_recall,
    place_event,
)
from models.training.head import Progress
from models.training.synth import Audio

SCREAM_LENGTHS_S = (0.1, 0.2, 0.3, 0.5, 1.0)
BENIGN_SEED_BASE = 100  # benign hours use seeds 100, 101, ...: never event_context's seed


@dataclass(frozen=True)
class ProductReport:
    """What the product would do on ``split``'s everyday audio, through the chain of `distress detect --no-asr`."""

    events: EventRecall
    benign_hours: float
    false_incidents: int
    false_incidents_by_label: dict[str, int]
    screams_by_length: dict[float, float]  # scream length (s) -> share of screams of that length opening one
    screams_per_length: int

    @property
    def false_incidents_per_hour(self) -> float:
        return self.false_incidents / max(self.benign_hours, 1e-9)

    @property
    def shortest_scream_s(self) -> float | None:
        """The shortest length at which at least half of the screams open an incident."""
        return min((length for length, share in self.screams_by_length.items() if share >= 0.5), default=None)


def _loudest(audio: Audio, seconds: float) -> Audio:
    """The ``seconds`` of ``audio`` with the most energy: the scream itself, not the clip's quiet edges."""
    length = max(1, int(seconds * SAMPLE_RATE))
    energy = np.convolve(np.square(audio.astype(np.float64)), np.ones(length), mode="valid")
    start = int(np.argmax(energy))
    window: Audio = audio[start : start + length].copy()
    return window


def scream_lengths(
    clips: ClipSet, labels: Sequence[str], context: Audio, chain: ProductChain, per_length: int, seed: int = 0
) -> dict[float, float]:
    """Share of ``per_length`` screams that open an incident when cut to each of ``SCREAM_LENGTHS_S``."""
    rng = np.random.default_rng(seed)
    screams = np.flatnonzero(clips.labels == labels.index("scream"))
    chosen = rng.choice(screams, min(per_length, len(screams)), replace=False)
    shares: dict[float, float] = {}
    for seconds in SCREAM_LENGTHS_S:
        caught = 0
        for index in chosen:
            event = place_event("scream", _loudest(clips.waveform(int(index)), seconds), context, rng)
            caught += event.caught_by(incident.onset_s for incident in chain(event.audio))
        shares[seconds] = caught / max(1, len(chosen))
    return shares


def product_evaluation(
    chain: ProductChain,
    dataset: Dataset,
    split: Split,
    data_dir: Path,
    *,
    benign_hours: float,
    events_per_label: int,
    progress: Progress | None = None,
) -> ProductReport:
    """Events of every distress label in everyday audio, screams cut short, and false incidents over
    ``benign_hours`` separate hours of everyday audio (one seed each), all from ``split``'s sources."""
    clips = dataset.split(split)
    labels = dataset.config.labels
    context = event_context(dataset.config, split, data_dir)
    if progress:
        progress("events", 0, 2)
    events = event_recall(clips, context, chain, events_per_label, labels=labels)
    if progress:
        progress("events", 1, 2)
    shares = scream_lengths(clips, labels, context, chain, events_per_label)
    if progress:
        progress("events", 2, 2)
    false_by_label: dict[str, int] = {}
    hours = math.ceil(benign_hours)
    for hour in range(hours):
        if progress:
            progress("benign hours", hour, hours)
        seconds = 3600.0 * min(1.0, benign_hours - hour)
        audio = benign_stream(dataset.config, seconds, split, data_dir, seed=BENIGN_SEED_BASE + hour)
        for incident in chain(audio):
            false_by_label[incident.top_label] = false_by_label.get(incident.top_label, 0) + 1
    return ProductReport(events, benign_hours, sum(false_by_label.values()), false_by_label, shares, events_per_label)


def format_product(report: ProductReport, split: str) -> str:
    """The product-terms table of :func:`product_evaluation`."""
    events = report.events
    lines = [
        f"| product decision ({split} split, `distress detect --no-asr` chain) | value |",
        "|---|---:|",
        f"| 3 s distress events in everyday audio that open an incident | {events.recall:.3f} |",
        *(f"| ... {label} ({n} events) | {events.recall_of(label):.3f} |" for label, n in events.events.items()),
        f"| false incidents in {report.benign_hours:g} h of everyday audio | {report.false_incidents} "
        f"({report.false_incidents_per_hour:.2f} an hour) |",
        *(f"| ... taken for {label} | {count} |" for label, count in sorted(report.false_incidents_by_label.items())),
        *(
            f"| screams cut to {seconds:.1f} s that open one ({report.screams_per_length}) | {share:.2f} |"
            for seconds, share in report.screams_by_length.items()
        ),
        f"| shortest scream that opens one (at least half of them) | "
        f"{'none' if report.shortest_scream_s is None else f'{report.shortest_scream_s:.1f} s'} |",
    ]
    return "\n".join(lines)
