"""Train, calibrate and save the distress CNN and its second stage, deterministically on CPU.

Model selection (best epoch), calibration (temperature and Platt scaling), the second stage's gate and blend,
and the decision threshold all use the validation split only; the test split is left to ``models.training.evaluate``.

One module of ~720 lines, as the recipe's steps (augmentation, live-cut windows, fit, calibration, second stage)
share ``TrainConfig`` and run in this order only.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from models.asr import resolve_model
from models.classifier import (
    DISTRESS_ORDER,
    LABELS,
    MODEL_ID,
    MODEL_VERSION,
    PATCH_FRAMES,
    Architecture,
    Calibration,
    DistressClassifier,
    DistressNet,
    distress_targets,
    parameter_count,
    sha256_of,
    write_digest,
)
from models.encoder_stage import Blend, EncoderHead, EncoderStage, MelBridge, WhisperEncoder, whisper_log_mel
from models.features import LOG_MEL_OFFSET, FeatureConfig, log_mel
from models.training.dataset import (
    DEFAULT_DATA_DIR,
    ClipSet,
    DatasetConfig,
    EventStream,
    benign_stream,
    build_dataset,
    event_stream,
)
from models.training.metrics import STREAM_HOP_FRAMES, roc_auc, threshold_at_fpr

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights (together with the dataset config)."""

    seed: int = 7
    epochs: int = 14
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.05
    distress_loss_weight: float = 1.0
    freq_mask_bands: int = 8
    time_mask_frames: int = 16
    # Optional spectral augmentation on top of the clip-level audio augmentation baked into the dataset: a
    # random gain (uniform +-level_db), a random smooth equaliser (``eq_db`` standard deviation at a few mel
    # knots) and, with ``overlay_probability``, a background clip added in the power domain
    # ``overlay_snr_db`` below the clip. Off for the shipped checkpoint, as it did not raise validation ROC-AUC
    # (docs/model-history.md, "Notes from the training code").
    level_db: float = 0.0
    eq_db: float = 0.0
    overlay_probability: float = 0.0
    overlay_snr_db: tuple[float, float] = (3.0, 20.0)
    # Freq-MixStyle (Schmid et al., DCASE 2022): with ``band_mixstyle_probability`` a training patch keeps its
    # shape within each mel band but takes a Beta(``band_mixstyle_alpha``) blend of its own and another patch's
    # per-band mean and spread over time, where a recording chain (microphone, room, codec) shows most.
    band_mixstyle_probability: float = 0.0
    band_mixstyle_alpha: float = 0.3
    # Windows cut anywhere from ``context_seconds`` of training-source everyday audio with training distress
    # events mixed in (models.training.dataset.event_stream), as the runtime cuts a live stream: each step adds
    # ``context_share`` of the batch size, half windows holding an event's sound and half everyday audio only.
    # Clips alone teach the sound centred in a second of its own; live windows straddle an event's edges, carry
    # it over the room's sound, and see conversation, music and ambience far more often than any clip set.
    context_seconds: float = 14400.0
    context_share: float = 2.0
    head_context_patches: int = 3000  # of each kind, added to the second stage's training patches
    # One thread makes training bit-for-bit reproducible (two threads reorder float sums between runs).
    threads: int = 1
    # The decision threshold is the higher of (a) the lowest keeping the validation false-positive rate at or
    # below ``threshold_fpr`` and (b) just above every window of a benign validation stream this long, so an
    # ordinary stream raises no alarm; each distress label's own point likewise over the windows it tops. Two
    # hours, so each label's point rests on enough windows (docs/model-history.md, 1.5.0).
    threshold_fpr: float = 0.05
    benign_validation_seconds: float = 7200.0
    # The second stage (models.encoder_stage): Whisper's encoder over the patch with a small head, run where
    # the CNN's distress probability reaches a gate that lets ``gate_recall`` of the validation distress clips
    # through, its distress logit weighted ``head_weight`` against the CNN's: the blend beat either alone on
    # validation (docs/model-history.md, "Notes from the training code").
    second_stage: bool = True
    encoder: str | None = None  # the Whisper model whose encoder it reads; None is the bundled tiny.en
    bridge_clips: int = 1500
    head_hidden: int = 256
    head_dropout: float = 0.3
    head_learning_rate: float = 1e-3
    head_weight_decay: float = 1e-2
    head_epochs: int = 60
    head_label_smoothing: float = 0.1
    head_weight: float = 0.5
    gate_recall: float = 0.99
    architecture: Architecture = field(default_factory=Architecture)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)

    def recorded(self) -> dict[str, Any]:
        """The config as a checkpoint records it: without Freq-MixStyle's fields while it is off, so the recipe of a
        checkpoint trained before they existed still writes the same bytes."""
        fields: dict[str, Any] = json.loads(json.dumps({**asdict(self), "dataset": self.dataset.recorded()}))
        if not self.band_mixstyle_probability:
            del fields["band_mixstyle_probability"], fields["band_mixstyle_alpha"]
        return fields

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.threads < 1:
            raise ValueError("epochs, batch_size and threads must be positive (batch_size at least 2)")
        if not 0 < self.threshold_fpr < 0.5:
            raise ValueError(f"threshold_fpr must be in (0, 0.5), got {self.threshold_fpr}")
        if not (0 < self.head_weight < 1 and 0.5 < self.gate_recall < 1):
            raise ValueError("head_weight must be in (0, 1) and gate_recall in (0.5, 1)")
        if not (0 <= self.band_mixstyle_probability <= 1 and self.band_mixstyle_alpha > 0):
            raise ValueError("band_mixstyle_probability must be in [0, 1] and band_mixstyle_alpha positive")
        if self.context_seconds < 0 or self.context_share < 0 or self.head_context_patches < 0:
            raise ValueError("context_seconds, context_share and head_context_patches must not be negative")


