"""Evaluate a checkpoint on the held-out test split and write its model card with ROC and confusion plots.

Reported: per-class precision/recall (arg-max class), the confusion matrix, distress ROC-AUC, recall at 5%
false positives (read off the test ROC curve), recall and false-positive rate at the shipped threshold (which
was fixed on validation), the clips of each held-out source over the point of 5 % false positives (where that
recall is lost), the false-alarm count on a benign generated stream, and what one patch costs on one CPU thread,
the second stage included at the share of benign windows it runs on.

About 500 lines, one job (distress-cnn's card); the events-in-context runs are shared with ``models.training.product``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ctranslate2
import matplotlib

matplotlib.use("Agg")
import numpy as np
import numpy.typing as npt
import torch

from domain.audio import SAMPLE_RATE
from domain.labels import DISTRESS_LABELS
from models.classifier import (
    LABELS,
    PATCH_FRAMES,
    DistressClassifier,
    distress_targets,
    parameter_count,
)
from models.features import log_mel
from models.training.dataset import DEFAULT_DATA_DIR, ClipSet, Dataset, DatasetConfig, Split, benign_stream, join_event
from models.training.metrics import (
    STREAM_HOP_FRAMES,
    count_decisions,
    recall_at_fpr,
    roc_auc,
    roc_curve,
    threshold_at_fpr,
)
from models.training.synth import Audio
from models.training.train import TrainConfig, clip_log_mels, last_patches


@dataclass(frozen=True)
class ClassMetrics:
    label: str
    precision: float
    recall: float
    support: int


@dataclass(frozen=True)
class SourceScore:
    """One source's clips of one label at the split's point of 5 % false positives: for a distress label the
    clips it catches there, for an everyday label those it takes for distress. A split draws a label's clips from
    its sources in proportion to their material, so one source can carry much of a label's score; this shows
    which sources the clip-level recall rests on."""

    label: str
    source: str
    clips: int
    over_point: int

    @property
    def share_over_point(self) -> float:
        return self.over_point / self.clips


def source_scores(clips: ClipSet, distress: npt.NDArray[np.floating], point: float) -> tuple[SourceScore, ...]:
    """Every (label, source) of ``clips`` with its clip count and how many score at or over ``point``."""
    over = distress >= point
    counted: dict[tuple[str, str], list[int]] = {}
    for index, (label_index, source) in enumerate(zip(clips.labels, clips.source_ids, strict=True)):
        tally = counted.setdefault((LABELS[label_index], source), [0, 0])
        tally[0] += 1
        tally[1] += int(over[index])
    return tuple(
        SourceScore(label, source, clips=total, over_point=hits)
        for (label, source), (total, hits) in sorted(counted.items())
    )


def source_recall(sources: tuple[SourceScore, ...]) -> float:
    """Recall with every distress source counting once, however many clips it has: less at the mercy of the
    few sources that hold most of a label's clips."""
    return float(np.mean([source.share_over_point for source in sources if source.label in DISTRESS_LABELS]))


@dataclass(frozen=True)
class OpenedIncident:
    """An incident the product would open on a recording: when (stream seconds) and the distress label its
    evidence rates highest, which says what kind of sound a false alarm was taken for."""

    onset_s: float
    top_label: str


# The incidents the product would open on a recording (the chain of `distress detect --no-asr`).
ProductChain = Callable[[Audio], list[OpenedIncident]]
EVENT_LEAD_S = 8.0  # everyday context before each distress event, so the chain's state is a stream's, not a file's
EVENT_TAIL_S = 4.0
EVENT_CONTEXT_S = 600.0
EVENT_CONTEXT_SEED = 1


@dataclass(frozen=True)
class BenignRun:
    """False alarms on a benign stream: raw windows over the classifier threshold, runs of such windows, and
    the incidents the product would open (None when not measured)."""

    seconds: float
    windows: int
    windows_over_threshold: int
    decisions: int
    max_probability: float
    incidents: int | None
    second_stage_share: float | None  # share of windows the CNN passed to the second stage (None: no stage)


