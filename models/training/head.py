"""Train and evaluate the distress head on YAMNet (``models.yamnet_head``) on a dataset's splits.

YAMNet runs once per clip (its first 0.96 s patch) and its outputs are cached beside the dataset, so the head
trains in seconds. Everything chosen here is chosen on the validation split: the epoch (distress ROC-AUC), the
calibration (temperature, Platt scaling) and the operating point (the lowest threshold with at most 5 % false
positives). The test split is only read by :func:`evaluate_head`, which scores YAMNet zero-shot (the highest
probability among its AudioSet classes of our distress labels) beside the trained head.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.special
import torch
from torch import nn

from domain.audio import SAMPLE_RATE
from domain.labels import DISTRESS_LABELS
from models.classifier import Calibration
from models.training.dataset import ClipSet, Dataset, Split, benign_stream
from models.training.evaluate import (
    EVENT_LEAD_S,
    EVENT_TAIL_S,
    EventRecall,
    ProductChain,
    event_context,
    event_recall,
)
from models.training.metrics import recall_at_fpr, roc_auc, threshold_at_fpr
from models.training.synth import Audio
from models.yamnet import Yamnet, patches, zero_shot_distress
from models.yamnet_head import (
    FEATURE_SIZE,
    MODEL_VERSION,
    HeadCheckpoint,
    HeadWeights,
    YamnetDistressModel,
    head_inputs,
)

Float32Array = npt.NDArray[np.float32]
Progress = Callable[[str, int, int], None]
OPERATING_FPR = 0.05
MAX_THRESHOLD = 0.99
BATCH = 256
NO_CLASS = -100  # cross-entropy's ignore_index: the window counts for the distress head only
STREAM_SEGMENT_S = 600.0  # long recordings are scored in pieces, so their patches never fill the memory


@dataclass(frozen=True)
class HeadConfig:
    seed: int = 7
    hidden: int = 128
    dropout: float = 0.3
    epochs: int = 20
    # Everyday audio of the training split's sources, cut every 0.48 s as a stream is: windows that must not
    # read as distress (clips alone left an hour of everyday validation audio with 74 windows over 0.99).
    everyday_train_s: float = 3 * 3600.0
    learning_rate: float = 1e-3
    weight_decay: float = 1e-3
    version: str = MODEL_VERSION
    benign_validation_s: float = 3600.0


def yamnet_outputs(
    yamnet: Yamnet, clips: ClipSet, cache: Path | None = None, progress: Progress | None = None
) -> tuple[Float32Array, Float32Array]:
    """(class probabilities (n, 521), embeddings (n, 1024)) of each clip's first patch; cached in ``cache``."""
    if cache is not None and cache.exists():
        with np.load(cache) as data:
            if len(data["scores"]) == len(clips):
                return data["scores"], data["embeddings"]
    scores: list[Float32Array] = []
    embeddings: list[Float32Array] = []
    for start in range(0, len(clips), BATCH):
        if progress:
            progress("yamnet", start, len(clips))
        batch = np.stack([patches(clips.waveform(i))[0] for i in range(start, min(start + BATCH, len(clips)))])
        batch_scores, batch_embeddings = yamnet.run(batch)
        scores.append(batch_scores)
        embeddings.append(batch_embeddings)
    result = np.concatenate(scores), np.concatenate(embeddings)
    if cache is not None:
        np.savez(cache, scores=result[0], embeddings=result[1])
    return result


