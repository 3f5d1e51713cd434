"""Compare checkpoints on the validation split as the product runs them: what a choice between training recipes
rests on.

Clip metrics alone do not rank networks for the product: two networks with the same validation ROC-AUC open
different numbers of incidents on everyday audio and catch different shares of events at their operating
points. So every checkpoint here runs through the same chain as `distress detect --no-asr` over the same hours of
benign audio (one stream an hour, each its own seed, so an hour's luck shows as spread) and the same distress
events in context. The test split is for the model card, once the choice is made (:mod:`models.training.evaluate`).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.classifier import DistressClassifier, distress_targets, sha256_of
from models.training.dataset import DEFAULT_DATA_DIR, ClipSet, Dataset, Split, benign_stream
from models.training.evaluate import (
    EVENT_CONTEXT_SEED,
    EventRecall,
    ProductChain,
    cnn_only,
    event_context,
    event_recall,
    source_recall,
    source_scores,
    thresholds_text,
)
from models.training.metrics import recall_at_fpr, roc_auc, threshold_at_fpr
from models.training.train import Progress, clip_log_mels, last_patches

BENIGN_HOUR_S = 3600.0
SELECTION_FPR = 0.05


def benign_seeds(hours: int) -> list[int]:
    """One seed per benign hour, skipping the events' context seed so no audio is counted twice."""
    seeds = [seed for seed in range(hours + 1) if seed != EVENT_CONTEXT_SEED]
    return seeds[:hours]


@dataclass(frozen=True)
class Candidate:
    """A checkpoint to compare and the product chain that runs it (at the operating points of ``points_of``
    where given, so networks are compared at the same points rather than each at its own)."""

    checkpoint: Path
    classifier: DistressClassifier
    chain: ProductChain
    points_of: Path | None = None


def at_points_of(classifier: DistressClassifier, reference: DistressClassifier) -> DistressClassifier:
    """The same network deciding at ``reference``'s operating points."""
    return DistressClassifier(
        classifier.network,
        classifier.calibration,
        reference.threshold,
        classifier.model_id,
        classifier.model_version,
        classifier.metadata,
        classifier.second_stage,
        reference.label_thresholds,
    )


@dataclass(frozen=True)
class BenignHour:
    """The incidents one benign stream opened, by the distress label each was taken for."""

    seed: int
    seconds: float
    false_alarms: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    checkpoint: str
    model_version: str
    sha256: str
    distress_auc: float
    recall_at_5pct_fpr: float
    source_recall_at_5pct_fpr: float  # every distress source counting once (models.training.evaluate.source_recall)
    cnn_distress_auc: float  # the CNN alone: what a change to its training did before the second stage blends in
    cnn_recall_at_5pct_fpr: float
    threshold: float
    label_thresholds: dict[str, float]
    points_of: str | None  # the checkpoint whose operating points it ran at; None: its own
    benign: tuple[BenignHour, ...]
    events: EventRecall | None

    @property
    def incidents(self) -> int:
        return sum(len(hour.false_alarms) for hour in self.benign)

    @property
    def benign_hours(self) -> float:
        return sum(hour.seconds for hour in self.benign) / BENIGN_HOUR_S

    def false_alarms_by_label(self) -> dict[str, int]:
        counts = Counter(label for hour in self.benign for label in hour.false_alarms)
        return dict(counts.most_common())

    def as_json(self) -> dict[str, Any]:
        events = None
        if self.events is not None:
            events = {
                **asdict(self.events),
                "recall": self.events.recall,
                "recall_by_label": {label: self.events.recall_of(label) for label in self.events.events},
            }
        return {
            **{key: value for key, value in asdict(self).items() if key not in ("benign", "events")},
            "incidents": self.incidents,
            "benign_hours": self.benign_hours,
            "false_alarms_by_label": self.false_alarms_by_label(),
            "benign": [asdict(hour) for hour in self.benign],
            "events": events,
        }


def split_digest(clips: ClipSet) -> str:
    """What a split holds (audio and labels), so checkpoints trained for different datasets are compared on
    the same clips or not at all."""
    digest = hashlib.sha256(clips.audio.tobytes())
    digest.update(clips.labels.astype(np.int64).tobytes())
    return digest.hexdigest()[:12]


def common_split(datasets: Sequence[Dataset], checkpoints: Sequence[Path], split: Split) -> ClipSet:
    """The split every checkpoint's dataset shares; a clear error naming the first that differs."""
    first = split_digest(datasets[0].split(split))
    for dataset, checkpoint in zip(datasets[1:], checkpoints[1:], strict=True):
        if split_digest(dataset.split(split)) != first:
            raise ValueError(
                f"{checkpoint} was trained for a dataset whose {split} split differs from that of "
                f"{checkpoints[0]}: their numbers would not compare"
            )
    return datasets[0].split(split)