@dataclass(frozen=True)
class EventRecall:
    """Distress events placed in everyday context and run through the product's chain, per label: how many
    opened an incident. Clip-level recall scores one patch aligned with the clip, at any threshold; this is
    what an operator would be paged for at the shipped operating point."""

    event_seconds: float
    events: dict[str, int]
    caught: dict[str, int]

    @property
    def recall(self) -> float:
        return sum(self.caught.values()) / max(1, sum(self.events.values()))

    def recall_of(self, label: str) -> float:
        return self.caught[label] / max(1, self.events[label])


@dataclass(frozen=True)
class Cost:
    """CNN costs per patch; the second stage's cost per patch it runs on; streams per core at the share of
    patches it runs on in an ordinary (benign) stream."""

    parameters: int
    checkpoint_bytes: int
    ms_per_patch: float
    ms_per_patch_batched: float
    second_stage_ms_per_patch: float | None
    streams_per_core: float


@dataclass(frozen=True)
class EvaluationReport:
    split: str
    classes: tuple[ClassMetrics, ...]
    confusion: npt.NDArray[np.int64]
    distress_auc: float
    recall_at_5pct_fpr: float
    point_at_5pct_fpr: float  # the lowest distress probability with at most 5 % of everyday clips at or over it
    sources: tuple[SourceScore, ...]
    threshold: float
    label_thresholds: dict[str, float]  # where a label has its own operating point (its top windows use it)
    recall_at_threshold: float
    fpr_at_threshold: float
    roc_fpr: npt.NDArray[np.float64]
    roc_tpr: npt.NDArray[np.float64]
    benign: BenignRun | None
    events: EventRecall | None
    cost: Cost

    @property
    def source_recall_at_5pct_fpr(self) -> float:
        return source_recall(self.sources)

    def as_json(self) -> dict[str, Any]:
        """Every number of the table and the card as plain JSON, for scripts that track a model's metrics;
        the ROC curve itself stays in roc.png."""
        return {
            "split": self.split,
            "classes": [asdict(metrics) for metrics in self.classes],
            # counts[actual][predicted], in the order of labels
            "confusion": {"labels": [metrics.label for metrics in self.classes], "counts": self.confusion.tolist()},
            "distress_auc": self.distress_auc,
            "recall_at_5pct_fpr": self.recall_at_5pct_fpr,
            "point_at_5pct_fpr": self.point_at_5pct_fpr,
            "source_recall_at_5pct_fpr": self.source_recall_at_5pct_fpr,
            "sources": [asdict(source) for source in self.sources],
            "threshold": self.threshold,
            "label_thresholds": self.label_thresholds,
            "recall_at_threshold": self.recall_at_threshold,
            "fpr_at_threshold": self.fpr_at_threshold,
            "benign": None if self.benign is None else asdict(self.benign),
            "events": None
            if self.events is None
            else {
                **asdict(self.events),
                "recall": self.events.recall,
                "recall_by_label": {label: self.events.recall_of(label) for label in self.events.events},
            },
            "cost": asdict(self.cost),
        }


def class_metrics(
    predicted: npt.NDArray[np.int64], actual: npt.NDArray[np.int64]
) -> tuple[tuple[ClassMetrics, ...], npt.NDArray[np.int64]]:
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    np.add.at(confusion, (actual, predicted), 1)
    metrics = []
    for i, label in enumerate(LABELS):
        predicted_here = confusion[:, i].sum()
        support = confusion[i].sum()
        metrics.append(
            ClassMetrics(
                label,
                float(confusion[i, i] / predicted_here) if predicted_here else 0.0,
                float(confusion[i, i] / support) if support else 0.0,
                int(support),
            )
        )
    return tuple(metrics), confusion


