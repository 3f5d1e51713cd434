"""The acoustic distress classifier: a small strided CNN over a ~1 s log-mel patch.

Input is the most recent ``PATCH_FRAMES`` = 96 frames (0.97 s at a 10 ms hop) of ``models.features.log_mel``
(64 HTK mel bands, 125-7500 Hz, natural-log power). 96 rather than the 98 frames of a full second lets
training crop the 98-frame clips at random offsets (time-shift augmentation) while the runtime always has a
full patch.

Outputs:

* ``probabilities`` over ``LABELS`` (softmax with a temperature fitted on the validation split);
* ``distress_probability`` from a separate distress head (one logit trained against "any of
  ``DISTRESS_LABELS``"), Platt-scaled on the validation split so that it is calibrated, not just a ranking
  score.

A dedicated head rather than a sum of class probabilities lets the network learn distress cues shared across
classes (a shout that is half scream) and gives a single number that can be thresholded and fused.

A checkpoint may carry a second stage (``models.encoder_stage``): Whisper's encoder over the same patch, run
only where the CNN is suspicious and blended with it there. The checkpoint then records the SHA-256 of the
encoder's weights, and loading checks that the configured Whisper model is that one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from domain.labels import DISTRESS_LABELS as ALL_DISTRESS_LABELS
from domain.labels import SOUND_LABELS
from models.asr import ModelNotAvailable, resolve_model
from models.encoder_stage import EncoderStage, WhisperEncoder
from models.fusion import Accumulation

# The labels of distress-cnn 1.x checkpoints: the first seven (gunshot and alarm came with the YAMNet head).
LABELS: tuple[str, ...] = SOUND_LABELS[:7]
DISTRESS_LABELS: frozenset[str] = ALL_DISTRESS_LABELS & frozenset(LABELS)
DISTRESS_ORDER: tuple[str, ...] = tuple(label for label in LABELS if label in DISTRESS_LABELS)
DISTRESS_COLUMNS: list[int] = [LABELS.index(label) for label in DISTRESS_ORDER]
N_MELS = 64
PATCH_FRAMES = 96
MODEL_ID = "distress-cnn"
MODEL_VERSION = "1.5.0"
CHECKPOINT_FORMAT = 2
ASSETS_DIR = Path(__file__).parent / "assets"


class ClassifierError(Exception):
    """A checkpoint or an input patch is unusable; the message says what is wrong."""


def distress_targets(label_indices: npt.NDArray[np.integer]) -> npt.NDArray[np.float32]:
    """1.0 for clips whose label is a distress label, else 0.0."""
    is_distress = np.array([label in DISTRESS_LABELS for label in LABELS], dtype=np.float32)
    targets: npt.NDArray[np.float32] = is_distress[label_indices]
    return targets


def default_checkpoint_path() -> Path:
    """The checkpoint shipped with the package for the current model version."""
    return ASSETS_DIR / f"{MODEL_ID}-{MODEL_VERSION}.pt"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_digest(path: Path) -> str:
    """Write ``path``'s ``.sha256`` file (as `sha256sum` does) for :func:`verify_digest`; its digest."""
    digest = sha256_of(path)
    _digest_file(path).write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    return digest


def verify_digest(path: Path) -> None:
    """Refuse a checkpoint that differs from its ``.sha256`` file, where it has one (a damaged or swapped file)."""
    digest_file = _digest_file(path)
    if digest_file.exists():
        expected = digest_file.read_text().split()[0]
        actual = sha256_of(path)
        if actual != expected:
            raise ClassifierError(f"{path} has sha256 {actual} but {digest_file.name} says {expected}")


# ------------------------------------------------------------------------------------------------ network


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU. Plain (not depthwise-separable) convolutions: on CPU PyTorch runs
    them several times faster per useful FLOP, which matters more here than the parameter count."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


@dataclass(frozen=True)
class Architecture:
    """Widths of the network; stored in the checkpoint so a checkpoint rebuilds its own network."""

    stem_channels: int = 16
    block_channels: tuple[int, ...] = (32, 64, 160)
    block_strides: tuple[int, ...] = (2, 2, 2)
    hidden: int = 64
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if len(self.block_channels) != len(self.block_strides):
            raise ClassifierError("block_channels and block_strides must have the same length")