def compare(
    candidates: Sequence[Candidate],
    dataset: Dataset,
    split: Split = "validation",
    benign_hours: float = 15.0,
    events_per_label: int = 80,
    data_dir: Path = DEFAULT_DATA_DIR,
    progress: Progress | None = None,
) -> list[Comparison]:
    """Every candidate on the same clips, benign hours and events of ``dataset``'s ``split``."""
    if not candidates:
        raise ValueError("nothing to compare: give at least one checkpoint")
    clips = dataset.split(split)
    patches = last_patches(clip_log_mels(clips))
    targets = distress_targets(clips.labels)
    hours = math.ceil(benign_hours)
    seeds = benign_seeds(hours)
    alarms: list[list[BenignHour]] = [[] for _ in candidates]
    for done, seed in enumerate(seeds):
        seconds = min(BENIGN_HOUR_S, (benign_hours - done) * BENIGN_HOUR_S)
        audio = benign_stream(dataset.config, seconds, split, data_dir, seed=seed)
        for runs, candidate in zip(alarms, candidates, strict=True):
            opened = candidate.chain(audio)
            runs.append(BenignHour(seed, seconds, tuple(incident.top_label for incident in opened)))
        if progress is not None:
            progress("benign h", done + 1, len(seeds))
    events: list[EventRecall | None] = [None] * len(candidates)
    if events_per_label > 0:
        context = event_context(dataset.config, split, data_dir)
        for index, candidate in enumerate(candidates):
            events[index] = event_recall(clips, context, candidate.chain, events_per_label)
            if progress is not None:
                progress("events", index + 1, len(candidates))
    comparisons = []
    for candidate, runs, caught in zip(candidates, alarms, events, strict=True):
        classifier = candidate.classifier
        distress = classifier.score_arrays(patches)[1]
        cnn_distress = cnn_only(classifier).score_arrays(patches)[1]
        comparisons.append(
            Comparison(
                checkpoint=str(candidate.checkpoint),
                model_version=classifier.model_version,
                sha256=sha256_of(candidate.checkpoint),
                distress_auc=roc_auc(distress, targets),
                recall_at_5pct_fpr=recall_at_fpr(distress, targets, SELECTION_FPR),
                source_recall_at_5pct_fpr=source_recall(
                    source_scores(clips, distress, threshold_at_fpr(distress, targets, SELECTION_FPR))
                ),
                cnn_distress_auc=roc_auc(cnn_distress, targets),
                cnn_recall_at_5pct_fpr=recall_at_fpr(cnn_distress, targets, SELECTION_FPR),
                threshold=classifier.threshold,
                label_thresholds=dict(classifier.label_thresholds),
                points_of=None if candidate.points_of is None else str(candidate.points_of),
                benign=tuple(runs),
                events=caught,
            )
        )
    return comparisons


def format_comparison(comparisons: Sequence[Comparison], split: str) -> str:
    """One row per checkpoint, as Markdown: the numbers a recipe is chosen by."""
    lines = [
        f"| checkpoint ({split}) | clip ROC-AUC / recall at 5 % FPR / by source | CNN alone | operating points | "
        "incidents (hours) | false alarms by label | events caught | by label |",
        "|---|---:|---:|---|---:|---|---:|---|",
    ]
    for row in comparisons:
        by_label = ", ".join(f"{label} {count}" for label, count in row.false_alarms_by_label().items())
        caught = "—" if row.events is None else f"{row.events.recall:.3f}"
        points = "" if row.points_of is None else f" (of {Path(row.points_of).name})"
        caught_by_label = (
            "—"
            if row.events is None
            else ", ".join(f"{label} {row.events.recall_of(label):.2f}" for label in row.events.events)
        )
        lines.append(
            f"| {Path(row.checkpoint).name} ({row.model_version}, {row.sha256[:8]}) | "
            f"{row.distress_auc:.3f} / {row.recall_at_5pct_fpr:.3f} / {row.source_recall_at_5pct_fpr:.3f} | "
            f"{row.cnn_distress_auc:.3f} / {row.cnn_recall_at_5pct_fpr:.3f} | "
            f"{thresholds_text(row.threshold, row.label_thresholds)}{points} | "
            f"{row.incidents} ({row.benign_hours:g}) | "
            f"{by_label or '—'} | {caught} | {caught_by_label} |"
        )
    return "\n".join(lines)