def benign_run(classifier: DistressClassifier, audio: Audio, chain: ProductChain | None = None) -> BenignRun:
    """Slide the classifier over a long benign signal (a patch every 0.5 s) and, given the product's ``chain``,
    also run it through its decisions: a raw window over threshold is not yet an alarm."""
    frames = log_mel(audio)
    probabilities, distress = classifier.stream_scores(frames, STREAM_HOP_FRAMES)
    over, decisions = count_decisions(distress, classifier.thresholds(probabilities))
    incidents = len(chain(audio)) if chain is not None else None
    share = None
    if classifier.second_stage is not None:
        share = float(
            np.mean(
                cnn_only(classifier).stream_scores(frames, STREAM_HOP_FRAMES)[1] >= classifier.second_stage.blend.gate
            )
        )
    return BenignRun(len(audio) / SAMPLE_RATE, len(distress), over, decisions, float(distress.max()), incidents, share)


@dataclass(frozen=True)
class DistressEvent:
    """A distress event placed in everyday context, in a recording of its own: its label, where it lies (s)."""

    label: str
    start_s: float
    end_s: float
    audio: Audio

    def caught_by(self, onsets_s: Iterable[float]) -> bool:
        """Whether an incident opened between 1.5 s before the event and 0.5 s after its end (an incident's onset
        is the start of its first positive window, which may begin before the sound does)."""
        return any(self.start_s - 1.5 <= onset <= self.end_s + 0.5 for onset in onsets_s)


def distress_events(
    clips: ClipSet,
    context: Audio,
    events_per_label: int,
    clips_per_event: int = 3,
    seed: int = 0,
    labels: Sequence[str] = LABELS,
) -> Iterator[DistressEvent]:
    """Distress events of every distress label, each in its own recording.

    An event joins ``clips_per_event`` clips of one label and one source (seconds of screaming, not one), starts
    at a random sub-second offset after ``EVENT_LEAD_S`` of a slice of ``context`` (so it is not aligned with the
    capture chunks).
    """
    if len(context) < (EVENT_LEAD_S + 1 + EVENT_TAIL_S) * SAMPLE_RATE + clips_per_event * clips.audio.shape[1]:
        raise ValueError(f"the context ({len(context) / SAMPLE_RATE:.0f} s) is too short for one event")
    rng = np.random.default_rng(seed)
    for index, label in enumerate(labels):
        members = np.flatnonzero(clips.labels == index)
        if label not in DISTRESS_LABELS or not len(members):
            continue
        for first in rng.choice(members, min(events_per_label, len(members)), replace=False):
            yield place_event(label, join_event(clips, int(first), clips_per_event, rng), context, rng)


def place_event(label: str, sound: Audio, context: Audio, rng: np.random.Generator) -> DistressEvent:
    """``sound`` in a recording of its own: a random slice of ``context``, the sound starting at a random
    sub-second offset after ``EVENT_LEAD_S`` and followed by ``EVENT_TAIL_S``."""
    start_s = EVENT_LEAD_S + float(rng.uniform(0, 1))
    length = int((start_s + EVENT_TAIL_S) * SAMPLE_RATE) + len(sound)
    offset = int(rng.integers(0, len(context) - length + 1))
    audio = context[offset : offset + length].copy()
    start = int(start_s * SAMPLE_RATE)
    audio[start : start + len(sound)] += sound
    return DistressEvent(label, start_s, (start + len(sound)) / SAMPLE_RATE, np.clip(audio, -1.0, 1.0))


def event_recall(
    clips: ClipSet,
    context: Audio,
    chain: ProductChain,
    events_per_label: int,
    clips_per_event: int = 3,
    seed: int = 0,
    labels: Sequence[str] = LABELS,
) -> EventRecall:
    """Run :func:`distress_events` through the product's chain: how many of each label open an incident."""
    events: dict[str, int] = {}
    caught: dict[str, int] = {}
    for event in distress_events(clips, context, events_per_label, clips_per_event, seed, labels):
        events[event.label] = events.get(event.label, 0) + 1
        opened = chain(event.audio)
        caught[event.label] = caught.get(event.label, 0) + event.caught_by(incident.onset_s for incident in opened)
    return EventRecall(clips_per_event * clips.audio.shape[1] / SAMPLE_RATE, events, caught)