def everyday_outputs(
    yamnet: Yamnet, dataset: Dataset, split: Split, seconds: float, progress: Progress | None = None
) -> tuple[Float32Array, Float32Array]:
    """YAMNet's (class probabilities, embeddings) of every patch of ``seconds`` of ``split``'s everyday audio
    (``benign_stream``, seed 0), a patch every 0.48 s; cached beside the dataset."""
    cache = dataset.directory / f"yamnet-everyday-{split}-{seconds:g}s.npz"
    if cache.exists():
        with np.load(cache) as data:
            return data["scores"], data["embeddings"]
    scores: list[Float32Array] = []
    embeddings: list[Float32Array] = []
    segment = int(STREAM_SEGMENT_S * SAMPLE_RATE)
    for start in range(0, int(seconds * SAMPLE_RATE), segment):
        if progress:
            progress(f"everyday {split}", start, int(seconds * SAMPLE_RATE))
        piece_seconds = min(STREAM_SEGMENT_S, seconds - start / SAMPLE_RATE)
        audio = benign_stream(dataset.config, piece_seconds, split, dataset.directory.parent, seed=start // segment)
        piece = patches(audio)
        for first in range(0, len(piece), BATCH):
            batch_scores, batch_embeddings = yamnet.run(piece[first : first + BATCH])
            scores.append(batch_scores)
            embeddings.append(batch_embeddings)
    result = np.concatenate(scores), np.concatenate(embeddings)
    np.savez(cache, scores=result[0], embeddings=result[1])
    return result


def stream_distress(model: YamnetDistressModel, audio: Audio) -> Float32Array:
    """Distress probability of every patch of a long recording (a patch every 0.48 s, YAMNet's own hop)."""
    segment = int(STREAM_SEGMENT_S * SAMPLE_RATE)
    distress: list[Float32Array] = []
    for start in range(0, len(audio), segment):
        piece = patches(audio[start : start + segment])
        for first in range(0, len(piece), BATCH):
            distress.append(model.scores_of(*model.yamnet.run(piece[first : first + BATCH]))[1])
    return np.concatenate(distress)


class _Head(nn.Module):
    def __init__(self, hidden: int, dropout: float, n_labels: int) -> None:
        super().__init__()
        self.layer = nn.Linear(FEATURE_SIZE, hidden)
        self.hidden = nn.Sequential(nn.Dropout(dropout), self.layer, nn.ReLU(), nn.Dropout(dropout))
        self.classes = nn.Linear(hidden, n_labels)
        self.distress = nn.Linear(hidden, 1)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.hidden(inputs)
        return self.classes(hidden), self.distress(hidden).squeeze(1)


def _fit_calibration(
    class_logits: Float32Array, distress_logits: Float32Array, labels: npt.NDArray[np.int64], targets: Float32Array
) -> Calibration:
    """Temperature (class NLL over the clips' ``class_logits``) and Platt scaling (distress NLL over every row,
    both classes weighted equally) on validation."""
    logits = torch.from_numpy(class_logits)
    label_tensor = torch.from_numpy(labels)
    log_temperature = torch.zeros(1, requires_grad=True)
    scale = torch.ones(1, requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    distress = torch.from_numpy(distress_logits)
    target_tensor = torch.from_numpy(targets)
    positive_share = float(targets.mean())
    weights = torch.where(target_tensor > 0.5, 0.5 / positive_share, 0.5 / (1 - positive_share))
    optimiser = torch.optim.LBFGS([log_temperature, scale, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_temperature.exp(), label_tensor) + (
            nn.functional.binary_cross_entropy_with_logits(distress * scale + bias, target_tensor, weight=weights)
        )
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    return Calibration(float(log_temperature.exp().detach()), float(scale.detach()), float(bias.detach()))


def train_head(
    dataset: Dataset, yamnet: Yamnet, config: HeadConfig = HeadConfig(), progress: Progress | None = None
) -> HeadCheckpoint:
    """A head trained on ``dataset.train``, with epoch, calibration and threshold chosen on its validation split."""
    torch.manual_seed(config.seed)
    generator = np.random.default_rng(config.seed)
    labels = dataset.config.labels
    splits = {}
    everyday_seconds: dict[Split, float] = {"train": config.everyday_train_s, "validation": config.benign_validation_s}
    for name, seconds in everyday_seconds.items():
        clips = dataset.split(name)
        scores, embeddings = yamnet_outputs(yamnet, clips, dataset.directory / f"yamnet-{name}.npz", progress)
        everyday = head_inputs(*everyday_outputs(yamnet, dataset, name, seconds, progress))
        splits[name] = (
            np.concatenate([head_inputs(scores, embeddings), everyday]),
            np.concatenate([clips.labels, np.full(len(everyday), NO_CLASS)]),  # an everyday window has no class
            np.concatenate([dataset.config.distress_targets(clips.labels), np.zeros(len(everyday), np.float32)]),
        )
    train_inputs, train_labels, train_targets = splits["train"]
    mean = train_inputs.mean(axis=0)
    std = train_inputs.std(axis=0) + 1e-3
    standardised = {name: torch.from_numpy((inputs - mean) / std) for name, (inputs, _, _) in splits.items()}
    head = _Head(config.hidden, config.dropout, len(labels))
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    best: tuple[float, dict[str, torch.Tensor]] = (-1.0, {})
    validation_targets = splits["validation"][2]
    for epoch in range(config.epochs):
        if progress:
            progress("epochs", epoch, config.epochs)
        head.train()
        order = generator.permutation(len(train_labels))
        for start in range(0, len(order), BATCH):
            rows = torch.from_numpy(order[start : start + BATCH])
            class_logits, distress_logits = head(standardised["train"][rows])
            classes = torch.from_numpy(train_labels)[rows]
            # A sum over the clips of the batch: a batch of everyday windows alone has no class term (a mean
            # over no rows would be NaN).
            class_loss = nn.functional.cross_entropy(
                class_logits, classes, ignore_index=NO_CLASS, reduction="sum"
            ) / max(1, int((classes != NO_CLASS).sum()))
            loss = class_loss + nn.functional.binary_cross_entropy_with_logits(
                distress_logits, torch.from_numpy(train_targets)[rows]
            )
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
        head.eval()
        with torch.no_grad():
            auc = roc_auc(head(standardised["validation"])[1].numpy(), validation_targets)
        if auc > best[0]:
            best = (auc, {name: value.clone() for name, value in head.state_dict().items()})
    head.load_state_dict(best[1])
    weights = HeadWeights(
        input_mean=mean.astype(np.float32),
        input_std=std.astype(np.float32),
        hidden_weight=head.layer.weight.detach().numpy().T.copy(),
        hidden_bias=head.layer.bias.detach().numpy().copy(),
        class_weight=head.classes.weight.detach().numpy().T.copy(),
        class_bias=head.classes.bias.detach().numpy().copy(),
        distress_weight=head.distress.weight.detach().numpy()[0].copy(),
        distress_bias=head.distress.bias.detach().numpy().copy(),
    )
    validation_inputs, validation_labels, _ = splits["validation"]
    n_clips = len(dataset.validation)  # the validation rows are its clips, then its everyday windows
    class_logits, distress_logits = weights.logits(validation_inputs)
    calibration = _fit_calibration(
        class_logits[:n_clips], distress_logits, validation_labels[:n_clips], validation_targets
    )
    calibrated = scipy.special.expit(calibration.platt_scale * distress_logits + calibration.platt_bias)
    distress, benign = calibrated[:n_clips], calibrated[n_clips:]
    # As distress-cnn's: at most 5 % false positives on validation clips and above every window of an hour of
    # everyday validation audio, capped at 0.99 (the incident rules' debounce does the rest).
    threshold = min(
        MAX_THRESHOLD,
        max(
            threshold_at_fpr(distress, validation_targets[:n_clips], OPERATING_FPR),
            float(np.nextafter(benign.max(), 1)),
        ),
    )
    return HeadCheckpoint(
        weights,
        labels,
        calibration,
        threshold,
        config.version,
        {
            "dataset": dataset.config.digest(),
            "dataset_config": asdict(dataset.config),
            "best_validation_auc": round(best[0], 4),
            "validation_point_at_5_fpr": round(
                threshold_at_fpr(distress, validation_targets[:n_clips], OPERATING_FPR), 4
            ),
            "everyday_validation_windows_over": {
                str(point): int((benign >= point).sum()) for point in (0.9, 0.95, 0.99)
            },
            "everyday_validation_max": round(float(benign.max()), 4),
            "everyday_train_hours": config.everyday_train_s / 3600,
            "seed": config.seed,
            "hidden": config.hidden,
        },
    )


# ------------------------------------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class ScoreRow:
    """One scorer on one split: ranking and recall at 5 % false positives, overall and per source and label."""

    scorer: str
    roc_auc: float
    recall_at_5_fpr: float
    by_source_recall: float  # each distress source counting once
    sources: int
    recall_by_label: dict[str, float]
    worst_sources: tuple[tuple[str, float, int], ...]  # (source, recall, clips)


def score_row(
    scorer: str, scores: Float32Array, clips: ClipSet, labels: Sequence[str], targets: Float32Array
) -> ScoreRow:
    threshold = threshold_at_fpr(scores, targets, OPERATING_FPR)
    hit = scores >= threshold
    source_ids = np.asarray(clips.source_ids)
    by_source: list[tuple[str, float, int]] = []
    for source in sorted(set(source_ids[targets > 0.5])):
        members = (source_ids == source) & (targets > 0.5)
        by_source.append((str(source), float(hit[members].mean()), int(members.sum())))
    by_label = {
        label: float(hit[clips.labels == index].mean())
        for index, label in enumerate(labels)
        if label in DISTRESS_LABELS and (clips.labels == index).any()
    }
    return ScoreRow(
        scorer,
        roc_auc(scores, targets),
        recall_at_fpr(scores, targets, OPERATING_FPR),
        float(np.mean([recall for _, recall, _ in by_source])),
        len(by_source),
        by_label,
        tuple(sorted(by_source, key=lambda row: row[1])[:5]),
    )


def zero_shot_scores(scores: Float32Array) -> Float32Array:
    """YAMNet without training: the highest of its distress labels' class probabilities."""
    per_label = zero_shot_distress(scores)
    maximum: Float32Array = np.max([per_label[label] for label in per_label if label in DISTRESS_LABELS], axis=0)
    return maximum


def evaluate_head(
    model: YamnetDistressModel, dataset: Dataset, split: str = "test", progress: Progress | None = None
) -> list[ScoreRow]:
    """YAMNet zero-shot and the trained head on ``split``: what `distress models evaluate-head` prints."""
    clips = dataset.split(split)
    scores, embeddings = yamnet_outputs(model.yamnet, clips, dataset.directory / f"yamnet-{split}.npz", progress)
    targets = dataset.config.distress_targets(clips.labels)
    _, distress = model.scores_of(scores, embeddings)
    labels = dataset.config.labels
    return [
        score_row("YAMNet zero-shot (max of its distress classes)", zero_shot_scores(scores), clips, labels, targets),
        score_row(f"distress-yamnet {model.checkpoint.version} (trained head)", distress, clips, labels, targets),
    ]


def format_rows(rows: Sequence[ScoreRow], split: str) -> str:
    """The markdown table of :func:`evaluate_head`'s rows, with recall by label and the weakest sources."""
    labels = sorted({label for row in rows for label in row.recall_by_label})
    lines = [
        f"| scorer ({split} split) | ROC-AUC | recall at 5 % FP | by source (each once) | " + " | ".join(labels) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(labels),
    ]
    for row in rows:
        by_label = " | ".join(f"{row.recall_by_label.get(label, float('nan')):.2f}" for label in labels)
        lines.append(
            f"| {row.scorer} | {row.roc_auc:.3f} | {row.recall_at_5_fpr:.3f} | "
            f"{row.by_source_recall:.3f} ({row.sources} sources) | {by_label} |"
        )
    for row in rows:
        weakest = ", ".join(f"{source} {recall:.2f} ({clips})" for source, recall, clips in row.worst_sources)
        lines.append(f"\n{row.scorer}, weakest sources (recall, clips): {weakest}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- product terms

OPERATING_POINTS = (0.99, 0.98, 0.95, 0.9, 0.8, 0.7, 0.6)  # tried from the highest down
VALIDATION_EVERYDAY_SEED = 200


def choose_operating_point(
    chain_at: Callable[[float], ProductChain],
    dataset: Dataset,
    data_dir: Path,
    seconds: float = 3600.0,
    progress: Progress | None = None,
) -> tuple[float, dict[str, int]]:
    """The lowest of ``OPERATING_POINTS`` at which the product's chain opens no incident in ``seconds`` of
    everyday validation audio, trying them from the highest down and stopping at the first that opens one; with
    the incidents each point tried opened. A window over the point is not yet an alarm: the incident rules'
    debounce decides, so the point is chosen through them, not from the single highest window."""
    audio = benign_stream(dataset.config, seconds, "validation", data_dir, seed=VALIDATION_EVERYDAY_SEED)
    opened: dict[str, int] = {}
    chosen = OPERATING_POINTS[0]
    for done, point in enumerate(OPERATING_POINTS):
        if progress:
            progress("operating point", done, len(OPERATING_POINTS))
        opened[str(point)] = len(chain_at(point)(audio))
        if opened[str(point)]:
            break
        chosen = point
    return chosen, opened


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
            scream = _loudest(clips.waveform(int(index)), seconds)
            start_s = EVENT_LEAD_S + float(rng.uniform(0, 1))
            length = int((start_s + EVENT_TAIL_S) * SAMPLE_RATE) + len(scream)
            offset = int(rng.integers(0, len(context) - length + 1))
            audio = context[offset : offset + length].copy()
            start = int(start_s * SAMPLE_RATE)
            audio[start : start + len(scream)] += scream
            end_s = (start + len(scream)) / SAMPLE_RATE
            opened = chain(np.clip(audio, -1.0, 1.0))
            caught += any(start_s - 1.5 <= incident.onset_s <= end_s + 0.5 for incident in opened)
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