class DistressNet(nn.Module):
    """log-mel patch (batch, PATCH_FRAMES, N_MELS) -> (class logits (batch, n_labels), distress logit
    (batch,)).

    Per-band input normalisation lives in the network (buffers fitted on the training set) so callers pass raw
    log-mel frames exactly as ``models.features.log_mel`` produces them.
    """

    def __init__(self, architecture: Architecture = Architecture(), n_labels: int = len(LABELS)) -> None:
        super().__init__()
        self.architecture = architecture
        self.band_mean: torch.Tensor
        self.band_std: torch.Tensor
        self.register_buffer("band_mean", torch.zeros(N_MELS))
        self.register_buffer("band_std", torch.ones(N_MELS))
        self.stem = _conv_block(1, architecture.stem_channels, stride=2)
        blocks: list[nn.Module] = []
        channels = architecture.stem_channels
        frequency = math.ceil(N_MELS / 2)
        for out_channels, stride in zip(architecture.block_channels, architecture.block_strides, strict=True):
            blocks.append(_conv_block(channels, out_channels, stride))
            channels = out_channels
            frequency = math.ceil(frequency / stride)
        self.blocks = nn.Sequential(*blocks)
        # Mean and max over time of every (channel, frequency) cell: frequency position stays informative.
        self.embedding = nn.Sequential(
            nn.Dropout(architecture.dropout),
            nn.Linear(2 * channels * frequency, architecture.hidden),
            nn.ReLU(),
        )
        self.class_head = nn.Linear(architecture.hidden, n_labels)
        self.distress_head = nn.Linear(architecture.hidden, 1)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (patches - self.band_mean) / self.band_std
        x = x.transpose(1, 2).unsqueeze(1)  # (batch, 1, mels, frames)
        x = self.blocks(self.stem(x))
        x = x.flatten(1, 2)  # (batch, channels * frequency, time)
        pooled = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)
        hidden = self.embedding(pooled)
        return self.class_head(hidden), self.distress_head(hidden).squeeze(1)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------ inference


@dataclass(frozen=True)
class Calibration:
    """Fitted on the validation split: class-softmax temperature and Platt scaling of the distress logit."""

    temperature: float = 1.0
    platt_scale: float = 1.0
    platt_bias: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ClassifierError(f"calibration temperature must be positive, got {self.temperature}")
        if not (math.isfinite(self.platt_scale) and math.isfinite(self.platt_bias)):
            raise ClassifierError("Platt scaling parameters must be finite")


@dataclass(frozen=True)
class ClassScores:
    """What the classifier says about one patch, with the model that said it."""

    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    distress_probability: float
    model_id: str
    model_version: str

    @property
    def top_label(self) -> str:
        return self.labels[int(np.argmax(self.probabilities))]

    def probability(self, label: str) -> float:
        if label not in self.labels:
            raise ClassifierError(f"unknown label {label!r}; the model knows {self.labels}")
        return self.probabilities[self.labels.index(label)]