def trained_dataset_config(classifier: DistressClassifier) -> DatasetConfig:
    """The dataset a checkpoint was trained for: another dataset's held-out splits may hold its training sources."""
    recorded = classifier.metadata.get("train_config", {}).get("dataset")
    return DatasetConfig.from_dict(recorded) if recorded else TrainConfig().dataset


def event_context(config: DatasetConfig, split: Split, data_dir: Path) -> Audio:
    """Everyday audio the events are placed in: another stretch than the benign stream's first hour (seed 1,
    which no benign hour uses), from the same split's sources."""
    return benign_stream(config, EVENT_CONTEXT_S, split, data_dir, seed=EVENT_CONTEXT_SEED)


def cnn_only(classifier: DistressClassifier) -> DistressClassifier:
    """The same checkpoint without its second stage: what the gate compares, and the CNN's own scores."""
    return DistressClassifier(
        classifier.network,
        classifier.calibration,
        classifier.threshold,
        classifier.model_id,
        classifier.model_version,
        classifier.metadata,
    )


def _ms_per_patch(
    score: Callable[[npt.NDArray[np.float32]], object], patches: npt.NDArray[np.float32], repeats: int
) -> float:
    score(patches)
    started = time.perf_counter()
    for _ in range(repeats):
        score(patches)
    return (time.perf_counter() - started) / repeats / len(patches) * 1000