def clip_log_mels(clips: ClipSet, progress: Progress | None = None) -> npt.NDArray[np.float32]:
    """(n, frames, mels) log-mel of every clip, with the runtime's own feature code."""
    first = log_mel(clips.waveform(0))
    out = np.empty((len(clips), *first.shape), dtype=np.float32)
    out[0] = first
    for i in range(1, len(clips)):
        out[i] = log_mel(clips.waveform(i))
        if progress and i % 500 == 0:
            progress("features", i, len(clips))
    if out.shape[1] < PATCH_FRAMES:
        raise ValueError(f"clips give {out.shape[1]} frames, fewer than the {PATCH_FRAMES}-frame patch")
    return out


def last_patches(features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The most recent PATCH_FRAMES frames of each clip: exactly what the runtime feeds the model."""
    return np.ascontiguousarray(features[:, -PATCH_FRAMES:, :])


# ln(power) per dB; log-mel frames are natural-log power.
LOG_POWER_PER_DB = math.log(10.0) / 10.0
LOG_MEL_FLOOR = math.log(LOG_MEL_OFFSET)
EQ_KNOTS = 6


def _crops(
    rng: np.random.Generator, features: npt.NDArray[np.float32], indices: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """A random PATCH_FRAMES crop of each clip (time-shift augmentation)."""
    offsets = rng.integers(0, features.shape[1] - PATCH_FRAMES + 1, size=len(indices))
    frame_index = offsets[:, None] + np.arange(PATCH_FRAMES)[None, :]
    crops: npt.NDArray[np.float32] = features[indices[:, None], frame_index]
    return crops


def _mean_log_power(patches: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """ln of the mean mel power of each patch (the level the overlay SNR refers to) or of each frame."""
    flat = patches.reshape(len(patches), -1).astype(np.float64)
    peak = flat.max(axis=1, keepdims=True)
    level: npt.NDArray[np.float64] = (peak + np.log(np.mean(np.exp(flat - peak), axis=1, keepdims=True)))[:, 0]
    return level


def _augmented_batch(
    rng: np.random.Generator,
    features: npt.NDArray[np.float32],
    indices: npt.NDArray[np.int64],
    overlay_pool: npt.NDArray[np.int64],
    fill: npt.NDArray[np.float32],
    config: TrainConfig,
) -> torch.Tensor:
    """Random crops (time shift) of the clips, augmented by :func:`_augment`."""
    return _augment(rng, _crops(rng, features, indices), features, overlay_pool, fill, config)


def _augment(
    rng: np.random.Generator,
    batch: npt.NDArray[np.float32],
    features: npt.NDArray[np.float32],
    overlay_pool: npt.NDArray[np.int64],
    fill: npt.NDArray[np.float32],
    config: TrainConfig,
) -> torch.Tensor:
    """Optional gain, equaliser and background overlay (a crop of a ``features`` clip in ``overlay_pool``), then
    SpecAugment masks filled with the band means (zero after normalisation), so the network cannot rely on any
    single band, instant, level or recording channel."""
    n, n_mels = len(batch), batch.shape[2]
    if config.level_db > 0:
        batch += (rng.uniform(-config.level_db, config.level_db, size=(n, 1, 1)) * LOG_POWER_PER_DB).astype(np.float32)
    if config.eq_db > 0:
        knots = rng.normal(0.0, config.eq_db, size=(n, EQ_KNOTS))
        positions = np.linspace(0, EQ_KNOTS - 1, n_mels)
        curves = np.stack([np.interp(positions, np.arange(EQ_KNOTS), row) for row in knots])
        batch += (curves[:, None, :] * LOG_POWER_PER_DB).astype(np.float32)
    if config.level_db > 0 or config.eq_db > 0:
        np.maximum(batch, LOG_MEL_FLOOR, out=batch)  # nothing is quieter than silence
    if config.overlay_probability > 0 and len(overlay_pool):
        overlaid = np.flatnonzero(rng.random(n) < config.overlay_probability)
        others = _crops(rng, features, rng.choice(overlay_pool, size=len(overlaid)))
        snr_db = rng.uniform(*config.overlay_snr_db, size=len(overlaid))
        shift = _mean_log_power(batch[overlaid]) - _mean_log_power(others) - snr_db * LOG_POWER_PER_DB
        batch[overlaid] = np.logaddexp(batch[overlaid], others + shift[:, None, None].astype(np.float32))
    for row in range(n):
        width = int(rng.integers(0, config.freq_mask_bands + 1))
        if width:
            start = int(rng.integers(0, n_mels - width + 1))
            batch[row, :, start : start + width] = fill[start : start + width]
        width = int(rng.integers(0, config.time_mask_frames + 1))
        if width:
            start = int(rng.integers(0, PATCH_FRAMES - width + 1))
            batch[row, start : start + width, :] = fill
    return torch.from_numpy(batch)


def _mix_band_statistics(rng: np.random.Generator, batch: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """Freq-MixStyle over the whole step's patches (clips and live windows): each chosen patch normalised per mel
    band over time, then given a random blend of its own and a random partner's band means and spreads, so the
    network meets the sound of recording chains that no training source has (the held-out sources' problem)."""
    chosen = np.flatnonzero(rng.random(len(batch)) < config.band_mixstyle_probability)
    partners = rng.integers(0, len(batch), size=len(chosen))
    own = torch.from_numpy(
        rng.beta(config.band_mixstyle_alpha, config.band_mixstyle_alpha, size=(len(chosen), 1, 1)).astype(np.float32)
    )
    mean = batch.mean(dim=1, keepdim=True)
    spread = (batch.var(dim=1, keepdim=True) + 1e-6).sqrt()
    mixed = batch.clone()
    mixed[chosen] = (
        (batch[chosen] - mean[chosen]) / spread[chosen] * (own * spread[chosen] + (1 - own) * spread[partners])
        + own * mean[chosen]
        + (1 - own) * mean[partners]
    )
    return mixed.clamp_min(LOG_MEL_FLOOR)  # nothing is quieter than silence


# An event's frames within this range of its own loudest frame, and not this far below the context it is mixed
# into, are where it is heard; a window holding MIN_HEARD_FRAMES of them (0.1 s) is that event.
EVENT_HEARD_RANGE_DB = 25.0
EVENT_HEARD_BELOW_CONTEXT_DB = 6.0
MIN_HEARD_FRAMES = 10
IGNORED_CLASS = -100  # nn.CrossEntropyLoss's default ignore_index: everyday windows have no single class


@dataclass(frozen=True)
class ContextWindows:
    """Patch start frames into the log-mel of an :class:`EventStream`, as the runtime would cut it.

    Windows holding at least MIN_HEARD_FRAMES of an event's sound carry its label; windows touching no event
    are everyday audio (distress 0, class unknown: conversation, music or ambience); the rest, an event's
    silent tail or a sliver of its edge, teach nothing reliable and are not used.
    """

    frames: npt.NDArray[np.float32]
    positive_starts: npt.NDArray[np.int64]
    positive_labels: npt.NDArray[np.int64]
    negative_starts: npt.NDArray[np.int64]

    def patches(self, starts: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        patches: npt.NDArray[np.float32] = self.frames[starts[:, None] + np.arange(PATCH_FRAMES)[None, :]]
        return patches


def _window_sums(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Sum of ``values`` over every PATCH_FRAMES window; entry ``i`` is the window starting at ``i``."""
    total = np.concatenate([[0], np.cumsum(values)])
    sums: npt.NDArray[np.int64] = total[PATCH_FRAMES:] - total[:-PATCH_FRAMES]
    return sums


def context_windows(stream: EventStream, progress: Progress | None = None) -> ContextWindows:
    """Label every patch position of ``stream`` by what of its events can be heard in it."""
    frames = log_mel(stream.mixed())
    context_power = _mean_log_power(log_mel(stream.context))
    feature_config = FeatureConfig()
    hop, starts = feature_config.hop_length, len(frames) - PATCH_FRAMES + 1
    touched = np.zeros(len(frames), dtype=np.int64)
    padding = np.zeros(PATCH_FRAMES - 1, dtype=np.int64)
    positives, labels = [], []
    for done, event in enumerate(stream.events):
        if progress and done % 50 == 0:
            progress("context", done, len(stream.events))
        first = event.start // hop
        own = _mean_log_power(log_mel(event.audio))[: len(frames) - first]
        heard = (own >= own.max() - EVENT_HEARD_RANGE_DB * LOG_POWER_PER_DB) & (
            own >= context_power[first : first + len(own)] - EVENT_HEARD_BELOW_CONTEXT_DB * LOG_POWER_PER_DB
        )
        # Frames just before ``first`` already overlap the event's first samples.
        touched[max(0, first - 2) : first + len(own)] = 1
        counts = _window_sums(np.concatenate([padding, heard.astype(np.int64), padding]))
        window_starts = np.arange(first - PATCH_FRAMES + 1, first - PATCH_FRAMES + 1 + len(counts))
        keep = (counts >= MIN_HEARD_FRAMES) & (window_starts >= 0) & (window_starts < starts)
        positives.append(window_starts[keep])
        labels.append(np.full(int(keep.sum()), event.label, dtype=np.int64))
    negatives = np.flatnonzero(_window_sums(touched) == 0)
    if not positives or not len(np.concatenate(positives)) or not len(negatives):
        raise ValueError(
            f"a {len(stream.context) / feature_config.sample_rate:.0f} s event stream gives no window of both "
            "kinds; lengthen context_seconds"
        )
    return ContextWindows(frames, np.concatenate(positives), np.concatenate(labels), negatives)


def training_context(
    config: TrainConfig, clips: ClipSet, data_dir: Path, progress: Progress | None = None
) -> ContextWindows | None:
    """The training stream's windows, or None when ``context_seconds`` is 0."""
    if not config.context_seconds:
        return None
    stream = event_stream(config.dataset, clips, config.context_seconds, "train", data_dir, seed=config.seed)
    return context_windows(stream, progress)


def _forward_all(
    network: DistressNet, patches: npt.NDArray[np.float32], batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    network.eval()
    logits, distress = [], []
    with torch.inference_mode():
        for start in range(0, len(patches), batch_size):
            class_logits, distress_logit = network(torch.from_numpy(patches[start : start + batch_size]))
            logits.append(class_logits)
            distress.append(distress_logit)
    return torch.cat(logits), torch.cat(distress)


def fit_calibration(
    logits: torch.Tensor, labels: torch.Tensor, distress_logit: torch.Tensor, distress: torch.Tensor
) -> Calibration:
    """Temperature for the class softmax and Platt (a, b) for the distress logit, by maximum likelihood."""
    log_temperature = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_temperature], lr=0.1, max_iter=200)

    def temperature_loss() -> torch.Tensor:
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_temperature.exp(), labels)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(temperature_loss)  # type: ignore[no-untyped-call]
    # Weight classes to a 50/50 prior: the validation split's 5:2 distress ratio says nothing about the world.
    positives = float(distress.sum())
    balance = torch.where(distress > 0.5, 0.5 / positives, 0.5 / (len(distress) - positives))
    platt = torch.tensor([1.0, 0.0], requires_grad=True)
    platt_optimiser = torch.optim.LBFGS([platt], lr=0.1, max_iter=200)

    def platt_loss() -> torch.Tensor:
        platt_optimiser.zero_grad()
        # The balance weights sum to one, so the summed loss is the prior-weighted mean log-loss.
        loss = nn.functional.binary_cross_entropy_with_logits(
            distress_logit * platt[0] + platt[1], distress, weight=balance, reduction="sum"
        )
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    platt_optimiser.step(platt_loss)  # type: ignore[no-untyped-call]
    return Calibration(
        temperature=float(log_temperature.exp()), platt_scale=float(platt[0]), platt_bias=float(platt[1])
    )


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    sha256: str
    parameters: int
    best_epoch: int
    validation: dict[str, float]
    seconds: float


def train(
    config: TrainConfig, output: Path, data_dir: Path = DEFAULT_DATA_DIR, progress: Progress | None = None
) -> TrainResult:
    """Build/load the dataset, train, calibrate on validation, and write ``output`` plus ``output.sha256``."""
    started = time.monotonic()
    dataset = build_dataset(config.dataset, data_dir, progress)
    train_features = clip_log_mels(dataset.train, progress)
    validation_patches = last_patches(clip_log_mels(dataset.validation, progress))
    context = training_context(config, dataset.train, data_dir, progress)
    network, best_epoch, history = fit(
        config,
        train_features,
        dataset.train.labels,
        validation_patches,
        dataset.validation.labels,
        progress,
        context,
    )
    validation_set = (
        validation_patches,
        torch.from_numpy(dataset.validation.labels),
        distress_targets(dataset.validation.labels),
    )
    cnn = calibrated(network, validation_set)
    stage = (
        fit_second_stage(config, dataset.train, train_features, cnn, validation_set, progress, context)
        if config.second_stage
        else None
    )
    digest, validation = save_with_threshold(cnn, stage, validation_set, config, data_dir, output, best_epoch, history)
    parameters = parameter_count(network) + (parameter_count(stage.head) if stage else 0)
    return TrainResult(output, digest, parameters, best_epoch, validation, time.monotonic() - started)


def fit(
    config: TrainConfig,
    train_features: npt.NDArray[np.float32],
    train_label_indices: npt.NDArray[np.int64],
    validation_patches: npt.NDArray[np.float32],
    validation_label_indices: npt.NDArray[np.int64],
    progress: Progress | None = None,
    context: ContextWindows | None = None,
) -> tuple[DistressNet, int, list[dict[str, float]]]:
    """Train from a fixed seed, each step on a batch of clips plus, given ``context``, as many windows of each
    kind of it as ``context_share`` asks; returns the network at its best validation epoch (distress ROC-AUC
    plus class accuracy), that epoch, and the per-epoch history."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(config.seed)
    train_labels = torch.from_numpy(train_label_indices)
    train_distress = torch.from_numpy(distress_targets(train_label_indices))
    validation_labels = torch.from_numpy(validation_label_indices)
    validation_distress = distress_targets(validation_label_indices)
    overlay_pool = np.flatnonzero(train_label_indices == LABELS.index("background"))

    network = DistressNet(config.architecture)
    band_mean = train_features.mean(axis=(0, 1))
    band_std = train_features.std(axis=(0, 1)) + 1e-3
    network.band_mean.copy_(torch.from_numpy(band_mean))
    network.band_std.copy_(torch.from_numpy(band_std))

    steps_per_epoch = math.ceil(len(train_features) / config.batch_size)
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    class_loss = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing, ignore_index=IGNORED_CLASS)
    per_kind = round(config.batch_size * config.context_share / 2) if context is not None else 0
    distress_loss = nn.BCEWithLogitsLoss()

    best: tuple[float, int, dict[str, torch.Tensor]] = (-math.inf, -1, {})
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        network.train()
        order = rng.permutation(len(train_features))
        running = 0.0
        for step in range(steps_per_epoch):
            indices = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = _augmented_batch(rng, train_features, indices, overlay_pool, band_mean, config)
            labels, distress = train_labels[indices], train_distress[indices]
            if context is not None and per_kind:
                batch, labels, distress = _with_context(
                    rng,
                    context,
                    per_kind,
                    (batch, labels, distress),
                    train_features,
                    overlay_pool,
                    band_mean,
                    config,
                )
            if config.band_mixstyle_probability > 0:  # no draws when off: the shipped recipe's stream stays
                batch = _mix_band_statistics(rng, batch, config)
            logits, distress_logit = network(batch)
            loss = class_loss(logits, labels) + config.distress_loss_weight * distress_loss(distress_logit, distress)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            running += float(loss.detach())
            if progress:
                progress("train", epoch * steps_per_epoch + step + 1, config.epochs * steps_per_epoch)
        logits, distress_logit = _forward_all(network, validation_patches)
        accuracy = float((logits.argmax(1) == validation_labels).float().mean())
        auc = roc_auc(distress_logit.numpy(), validation_distress)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": running / steps_per_epoch,
                "validation_accuracy": accuracy,
                "validation_distress_auc": auc,
            }
        )
        score = auc + accuracy
        if score > best[0]:
            best = (score, epoch + 1, {k: v.detach().clone() for k, v in network.state_dict().items()})

    network.load_state_dict(best[2])
    return network, best[1], history


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # patches, class indices, distress targets


def _with_context(
    rng: np.random.Generator,
    context: ContextWindows,
    per_kind: int,
    clip_batch: Batch,
    features: npt.NDArray[np.float32],
    overlay_pool: npt.NDArray[np.int64],
    fill: npt.NDArray[np.float32],
    config: TrainConfig,
) -> Batch:
    """``clip_batch`` plus ``per_kind`` random event windows and as many everyday windows of ``context``.

    (Taking the everyday windows the network scored highest among four candidates made validation worse.)"""
    chosen = rng.integers(0, len(context.positive_starts), size=per_kind)
    negatives = rng.choice(context.negative_starts, size=per_kind)
    starts = np.concatenate([context.positive_starts[chosen], negatives])
    patches = _augment(rng, context.patches(starts), features, overlay_pool, fill, config)
    labels = np.concatenate([context.positive_labels[chosen], np.full(per_kind, IGNORED_CLASS, dtype=np.int64)])
    distress = np.repeat(np.array([1.0, 0.0], dtype=np.float32), per_kind)
    batch, clip_labels, clip_distress = clip_batch
    return (
        torch.cat([batch, patches]),
        torch.cat([clip_labels, torch.from_numpy(labels)]),
        torch.cat([clip_distress, torch.from_numpy(distress)]),
    )


ValidationSet = tuple[npt.NDArray[np.float32], torch.Tensor, npt.NDArray[np.float32]]


def calibrated(network: DistressNet, validation_set: ValidationSet) -> DistressClassifier:
    """The CNN with its class temperature and distress Platt scaling fitted on validation (no threshold yet)."""
    validation_patches, validation_labels, validation_distress = validation_set
    logits, distress_logit = _forward_all(network, validation_patches)
    calibration = fit_calibration(logits, validation_labels, distress_logit, torch.from_numpy(validation_distress))
    return DistressClassifier(network, calibration, threshold=0.5)


def _encoder_embeddings(
    encoder: WhisperEncoder, bridge: MelBridge, patches: npt.NDArray[np.float32], progress: Progress | None
) -> npt.NDArray[np.float32]:
    chunks, step = [], 512
    for start in range(0, len(patches), step):
        chunks.append(encoder.embed(bridge.whisper_input(patches[start : start + step])))
        if progress:
            progress("encoder", min(start + step, len(patches)), len(patches))
    return np.concatenate(chunks)


def _fit_head(
    config: TrainConfig,
    embeddings: npt.NDArray[np.float32],
    label_indices: npt.NDArray[np.int64],
    distress_target: npt.NDArray[np.float32],
) -> EncoderHead:
    """The second stage's head, trained from the fixed seed on pooled encoder vectors of training patches
    (class IGNORED_CLASS: distress target only)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    head = EncoderHead(embeddings.shape[1], config.head_hidden, config.head_dropout, len(LABELS))
    head.feature_mean.copy_(torch.from_numpy(embeddings.mean(axis=0)))
    head.feature_std.copy_(torch.from_numpy(embeddings.std(axis=0) + 1e-6))
    inputs = torch.from_numpy(embeddings)
    labels = torch.from_numpy(label_indices)
    distress = torch.from_numpy(distress_target)
    optimiser = torch.optim.AdamW(
        head.parameters(), lr=config.head_learning_rate, weight_decay=config.head_weight_decay
    )
    head.train()
    for _ in range(config.head_epochs):
        order = torch.from_numpy(rng.permutation(len(inputs)))
        for start in range(0, len(order), 256):
            batch = order[start : start + 256]
            class_logits, distress_logit = head(inputs[batch])
            loss = nn.functional.cross_entropy(
                class_logits,
                labels[batch],
                label_smoothing=config.head_label_smoothing,
                ignore_index=IGNORED_CLASS,
            ) + nn.functional.binary_cross_entropy_with_logits(distress_logit, distress[batch])
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
    return head.eval()


def fit_second_stage(
    config: TrainConfig,
    train_clips: ClipSet,
    train_features: npt.NDArray[np.float32],
    cnn: DistressClassifier,
    validation_set: ValidationSet,
    progress: Progress | None = None,
    context: ContextWindows | None = None,
) -> EncoderStage:
    """Bridge (fitted on training audio), head (trained on training clips and up to ``head_context_patches``
    windows of each kind of ``context``), then gate and blend (validation)."""
    model = resolve_model(config.encoder)
    encoder = WhisperEncoder(model.path, threads=config.threads)
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(len(train_clips), min(config.bridge_clips, len(train_clips)), replace=False))
    ours, whisper = [], []
    for index in chosen:
        target = whisper_log_mel(train_clips.waveform(int(index)))
        frames = min(len(target), train_features.shape[1])
        ours.append(train_features[index, :frames])
        whisper.append(target[:frames])
    bridge = MelBridge.fit(np.concatenate(ours), np.concatenate(whisper))
    patches, labels = last_patches(train_features), train_clips.labels
    distress = distress_targets(labels)
    if context is not None and config.head_context_patches:
        positive = np.sort(
            rng.choice(
                len(context.positive_starts),
                min(config.head_context_patches, len(context.positive_starts)),
                replace=False,
            )
        )
        negative = np.sort(
            rng.choice(
                context.negative_starts, min(config.head_context_patches, len(context.negative_starts)), replace=False
            )
        )
        patches = np.concatenate(
            [patches, context.patches(context.positive_starts[positive]), context.patches(negative)]
        )
        labels = np.concatenate(
            [labels, context.positive_labels[positive], np.full(len(negative), IGNORED_CLASS, dtype=np.int64)]
        )
        distress = np.concatenate([distress, np.ones(len(positive), np.float32), np.zeros(len(negative), np.float32)])
    head = _fit_head(config, _encoder_embeddings(encoder, bridge, patches, progress), labels, distress)
    validation_patches, validation_labels, validation_distress = validation_set
    validation_embeddings = _encoder_embeddings(encoder, bridge, validation_patches, progress)
    with torch.no_grad():  # not inference mode: the class logits go on to the calibration's autograd
        class_logits, head_distress = head(torch.from_numpy(validation_embeddings))
    cnn_probabilities, cnn_logit = cnn.cnn_scores(validation_patches)
    positive_probability = 1.0 / (1.0 + np.exp(-cnn_logit[validation_distress > 0.5].astype(np.float64)))
    blend = Blend(
        gate=float(np.quantile(positive_probability, 1.0 - config.gate_recall)),
        cnn_scale=float(cnn_logit.std()),
        head_scale=float(head_distress.std()),
        head_weight=config.head_weight,
    )
    stage = EncoderStage(bridge, encoder, head, blend, sha256_of(model.path / "model.bin"))
    _, blended = stage.blended_logits(validation_patches, cnn_probabilities, cnn_logit)
    fitted = fit_calibration(
        class_logits, validation_labels, torch.from_numpy(blended), torch.from_numpy(validation_distress)
    )
    stage.blend = replace(
        blend,
        head_temperature=fitted.temperature,
        platt_scale=fitted.platt_scale,
        platt_bias=fitted.platt_bias,
    )
    return stage


def save_with_threshold(
    cnn: DistressClassifier,
    stage: EncoderStage | None,
    validation_set: ValidationSet,
    config: TrainConfig,
    data_dir: Path,
    output: Path,
    best_epoch: int,
    history: list[dict[str, float]],
) -> tuple[str, dict[str, float]]:
    """Choose the decision threshold on validation, then write the checkpoint and its .sha256."""
    validation_patches, validation_labels, validation_distress = validation_set
    network, calibration = cnn.network, cnn.calibration
    provisional = DistressClassifier(network, calibration, threshold=0.5, second_stage=stage)
    probabilities, distress_probability = provisional.score_arrays(validation_patches)
    at_fpr = threshold_at_fpr(distress_probability, validation_distress, config.threshold_fpr)
    benign = benign_stream(config.dataset, config.benign_validation_seconds, "validation", data_dir)
    stream_probabilities, stream_distress = provisional.stream_scores(log_mel(benign), STREAM_HOP_FRAMES)
    benign_max = float(stream_distress.max())

    def operating_point(loudest_benign: float) -> float:
        return min(0.99, max(0.01, at_fpr, float(np.nextafter(np.float32(loudest_benign), np.float32(1.0)))))

    threshold = operating_point(benign_max)
    # Per label: just above the loudest benign window whose top distress label it is (none: the threshold).
    tops = provisional.top_distress_columns(stream_probabilities)
    label_thresholds = {
        label: operating_point(float(stream_distress[tops == column].max())) if np.any(tops == column) else threshold
        for column, label in enumerate(DISTRESS_ORDER)
    }
    classifier = DistressClassifier(
        network, calibration, threshold, MODEL_ID, MODEL_VERSION, second_stage=stage, label_thresholds=label_thresholds
    )
    decided = distress_probability >= classifier.thresholds(probabilities)
    validation = {
        "accuracy": float(np.mean(probabilities.argmax(axis=1) == validation_labels.numpy())),
        "distress_auc": roc_auc(distress_probability, validation_distress),
        "recall_at_threshold": float(np.mean(decided[validation_distress > 0.5])),
        "fpr_at_threshold": float(np.mean(decided[validation_distress <= 0.5])),
        "threshold_at_fpr": at_fpr,
        "benign_stream_max": benign_max,
    }
    if stage is not None:
        _, cnn_only = cnn.score_arrays(validation_patches)
        validation["cnn_distress_auc"] = roc_auc(cnn_only, validation_distress)
        validation["second_stage_gate"] = stage.blend.gate
        validation["second_stage_share"] = float(np.mean(cnn_only >= stage.blend.gate))
    metadata = {
        "dataset_digest": config.dataset.digest(),
        "train_config": config.recorded(),
        "best_epoch": best_epoch,
        "history": history,
        "validation": validation,
        "parameters": parameter_count(network),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }
    if stage is not None:
        metadata["second_stage"] = {
            "encoder": str(resolve_model(config.encoder).model_id),
            "encoder_sha256": stage.encoder_sha256,
            "head_parameters": parameter_count(stage.head),
        }
    classifier.metadata = metadata
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(classifier.to_payload(), output)
    return write_digest(output), validation
