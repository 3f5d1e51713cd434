"""Train and evaluate the distress head on YAMNet (``models.yamnet_head``) on a dataset's splits.

YAMNet runs once per clip (its first 0.96 s patch), over everyday audio, and over windows of a stream with
training events mixed in; its outputs are cached beside the dataset, so the head trains in seconds. Everything
chosen here is chosen on the validation split: the epoch (distress ROC-AUC), the calibration (temperature, Platt
scaling) and the operating point (the lowest threshold with at most 5 % false positives). The test split is only
read by :func:`evaluate_head`, which scores YAMNet zero-shot (the highest probability among its AudioSet classes
of our distress labels) beside the trained head.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
from models.features import log_mel
from models.training.dataset import ClipSet, Dataset, Split, benign_stream, event_stream
from models.training.metrics import recall_at_fpr, roc_auc, threshold_at_fpr
from models.training.train import context_windows
from models.yamnet import FRONT_END, PATCH_FRAMES, Yamnet, patches, zero_shot_distress
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
    # Windows cut from training-source everyday audio with training distress events mixed in, as a live stream
    # is cut (models.training.train.context_windows, as distress-cnn trains): ``context_windows`` holding an
    # event's sound and as many of the everyday audio around them. Clips alone teach a sound centred in a second
    # of its own; the product hears it straddling window edges, over a room, and often for a fraction of a second.
    context_s: float = 4 * 3600.0
    context_windows: int = 24000
    version: str = MODEL_VERSION
    benign_validation_s: float = 3600.0
    # Heads trained alike from seeds ``seed``, ``seed + 1``, ... whose logits are averaged. Tried against the seed
    # spread (61-97 of 280 validation events for seeds of one recipe); three averaged caught 70 (docs/yamnet.md).
    members: int = 1


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


def _cache(dataset: Dataset, name: str) -> Path:
    """A cache file of YAMNet's outputs beside ``dataset``, named for the everyday audio it was cut from."""
    spacing = "-spaced" if dataset.config.spaced_one_shots else ""  # the directory's name leaves the field out
    return dataset.directory / f"yamnet-{name}{spacing}.npz"


def everyday_outputs(
    yamnet: Yamnet, dataset: Dataset, split: Split, seconds: float, progress: Progress | None = None
) -> tuple[Float32Array, Float32Array]:
    """YAMNet's (class probabilities, embeddings) of every patch of ``seconds`` of ``split``'s everyday audio
    (``benign_stream``, seed 0), a patch every 0.48 s; cached beside the dataset."""
    cache = _cache(dataset, f"everyday-{split}-{seconds:g}s")
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


def context_outputs(
    yamnet: Yamnet, dataset: Dataset, config: HeadConfig, progress: Progress | None = None
) -> tuple[Float32Array, npt.NDArray[np.int64], Float32Array]:
    """(head inputs, class labels, distress targets) of ``config.context_windows`` windows holding a training
    event's sound (its label, distress 1) and as many of everyday audio only (no class, distress 0), drawn from
    ``config.context_s`` of :func:`event_stream` over the training split; cached beside the dataset."""
    cache = _cache(dataset, f"context-train-{config.context_s:g}s-{config.context_windows}-seed{config.seed}")
    if cache.exists():
        with np.load(cache) as data:
            return data["inputs"], data["labels"], data["targets"]
    stream = event_stream(
        dataset.config, dataset.train, config.context_s, "train", dataset.directory.parent, seed=config.seed
    )
    windows = context_windows(stream, progress)
    rng = np.random.default_rng(config.seed)
    chosen = rng.choice(
        len(windows.positive_starts), min(config.context_windows, len(windows.positive_starts)), replace=False
    )
    everyday = rng.choice(
        windows.negative_starts, min(config.context_windows, len(windows.negative_starts)), replace=False
    )
    starts = np.concatenate([windows.positive_starts[chosen], everyday])
    frames = log_mel(stream.mixed(), FRONT_END)  # YAMNet's front end frames audio as the CNN's does
    outputs: list[tuple[Float32Array, Float32Array]] = []
    for first in range(0, len(starts), BATCH):
        if progress:
            progress("context", first, len(starts))
        batch = starts[first : first + BATCH]
        outputs.append(yamnet.run(frames[batch[:, None] + np.arange(PATCH_FRAMES)[None, :]]))
    inputs = head_inputs(np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs]))
    positive_labels = windows.positive_labels[chosen]
    labels = np.concatenate([positive_labels, np.full(len(everyday), NO_CLASS)])
    targets = np.concatenate([dataset.config.distress_targets(positive_labels), np.zeros(len(everyday), np.float32)])
    np.savez(cache, inputs=inputs, labels=labels, targets=targets)
    return inputs, labels, targets


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