def measure_cost(
    classifier: DistressClassifier, checkpoint: Path, second_stage_share: float | None, repeats: int = 200
) -> Cost:
    """Wall time per patch on one thread: the CNN on one patch and on a batch of 32, the second stage on a
    batch of 32; streams per core counts the second stage at ``second_stage_share`` of the patches."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        single = rng.normal(-8, 2, size=(1, PATCH_FRAMES, 64)).astype(np.float32)
        batch = rng.normal(-8, 2, size=(32, PATCH_FRAMES, 64)).astype(np.float32)
        cnn = cnn_only(classifier)
        per_patch = _ms_per_patch(cnn.score_arrays, single, repeats)
        batched = _ms_per_patch(cnn.score_arrays, batch, max(1, repeats // 10))
        stage = classifier.second_stage
        stage_ms = _ms_per_patch(stage.head_logits, batch, 5) if stage is not None else None
    finally:
        torch.set_num_threads(previous)
    parameters = parameter_count(classifier.network) + (parameter_count(stage.head) if stage else 0)
    # A stream needs one patch every 0.5 s; the batched cost is what a multi-stream worker pays.
    per_stream = batched + (stage_ms or 0.0) * (second_stage_share or 0.0)
    return Cost(parameters, checkpoint.stat().st_size, per_patch, batched, stage_ms, 500.0 / per_stream)


def second_stage_note(classifier: DistressClassifier, report: EvaluationReport, repeats: int = 3) -> str:
    """The card's account of the Whisper-AT second stage: what it is, what it costs, what it bought on
    validation. The full 30 s window Whisper was trained on is timed too, since that is the obvious way to run
    Whisper-AT and the reason it is not run that way here."""
    stage = classifier.second_stage
    if stage is None:
        return "This checkpoint has no second stage: the CNN alone decides."
    model = ctranslate2.models.Whisper(
        str(stage.encoder.model_dir), device="cpu", compute_type="int8", intra_threads=1, inter_threads=1
    )
    window = ctranslate2.StorageView.from_array(np.zeros((1, 80, 3000), dtype=np.float32))
    model.encode(window)
    started = time.perf_counter()
    for _ in range(repeats):
        model.encode(window)
    full_window_ms = (time.perf_counter() - started) / repeats * 1000
    validation = classifier.metadata.get("validation", {})
    encoder_name = classifier.metadata.get("second_stage", {}).get("encoder", stage.encoder.model_dir.name)
    share = report.benign.second_stage_share if report.benign else None
    share_text = (
        f"On the benign test stream the CNN passed {share:.1%} of the windows on, so the stage adds "
        f"{share * (report.cost.second_stage_ms_per_patch or 0.0):.2f} ms to an ordinary stream's average patch "
        "(included in the streams-per-core figure above). "
        if share is not None
        else ""
    )
    return (
        f"Whisper-AT (Gong et al., 2023) reads audio events off Whisper's encoder. Here the encoder of the "
        f"Whisper model the ASR stage ships ({encoder_name}, model.bin sha256 "
        f"`{stage.encoder_sha256[:16]}...`, CTranslate2 int8) reads the same 0.97 s patch as the CNN: a linear "
        f"bridge fitted on training audio maps our 64 mel bands onto Whisper's 80, the encoder's output frames "
        f"are pooled (mean, max, standard deviation) and a head of {parameter_count(stage.head):,} parameters "
        f"gives class and distress logits. Where it runs, its distress logit and the CNN's are averaged "
        f"(weight {stage.blend.head_weight:g}) and Platt-scaled again (a={stage.blend.platt_scale:.3f}, "
        f"b={stage.blend.platt_bias:.3f}); class probabilities are the mean of both.\n\n"
        f"Cost on one thread: {report.cost.second_stage_ms_per_patch:.1f} ms per patch, against "
        f"{report.cost.ms_per_patch_batched:.2f} ms for the CNN; the 30 s window Whisper was trained on takes "
        f"{full_window_ms:.0f} ms, {full_window_ms / 500:.2f} cores per stream at a patch every 0.5 s, which no "
        f"multi-stream deployment can afford. So the stage runs only where the CNN's calibrated distress "
        f"probability reaches the gate {stage.blend.gate:.3f}, chosen to let "
        f"99% of the validation distress clips through. {share_text}"
        f"Validation distress ROC-AUC: CNN alone {validation.get('cnn_distress_auc', float('nan')):.4f}, "
        f"with the second stage {validation.get('distress_auc', float('nan')):.4f}. The encoder learnt from "
        f"real speech and sounds, not from this synthetic set, which is why it is expected to carry over to "
        f"real recordings better than the CNN."
    )


def evaluate(
    classifier: DistressClassifier,
    dataset: Dataset,
    checkpoint: Path,
    split: Split = "test",
    benign_seconds: float = 3600.0,
    data_dir: Path = DEFAULT_DATA_DIR,
    chain: ProductChain | None = None,
    events_per_label: int = 40,
) -> EvaluationReport:
    """All metrics of the card on ``split`` (never used for training, selection or calibration); the benign
    stream's incidents and the events in context only given the product's ``chain``."""
    clips = dataset.split(split)
    patches = last_patches(clip_log_mels(clips))
    probabilities, distress = classifier.score_arrays(patches)
    targets = distress_targets(clips.labels)
    classes, confusion = class_metrics(probabilities.argmax(axis=1), clips.labels)
    fpr, tpr = roc_curve(distress, targets)
    point = threshold_at_fpr(distress, targets, 0.05)
    decided = distress >= classifier.thresholds(probabilities)
    benign = None
    if benign_seconds > 0:
        audio = benign_stream(dataset.config, benign_seconds, split, data_dir)
        benign = benign_run(classifier, audio, chain)
    events = None
    if chain is not None and events_per_label > 0:
        events = event_recall(clips, event_context(dataset.config, split, data_dir), chain, events_per_label)
    return EvaluationReport(
        split=split,
        classes=classes,
        confusion=confusion,
        distress_auc=roc_auc(distress, targets),
        recall_at_5pct_fpr=recall_at_fpr(distress, targets, 0.05),
        point_at_5pct_fpr=point,
        sources=source_scores(clips, distress, point),
        threshold=classifier.threshold,
        label_thresholds=dict(classifier.label_thresholds),
        recall_at_threshold=float(np.mean(decided[targets > 0.5])),
        fpr_at_threshold=float(np.mean(decided[targets <= 0.5])),
        roc_fpr=fpr,
        roc_tpr=tpr,
        benign=benign,
        events=events,
        cost=measure_cost(classifier, checkpoint, benign.second_stage_share if benign else None),
    )


def thresholds_text(threshold: float, label_thresholds: dict[str, float]) -> str:
    """ "0.990; crying 0.971, glass 0.946": the checkpoint's threshold, then the labels whose own differs."""
    own = [f"{label} {value:.3f}" for label, value in sorted(label_thresholds.items()) if value != threshold]
    return f"{threshold:.3f}" + (f"; {', '.join(own)}" if own else "")


