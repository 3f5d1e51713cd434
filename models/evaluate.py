"""Evaluate a checkpoint on the held-out test split and write its model card with ROC and confusion plots.

Reported: per-class precision/recall (arg-max class), the confusion matrix, distress ROC-AUC, recall at 5%
false positives (read off the test ROC curve), recall and false-positive rate at the shipped threshold (which
was fixed on validation), the clips of each held-out source over the point of 5 % false positives (where that
recall is lost), the false-alarm count on a benign generated stream, and what one patch costs on one CPU thread,
the second stage included at the share of benign windows it runs on.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ctranslate2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import torch

from models.classifier import (
    DISTRESS_LABELS,
    LABELS,
    PATCH_FRAMES,
    DistressClassifier,
    distress_targets,
    parameter_count,
    sha256_of,
)
from models.dataset import (
    DEFAULT_DATA_DIR,
    RULES,
    ClipSet,
    Dataset,
    DatasetConfig,
    Split,
    benign_stream,
    join_event,
)
from models.features import FeatureConfig, log_mel
from models.synth import SAMPLE_RATE, Audio
from models.train import (
    MIN_HEARD_FRAMES,
    STREAM_HOP_FRAMES,
    TrainConfig,
    clip_log_mels,
    count_decisions,
    last_patches,
    recall_at_fpr,
    roc_auc,
    threshold_at_fpr,
)


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
            "events": None if self.events is None else {
                **asdict(self.events),
                "recall": self.events.recall,
                "recall_by_label": {label: self.events.recall_of(label) for label in self.events.events},
            },
            "cost": asdict(self.cost),
        }


def roc_curve(
    scores: npt.NDArray[np.floating], targets: npt.NDArray[np.floating]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(false-positive rates, true-positive rates) over all thresholds, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, positive = scores[order], targets[order] > 0.5
    distinct = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    tps = np.cumsum(positive)[distinct]
    fps = (distinct + 1) - tps
    return (np.r_[0.0, fps / max(1, (~positive).sum())], np.r_[0.0, tps / max(1, positive.sum())])


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


def benign_run(
    classifier: DistressClassifier, audio: Audio, chain: ProductChain | None = None
) -> BenignRun:
    """Slide the classifier over a long benign signal (a patch every 0.5 s) and, given the product's ``chain``,
    also run it through its decisions: a raw window over threshold is not yet an alarm."""
    frames = log_mel(audio)
    probabilities, distress = classifier.stream_scores(frames, STREAM_HOP_FRAMES)
    over, decisions = count_decisions(distress, classifier.thresholds(probabilities))
    incidents = len(chain(audio)) if chain is not None else None
    share = None
    if classifier.second_stage is not None:
        share = float(np.mean(cnn_only(classifier).stream_scores(frames, STREAM_HOP_FRAMES)[1]
                              >= classifier.second_stage.blend.gate))
    return BenignRun(
        len(audio) / SAMPLE_RATE, len(distress), over, decisions, float(distress.max()), incidents, share
    )


def event_recall(
    clips: ClipSet,
    context: Audio,
    chain: ProductChain,
    events_per_label: int,
    clips_per_event: int = 3,
    seed: int = 0,
) -> EventRecall:
    """Run distress events of every distress label through the product's chain, each in its own recording.

    An event joins ``clips_per_event`` clips of one label and one source (seconds of screaming, not one), starts
    at a random sub-second offset after ``EVENT_LEAD_S`` of a slice of ``context`` (so it is not aligned with the
    capture chunks), and is caught when an incident opens between 1.5 s before it starts and 0.5 s after it ends
    (an incident's onset is the start of its first positive window, which may begin before the sound does).
    """
    if len(context) < (EVENT_LEAD_S + 1 + EVENT_TAIL_S) * SAMPLE_RATE + clips_per_event * clips.audio.shape[1]:
        raise ValueError(f"the context ({len(context) / SAMPLE_RATE:.0f} s) is too short for one event")
    rng = np.random.default_rng(seed)
    events: dict[str, int] = {}
    caught: dict[str, int] = {}
    for index, label in enumerate(LABELS):
        members = np.flatnonzero(clips.labels == index)
        if label not in DISTRESS_LABELS or not len(members):
            continue
        chosen = rng.choice(members, min(events_per_label, len(members)), replace=False)
        caught[label] = 0
        for first in chosen:
            event = join_event(clips, int(first), clips_per_event, rng)
            start_s = EVENT_LEAD_S + float(rng.uniform(0, 1))
            length = int((start_s + EVENT_TAIL_S) * SAMPLE_RATE) + len(event)
            offset = int(rng.integers(0, len(context) - length + 1))
            audio = context[offset : offset + length].copy()
            start = int(start_s * SAMPLE_RATE)
            audio[start : start + len(event)] += event
            end_s = (start + len(event)) / SAMPLE_RATE
            opened = chain(np.clip(audio, -1.0, 1.0))
            caught[label] += any(start_s - 1.5 <= incident.onset_s <= end_s + 0.5 for incident in opened)
        events[label] = len(chosen)
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
        classifier.network, classifier.calibration, classifier.threshold, classifier.model_id,
        classifier.model_version, classifier.metadata,
    )


def _ms_per_patch(score: Callable[[npt.NDArray[np.float32]], object], patches: npt.NDArray[np.float32],
                  repeats: int) -> float:
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
    """"0.990; crying 0.971, glass 0.946": the checkpoint's threshold, then the labels whose own differs."""
    own = [f"{label} {value:.3f}" for label, value in sorted(label_thresholds.items()) if value != threshold]
    return f"{threshold:.3f}" + (f"; {', '.join(own)}" if own else "")


def format_table(report: EvaluationReport) -> str:
    """The evaluation as Markdown: per-class table, then the distress metrics."""
    lines = ["| class | precision | recall | support |", "|---|---:|---:|---:|"]
    lines += [
        f"| {c.label}{' *' if c.label in DISTRESS_LABELS else ''} | {c.precision:.3f} | {c.recall:.3f} | "
        f"{c.support} |"
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
    return "\n\n".join([
        _source_table("distress source", "missed", [(s, s.clips - s.over_point) for s in missing]),
        _source_table("everyday source", "taken for distress", [(s, s.over_point) for s in taken]),
    ])


def _source_table(kind: str, counted: str, rows: list[tuple[SourceScore, int]]) -> str:
    lines = [f"| {kind} (label: source) | clips | {counted} |", "|---|---:|---:|"]
    lines += [f"| {s.label}: {s.source} | {s.clips} | {n} ({n / s.clips:.0%}) |" for s, n in rows]
    return "\n".join(lines)


def _largest_sources_text(report: EvaluationReport) -> str:
    """"shout: nexuiz-data:torus, 263 of 500; ...": each distress label's largest source and its share of clips."""
    support = {metrics.label: metrics.support for metrics in report.classes}
    distress = [source for source in report.sources if source.label in DISTRESS_LABELS]
    largest = [  # sources are sorted by label and name, so a tie goes to the first name
        max((source for source in distress if source.label == label), key=lambda source: source.clips)
        for label in sorted({source.label for source in distress})
    ]
    return "; ".join(f"{s.label}: {s.source}, {s.clips} of {support[s.label]}" for s in largest)


def _plot_roc(report: EvaluationReport, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot(report.roc_fpr, report.roc_tpr, label=f"distress (AUC {report.distress_auc:.3f})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.axvline(0.05, linestyle="--", color="tab:red", label="5% false positives")
    axis.set(
        xlabel="false-positive rate",
        ylabel="true-positive rate (recall)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"Distress ROC, {report.split} split",
    )
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_confusion(report: EvaluationReport, path: Path) -> None:
    normalised = report.confusion / np.maximum(1, report.confusion.sum(axis=1, keepdims=True))
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right")
    axis.set_yticks(range(len(LABELS)), LABELS)
    for (row, col), count in np.ndenumerate(report.confusion):
        axis.text(
            col,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if normalised[row, col] > 0.5 else "black",
            fontsize=8,
        )
    axis.set(xlabel="predicted", ylabel="actual", title=f"Confusion matrix, {report.split} split")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _augmentation_summary(train_config: dict[str, Any]) -> str:
    """The spectral augmentations a checkpoint was trained with, as a clause of the card's prose."""
    parts = []
    if train_config.get("level_db"):
        parts.append(f"random gain +-{train_config['level_db']:g} dB")
    if train_config.get("eq_db"):
        parts.append(f"a random smooth mel-band equaliser ({train_config['eq_db']:g} dB s.d.)")
    if train_config.get("overlay_probability"):
        low, high = train_config["overlay_snr_db"]
        parts.append(
            f"a training background clip added in the power domain {low:g}-{high:g} dB below the clip "
            f"(probability {train_config['overlay_probability']:g})"
        )
    if train_config.get("band_mixstyle_probability"):
        parts.append(
            f"Freq-MixStyle (probability {train_config['band_mixstyle_probability']:g}, "
            f"Beta({train_config['band_mixstyle_alpha']:g}))"
        )
    return "".join(f", {part}" for part in parts)


def _context_summary(train_config: dict[str, Any]) -> str:
    """How much live-cut training audio a checkpoint saw besides its clips, as a sentence of the card."""
    seconds, share = train_config.get("context_seconds", 0.0), train_config.get("context_share", 0.0)
    if not seconds or not share:
        return ""
    per_kind = round(train_config.get("batch_size", 0) * share / 2)
    heard_s = MIN_HEARD_FRAMES * FeatureConfig().hop_length / SAMPLE_RATE
    return (
        f" Each step of {train_config.get('batch_size')} clips also took {per_kind} windows holding at least "
        f"{heard_s:g} s of a distress event's sound and {per_kind} of everyday audio alone (distress 0, no class), "
        f"cut at any frame from {seconds / 3600:g} h of training-source everyday audio with training distress events "
        f"(1-3 clips) mixed in every 3-12 s, as the runtime cuts a live stream; the second stage's head saw "
        f"{train_config.get('head_context_patches', 0)} of each kind too."
    )


def _rule_table() -> str:
    lines = ["| package family | file path pattern | label |", "|---|---|---|"]
    lines += [
        f"| {rule.package} | `{rule.pattern.replace('|', '&#124;')}` | {rule.label or 'excluded'} |"
        for rule in RULES
    ]
    return "\n".join(lines)


def write_model_card(
    report: EvaluationReport,
    classifier: DistressClassifier,
    checkpoint: Path,
    directory: Path,
    second_stage_note_text: str,
) -> Path:
    """MODEL_CARD.md plus roc.png and confusion.png in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _plot_roc(report, directory / "roc.png")
    _plot_confusion(report, directory / "confusion.png")
    meta = classifier.metadata
    train_config = meta.get("train_config", {})
    dataset_config = train_config.get("dataset", {})
    cost = report.cost
    validation: dict[str, float] = meta.get("validation", {})
    card = CARD_TEMPLATE.format(
        model_id=classifier.model_id,
        version=classifier.model_version,
        checkpoint=checkpoint.name,
        sha256=sha256_of(checkpoint),
        size_kb=cost.checkpoint_bytes / 1024,
        parameters=cost.parameters,
        labels=", ".join(LABELS),
        distress=", ".join(sorted(DISTRESS_LABELS)),
        patch_frames=PATCH_FRAMES,
        temperature=classifier.calibration.temperature,
        platt_a=classifier.calibration.platt_scale,
        platt_b=classifier.calibration.platt_bias,
        threshold=thresholds_text(classifier.threshold, classifier.label_thresholds),
        threshold_fpr=train_config.get("threshold_fpr", "?"),
        best_epoch=meta.get("best_epoch", "?"),
        epochs=train_config.get("epochs", "?"),
        seed=train_config.get("seed", "?"),
        dataset_digest=meta.get("dataset_digest", "?"),
        augmentation=_augmentation_summary(train_config),
        context=_context_summary(train_config),
        dataset_seed=dataset_config.get("seed", "?"),
        clips=dataset_config.get("clips_per_label", {}),
        animal_share=(
            f" In the training split, {share:.0%} of the background beds are drawn from its animal calls first "
            "(validation and test keep the natural mix)."
            if (share := dataset_config.get("train_animal_share", 0.0))
            else ""
        ),
        table=format_table(report),
        point=report.point_at_5pct_fpr,
        largest_sources=_largest_sources_text(report),
        sources=format_sources(report),
        ms_single=cost.ms_per_patch,
        ms_batched=cost.ms_per_patch_batched,
        ms_stage=(
            f"{cost.second_stage_ms_per_patch:.2f}" if cost.second_stage_ms_per_patch is not None else "none:"
        ),
        streams=cost.streams_per_core,
        second_stage=second_stage_note_text,
        rules=_rule_table(),
        python=platform.python_version(),
        torch=torch.__version__,
        threshold_at_fpr=validation.get("threshold_at_fpr", float("nan")),
        benign_max=validation.get("benign_stream_max", float("nan")),
        threshold_cap=(
            "so an ordinary stream raises no alarm."
            if classifier.threshold > validation.get("benign_stream_max", 1.0)
            else f"capped at {classifier.threshold:.2f}: a few benign windows still score above it, and the "
            "incident rules (N-of-M debounce) are what keep them from becoming alarms."
        ),
        val_accuracy=validation.get("accuracy", float("nan")),
        val_auc=validation.get("distress_auc", float("nan")),
        val_recall=validation.get("recall_at_threshold", float("nan")),
        val_fpr=validation.get("fpr_at_threshold", float("nan")),
    )
    path = directory / "MODEL_CARD.md"
    path.write_text(card)
    return path


CARD_TEMPLATE = """# Model card: {model_id} {version}

Acoustic distress classifier of the `distress` pipeline. Every `DistressScored` event it contributes to names
`model_id={model_id}` and `model_version={version}`.

| | |
|---|---|
| checkpoint | `{checkpoint}` ({size_kb:.0f} KiB) |
| sha256 | `{sha256}` |
| parameters | {parameters:,} |
| input | last {patch_frames} frames (0.97 s) of `models.features.log_mel` (64 mel bands, 125-7500 Hz) |
| classes | {labels} |
| distress classes | {distress} |
| cost, one patch, 1 thread | {ms_single:.2f} ms |
| cost, batched (32), 1 thread | {ms_batched:.2f} ms/patch |
| second stage, batched (32), 1 thread | {ms_stage} ms per patch it runs on |
| streams per core | ~{streams:.0f} at a patch per 0.5 s, second stage included at its benign share |

## Model

A small CNN (strided 3x3 convolutions with batch norm, mean+max pooling over time that keeps the frequency
axis) with two heads: class logits and one distress logit. The distress head is trained with binary
cross-entropy against "the clip's label is one of the distress classes"; its logit is Platt-scaled on the
validation split (a={platt_a:.3f}, b={platt_b:.3f}), with the two classes weighted to a 50/50 prior, so
`distress_probability` is calibrated for equally likely distress and non-distress (fusion should apply its own
prior). Class probabilities are a softmax with temperature {temperature:.3f}, also fitted on validation.
Where the CNN's distress probability reaches a gate, a second stage (Whisper's encoder with a small head, see
below) is blended in and the result calibrated again; the parameter count above includes its head but not the
Whisper encoder, which ships with the ASR model.

The shipped decision threshold is the higher of the lowest threshold with at most {threshold_fpr} false positives
on validation ({threshold_at_fpr:.3f}) and just above the highest window of a benign validation stream
({benign_max:.3f}), {threshold_cap}
Each distress label has its own, by the same rule over the benign windows whose most probable distress label it
is, and a window is judged at its top distress label's: {threshold}. The everyday audio that scores high is
mostly taken for one or two kinds of distress, so the others need not wait at its point.

Trained for {epochs} epochs (best epoch {best_epoch} chosen on validation), seed {seed}, AdamW + one-cycle,
label smoothing, random 96-of-98-frame crops, SpecAugment masks{augmentation}.{context}
Validation at the chosen epoch: accuracy {val_accuracy:.3f}, distress ROC-AUC {val_auc:.4f}, recall
{val_recall:.3f} and false-positive rate {val_fpr:.3f} at the threshold. `distress models train` (CPU, one
thread) reproduces this checkpoint bit for bit on the kind of CPU it was trained on (float sums round
differently on others); then run `distress models evaluate`. Costs were measured on the shared 2-core
development machine and vary with its load.

## Evaluation (test split: voices, speakers and recordings never seen in training or validation)

{table}

(* = distress class.) The benign stream is generated only from test-split sources: TTS conversation, babble,
music, recorded ambience and animals, room tone and small knocks, -50 to -15 dBFS. "Raw" scores it every 0.5 s
and counts runs of consecutive windows at or above the classifier threshold. "Product decision" runs the same
audio through the chain `distress detect --no-asr` and the live actors use (features, scorer with fusion and
hysteresis, incident rules with N-of-M debounce, all at the configured settings) and counts the incidents
opened: that is what would page an operator. "Distress events in everyday context" runs the same chain on
recordings of another stretch of test-split everyday audio with one distress event each (three clips of one
label and source, starting at a random sub-second offset after 8 s) and counts the events that opened an
incident at the event. The phrase spotter is left out (it needs the ASR model and an hour of transcription);
its own false-alarm rate is measured by the ASR benchmarks.

### Where the recall at 5 % false positives is lost

At the split's point of 5 % false positives (distress probability {point:.3f}): the distress sources missing the
most clips there, and the everyday sources taken for distress most often. A split draws each label's clips from
its sources in proportion to their material, so a few sources weigh heavily (each distress label's largest:
{largest_sources}); the row "each of the distress sources counting once" above is the recall without that
weighting. Every source's counts are in
`distress models evaluate --json` ("sources").

{sources}

![ROC](roc.png)

![Confusion matrix](confusion.png)

## Second stage: Whisper-AT

{second_stage}

## Data

Dataset `clips-{dataset_digest}` (dataset seed {dataset_seed}, clips per label and split {clips}), built by
`models.dataset` from package-registry material only; nothing is downloaded. Each 1 s, 16 kHz clip is one
labelled foreground over a background bed from the same split, with random synthetic room reverb (RT60
0.15-1 s), pitch/tempo change by resampling (x0.88-1.14), SNR 0-30 dB, channel band-limiting and gain
(-45 to -10 dBFS; backgrounds -70 to -15 dBFS).{animal_share}

* **TTS voices**: espeak-ng (60 accent x voice-variant combinations), flite (kal, kal16, awb, rms, slt),
  festival (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts) speaking everyday sentences ("speech") and
  distress calls made shout-like (raised pitch and formants by resampling, pre-emphasis, overdrive) ("shout").
  MBROLA voices are not in Debian main and are not used.
* **Synthesised**: screams and crying (source-filter voices with formants, vibrato, jitter and roughness;
  infant cry units and adult sobs with in-breaths), gunshots, explosions, slams, breaking glass (crack plus a
  shower of inharmonic decaying shards), coloured noise, mains hum, music-like tones, room tone, small knocks.
  Babble is 3-7 overlapping TTS talkers.
* **Recorded game sounds** (Debian packages; labelled by file path, table below): openarena-data,
  openarena-088-data, nexuiz-data, warzone2100-data, megaglest-data, freedink-data, 0ad-data,
  supertuxkart-data. Credits and licences: see each package's `/usr/share/doc/<package>/copyright`: OpenArena
  (GPL-2+, OpenArena team), Nexuiz (GPL-2+, Alientrap), Warzone 2100 (GPL-2+, Warzone 2100 Project), MegaGlest
  (CC-BY-SA-3.0, MegaGlest team), FreeDink data (GPL-3+ / CC-BY-3.0, Dink Smallwood data by RTsoft and
  contributors), 0 A.D. (CC-BY-SA-3.0, Wildfire Games), SuperTuxKart data (CC-BY-SA-3.0/4.0, CC-BY-3.0, CC0,
  GPL-2+ and others per file, SuperTuxKart team and the freesound.org and Battle for Wesnoth authors credited
  there).
  Debian's other game/sound data packages are reserved for independent evaluation and are not used.

**Split by source.** Sources are TTS voices, recorded speakers/sound groups (e.g. one Nexuiz player model, one
MegaGlest unit voice, one Nexuiz announcer), and synthetic speakers. Within each family of sources a seeded
hash sends ~15% to test, ~15% to validation, the rest to train; backgrounds mixed into a clip come from the
clip's own split. Synthetic impacts, glass and noise beds come from one generator in every split (different
random draws), so their held-out scores are optimistic; crying and glass have no recorded examples at all.

### File labelling rules (first match wins)

{rules}

## Limitations

Trained without real recordings of crying or breaking glass, and with game voice acting for screams and
shouts; expect lower recall on real crying and on distant or muffled distress than the table shows. Loud
benign vocalisations (cheering, children playing, singing) and real door slams were not available as
negatives.

Built with Python {python}, torch {torch}.
"""