def _train_member(
    config: HeadConfig,
    seed: int,
    n_labels: int,
    standardised: Mapping[Split, torch.Tensor],
    train: tuple[Float32Array, npt.NDArray[np.int64], Float32Array],
    validation_targets: Float32Array,
    standardisation: tuple[Float32Array, Float32Array],
    progress: Progress | None,
) -> tuple[float, HeadWeights]:
    """One head from ``seed``, at the epoch of its best validation AUC: (that AUC, its weights)."""
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    _, train_labels, train_targets = train
    head = _Head(config.hidden, config.dropout, n_labels)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    best: tuple[float, dict[str, torch.Tensor]] = (-1.0, {})
    for epoch in range(config.epochs):
        if progress:
            progress(f"epochs of head {seed}", epoch, config.epochs)
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
    mean, std = standardisation
    return best[0], HeadWeights(
        input_mean=mean,
        input_std=std,
        hidden_weight=head.layer.weight.detach().numpy().T.copy(),
        hidden_bias=head.layer.bias.detach().numpy().copy(),
        class_weight=head.classes.weight.detach().numpy().T.copy(),
        class_bias=head.classes.bias.detach().numpy().copy(),
        distress_weight=head.distress.weight.detach().numpy()[0].copy(),
        distress_bias=head.distress.bias.detach().numpy().copy(),
    )


def averaged(members: Sequence[HeadWeights]) -> HeadWeights:
    """Heads of one input standardisation as one: their hidden units side by side and their output logits
    averaged, so the product still runs one head, only wider (its cost stays negligible beside YAMNet's)."""
    first = members[0]
    if any(
        not np.array_equal(member.input_mean, first.input_mean) or not np.array_equal(member.input_std, first.input_std)
        for member in members
    ):
        raise ValueError("only heads trained on the same inputs can be averaged")
    share = np.float32(1 / len(members))
    return HeadWeights(
        input_mean=first.input_mean,
        input_std=first.input_std,
        hidden_weight=np.concatenate([member.hidden_weight for member in members], axis=1),
        hidden_bias=np.concatenate([member.hidden_bias for member in members]),
        class_weight=np.concatenate([member.class_weight for member in members]) * share,
        class_bias=np.sum([member.class_bias for member in members], axis=0) * share,
        distress_weight=np.concatenate([member.distress_weight for member in members]) * share,
        distress_bias=np.sum([member.distress_bias for member in members], axis=0) * share,
    )


def train_head(
    dataset: Dataset, yamnet: Yamnet, config: HeadConfig = HeadConfig(), progress: Progress | None = None
) -> HeadCheckpoint:
    """A head trained on ``dataset.train`` (``config.members`` heads averaged), with epochs, calibration and
    threshold chosen on its validation split."""
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
    if config.context_windows:
        context = context_outputs(yamnet, dataset, config, progress)
        clip_rows = splits["train"]
        splits["train"] = (
            np.concatenate([clip_rows[0], context[0]]),
            np.concatenate([clip_rows[1], context[1]]),
            np.concatenate([clip_rows[2], context[2]]),
        )
    train_inputs = splits["train"][0]
    mean = train_inputs.mean(axis=0)
    std = train_inputs.std(axis=0) + 1e-3
    standardised = {name: torch.from_numpy((inputs - mean) / std) for name, (inputs, _, _) in splits.items()}
    validation_targets = splits["validation"][2]
    standardisation = (mean.astype(np.float32), std.astype(np.float32))
    members = [
        _train_member(
            config,
            config.seed + member,
            len(labels),
            standardised,
            splits["train"],
            validation_targets,
            standardisation,
            progress,
        )
        for member in range(config.members)
    ]
    weights = averaged([member for _, member in members])
    validation_inputs, validation_labels, _ = splits["validation"]
    n_clips = len(dataset.validation)  # the validation rows are its clips, then its everyday windows
    class_logits, distress_logits = weights.logits(validation_inputs)
    best_auc = roc_auc(distress_logits, validation_targets)
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
            "best_validation_auc": round(best_auc, 4),
            "member_validation_aucs": [round(auc, 4) for auc, _ in members],
            "validation_point_at_5_fpr": round(
                threshold_at_fpr(distress, validation_targets[:n_clips], OPERATING_FPR), 4
            ),
            "everyday_validation_windows_over": {
                str(point): int((benign >= point).sum()) for point in (0.9, 0.95, 0.99)
            },
            "everyday_validation_max": round(float(benign.max()), 4),
            "everyday_train_hours": config.everyday_train_s / 3600,
            "context_train_hours": config.context_s / 3600,
            "context_windows_of_each_kind": config.context_windows,
            "seed": config.seed,
            "members": config.members,
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