def format_table(report: EvaluationReport) -> str:
    """The evaluation as Markdown: per-class table, then the distress metrics."""
    lines = ["| class | precision | recall | support |", "|---|---:|---:|---:|"]
    lines += [
        f"| {c.label}{' *' if c.label in DISTRESS_LABELS else ''} | {c.precision:.3f} | {c.recall:.3f} | {c.support} |"
        for c in report.classes
    ]
    lines += [
        "",
        "| distress metric | value |",
        "|---|---:|",
        f"| ROC-AUC | {report.distress_auc:.4f} |",
        f"| recall at 5% false-positive rate | {report.recall_at_5pct_fpr:.3f} |",
        f"| ... each of the {sum(s.label in DISTRESS_LABELS for s in report.sources)} distress sources counting "
        f"once | {report.source_recall_at_5pct_fpr:.3f} |",
        f"| recall at shipped thresholds ({thresholds_text(report.threshold, report.label_thresholds)}) | "
        f"{report.recall_at_threshold:.3f} |",
        f"| false-positive rate at shipped thresholds | {report.fpr_at_threshold:.3f} |",
    ]
    if report.benign is not None:
        b = report.benign
        lines.append(
            f"| benign stream, raw: runs of windows over threshold in {b.seconds / 3600:.2f} h ({b.windows} "
            f"windows, {b.windows_over_threshold} over threshold, max p={b.max_probability:.3f}) | {b.decisions} |"
        )
        if b.incidents is not None:
            lines.append(
                f"| benign stream, product decision: incidents opened in {b.seconds / 3600:.2f} h (fusion, "
                f"hysteresis, incident debounce) | {b.incidents} |"
            )
    if report.events is not None:
        e = report.events
        lines.append(
            f"| distress events of {e.event_seconds:.0f} s in everyday context, product decision: share that "
            f"opened an incident ({sum(e.events.values())} events) | {e.recall:.3f} |"
        )
        lines += [f"| ... {label} ({e.events[label]} events) | {e.recall_of(label):.3f} |" for label in e.events]
    return "\n".join(lines)


def format_sources(report: EvaluationReport, rows: int = 8) -> str:
    """Where the recall at 5 % false positives is lost: the distress sources missing the most clips at that point
    and the everyday sources it takes for distress most often."""
    distress = [source for source in report.sources if source.label in DISTRESS_LABELS]
    missing = sorted(distress, key=lambda s: (s.over_point - s.clips, s.label, s.source))[:rows]
    everyday = [source for source in report.sources if source.label not in DISTRESS_LABELS and source.over_point]
    taken = sorted(everyday, key=lambda s: (-s.over_point, s.label, s.source))[:rows]
    return "\n\n".join(
        [
            _source_table("distress source", "missed", [(s, s.clips - s.over_point) for s in missing]),
            _source_table("everyday source", "taken for distress", [(s, s.over_point) for s in taken]),
        ]
    )


def _source_table(kind: str, counted: str, rows: list[tuple[SourceScore, int]]) -> str:
    lines = [f"| {kind} (label: source) | clips | {counted} |", "|---|---:|---:|"]
    lines += [f"| {s.label}: {s.source} | {s.clips} | {n} ({n / s.clips:.0%}) |" for s, n in rows]
    return "\n".join(lines)