class DistressClassifier:
    """A loaded, calibrated checkpoint ready for CPU inference (eval mode, no gradients)."""

    accumulation: Accumulation | None = None  # validated window by window: each window is judged on its own

    def __init__(
        self,
        network: DistressNet,
        calibration: Calibration,
        threshold: float,
        model_id: str = MODEL_ID,
        model_version: str = MODEL_VERSION,
        metadata: dict[str, Any] | None = None,
        second_stage: EncoderStage | None = None,
        label_thresholds: Mapping[str, float] | None = None,
    ) -> None:
        label_thresholds = dict(label_thresholds or {})
        for name, value in (("decision threshold", threshold), *label_thresholds.items()):
            if not 0.0 < value < 1.0:
                raise ClassifierError(f"{name} threshold must be in (0, 1), got {value}")
        if unknown := set(label_thresholds) - DISTRESS_LABELS:
            raise ClassifierError(
                f"label thresholds for {sorted(unknown)}; distress labels are {sorted(DISTRESS_LABELS)}"
            )
        self.network = network.eval()
        self.calibration = calibration
        self.threshold = threshold
        # A window's operating point is that of its most probable distress label, where the checkpoint has one:
        # the benign audio that scores high is mostly taken for one kind of distress (animal calls for screams,
        # clicks for impacts), so a label the everyday audio never imitates need not wait at the same point.
        self.label_thresholds = label_thresholds
        self.model_id = model_id
        self.model_version = model_version
        self.metadata = metadata or {}
        self.second_stage = second_stage

    @property
    def labels(self) -> tuple[str, ...]:
        return LABELS

    @classmethod
    def load(cls, path: Path | None = None, encoder: str | Path | None = None) -> DistressClassifier:
        """Load a checkpoint (default: the shipped one), checked against its ``.sha256`` file if present.

        ``encoder`` is the Whisper model whose encoder a second stage reads (a directory, or None / "tiny.en"
        for the bundled one); it must be the model the stage was trained with."""
        path = path or default_checkpoint_path()
        if not path.is_file():
            raise ClassifierError(f"no checkpoint at {path}; train one with `distress models train`")
        verify_digest(path)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, ValueError) as error:
            raise ClassifierError(f"cannot read checkpoint {path}: {error}") from error
        return cls.from_payload(payload, source=str(path), encoder=encoder)

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any], source: str = "checkpoint", encoder: str | Path | None = None
    ) -> DistressClassifier:
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise ClassifierError(
                f"{source} has checkpoint format {payload.get('format')!r}, expected {CHECKPOINT_FORMAT}"
            )
        if tuple(payload["labels"]) != LABELS or payload["patch_frames"] != PATCH_FRAMES:
            raise ClassifierError(
                f"{source} was trained for labels {payload['labels']} and "
                f"{payload['patch_frames']} frames; this code uses {LABELS} and {PATCH_FRAMES}"
            )
        raw = payload["architecture"]
        architecture = Architecture(
            stem_channels=int(raw["stem_channels"]),
            block_channels=tuple(int(c) for c in raw["block_channels"]),
            block_strides=tuple(int(s) for s in raw["block_strides"]),
            hidden=int(raw["hidden"]),
            dropout=float(raw["dropout"]),
        )
        network = DistressNet(architecture)
        network.load_state_dict(payload["state_dict"])
        return cls(
            network,
            Calibration(**payload["calibration"]),
            float(payload["threshold"]),
            str(payload["model_id"]),
            str(payload["model_version"]),
            dict(payload.get("metadata", {})),
            _second_stage(payload.get("second_stage"), source, encoder),
            {str(label): float(value) for label, value in payload.get("label_thresholds", {}).items()},
        )

    def to_payload(self) -> dict[str, Any]:
        """Everything ``from_payload`` needs, as plain types and tensors (loadable with weights_only=True)."""
        arch = self.network.architecture
        return {
            "format": CHECKPOINT_FORMAT,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "labels": list(LABELS),
            "distress_labels": sorted(DISTRESS_LABELS),
            "patch_frames": PATCH_FRAMES,
            "n_mels": N_MELS,
            "architecture": {
                "stem_channels": arch.stem_channels,
                "block_channels": list(arch.block_channels),
                "block_strides": list(arch.block_strides),
                "hidden": arch.hidden,
                "dropout": arch.dropout,
            },
            "calibration": {
                "temperature": self.calibration.temperature,
                "platt_scale": self.calibration.platt_scale,
                "platt_bias": self.calibration.platt_bias,
            },
            "threshold": self.threshold,
            "label_thresholds": dict(sorted(self.label_thresholds.items())),
            "state_dict": {k: v.detach().clone() for k, v in self.network.state_dict().items()},
            "metadata": self.metadata,
            "second_stage": self.second_stage.to_payload() if self.second_stage else None,
        }

    @staticmethod
    def _validated(patches: npt.NDArray[np.floating], batched: bool) -> npt.NDArray[np.float32]:
        array = np.asarray(patches)
        expected = ("(batch, " if batched else "(") + f"{PATCH_FRAMES}, {N_MELS})"
        shape_ok = array.ndim == (3 if batched else 2) and array.shape[-2:] == (PATCH_FRAMES, N_MELS)
        if not shape_ok:
            raise ClassifierError(f"log-mel patch must have shape {expected} (frames, mel bands), got {array.shape}")
        if not np.issubdtype(array.dtype, np.floating):
            raise ClassifierError(f"log-mel patch must be floating point, got {array.dtype}")
        if not np.all(np.isfinite(array)):
            raise ClassifierError("log-mel patch contains NaN or infinite values")
        return np.ascontiguousarray(array, dtype=np.float32)

    def predict(self, log_mel_patch: npt.NDArray[np.floating]) -> ClassScores:
        """Scores for one (PATCH_FRAMES, N_MELS) patch of log-mel frames, oldest frame first."""
        return self.predict_batch(self._validated(log_mel_patch, batched=False)[None])[0]

    def predict_batch(self, patches: npt.NDArray[np.floating]) -> list[ClassScores]:
        """Scores for a batch of patches (e.g. one per stream): one forward pass, far cheaper than many."""
        probabilities, distress = self.score_arrays(self._validated(patches, batched=True))
        return [
            ClassScores(LABELS, tuple(float(p) for p in row), float(d), self.model_id, self.model_version)
            for row, d in zip(probabilities, distress, strict=True)
        ]

    def score_arrays(self, patches: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Calibrated (class probabilities (n, labels), distress probabilities (n,)) for validated patches."""
        probabilities, calibrated = self.cnn_scores(patches)
        if self.second_stage is not None:
            return self.second_stage.refine(patches, probabilities, calibrated)
        return probabilities, torch.sigmoid(torch.from_numpy(calibrated)).numpy()

    def cnn_scores(self, patches: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The CNN's own calibrated (class probabilities, distress logit): what a second stage gates and blends."""
        with torch.inference_mode():
            logits, distress_logit = self.network(torch.from_numpy(patches))
            probabilities = torch.softmax(logits / self.calibration.temperature, dim=1).numpy()
            calibrated = (distress_logit * self.calibration.platt_scale + self.calibration.platt_bias).numpy()
        return probabilities, calibrated

    def stream_scores(
        self, frames: npt.NDArray[np.floating], hop_frames: int, batch_size: int = 512
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(class probabilities, distress probability) of every PATCH_FRAMES window of a long log-mel sequence,
        one window per ``hop_frames``: what a stream scored every ``hop_frames`` frames would see."""
        if hop_frames < 1:
            raise ClassifierError(f"hop_frames must be positive, got {hop_frames}")
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[1] != N_MELS or frames.shape[0] < PATCH_FRAMES:
            raise ClassifierError(f"need (>= {PATCH_FRAMES}, {N_MELS}) log-mel frames, got {frames.shape}")
        starts = np.arange(0, len(frames) - PATCH_FRAMES + 1, hop_frames)
        probabilities, distress = [], []
        for first in range(0, len(starts), batch_size):
            batch = np.stack([frames[s : s + PATCH_FRAMES] for s in starts[first : first + batch_size]])
            scored = self.score_arrays(self._validated(batch, batched=True))
            probabilities.append(scored[0])
            distress.append(scored[1])
        return np.concatenate(probabilities), np.concatenate(distress)

    @staticmethod
    def top_distress_columns(probabilities: npt.NDArray[np.floating]) -> npt.NDArray[np.intp]:
        """For each row of class probabilities (n, labels), its top distress label as an index of DISTRESS_ORDER."""
        columns: npt.NDArray[np.intp] = np.asarray(probabilities)[:, DISTRESS_COLUMNS].argmax(axis=1)
        return columns

    def thresholds(self, probabilities: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """The operating point of each row of class probabilities (n, labels): its top distress label's."""
        by_label = np.array([self.label_thresholds.get(label, self.threshold) for label in DISTRESS_ORDER])
        chosen: npt.NDArray[np.float64] = by_label[self.top_distress_columns(probabilities)]
        return chosen


def _second_stage(payload: dict[str, Any] | None, source: str, encoder: str | Path | None) -> EncoderStage | None:
    """The checkpoint's second stage over the configured Whisper model, refused unless it is the model the
    stage was trained with: another encoder's features mean nothing to the head."""
    if payload is None:
        return None
    try:
        model = resolve_model(encoder)
    except ModelNotAvailable as error:
        raise ClassifierError(f"{source} needs a Whisper encoder for its second stage: {error}") from error
    actual = sha256_of(model.path / "model.bin")
    if actual != payload["encoder_sha256"]:
        raise ClassifierError(
            f"{source}'s second stage was trained on the Whisper encoder with model.bin sha256 "
            f"{payload['encoder_sha256']}, but {model.path} holds {actual}; configure scorer.encoder with the "
            "model it was trained on (the default is the bundled tiny.en)"
        )
    return EncoderStage.from_payload(payload, WhisperEncoder(model.path))
