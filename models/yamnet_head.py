"""The distress head on YAMNet: a small MLP over YAMNet's embedding and class scores of one 0.96 s patch.

YAMNet (``models.yamnet``) knows real-world sound from AudioSet but not our question; the head, trained on our
dataset (``models.training.head``), turns its 1024-d embedding and 521 class scores into our labels (with
``gunshot`` and ``alarm``) and one distress probability. The head is plain numpy (two matrix products), so
inference needs neither torch nor the training extra, and a checkpoint is one ``.npz`` with a JSON header that
records the labels, calibration, operating points, the dataset and YAMNet's file hashes.

Calibration is fitted on the validation split: a temperature for the class softmax and Platt scaling of the
distress logit, as for the CNN (``models.classifier``), so ``ClassScores`` means the same whichever model made it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.special

from domain.labels import SOUND_LABELS
from models.classifier import (
    ASSETS_DIR,
    Calibration,
    ClassifierError,
    ClassScores,
    verify_digest,
    write_digest,
)
from models.fusion import Accumulation
from models.yamnet import EMBEDDING_SIZE, N_CLASSES, SHA256, Yamnet

MODEL_ID = "distress-yamnet"
MODEL_VERSION = "2.2.0"
HEAD_FORMAT = 1
Float32Array = npt.NDArray[np.float32]
FEATURE_SIZE = EMBEDDING_SIZE + N_CLASSES


def default_head_path() -> Path:
    """The head shipped with the package."""
    return ASSETS_DIR / f"{MODEL_ID}-{MODEL_VERSION}.npz"


def head_inputs(scores: npt.NDArray[np.floating], embeddings: npt.NDArray[np.floating]) -> Float32Array:
    """What the head reads: the embedding beside the class scores as log-odds (their probabilities bunch near 0)."""
    clipped = np.clip(np.asarray(scores, dtype=np.float64), 1e-6, 1 - 1e-6)
    inputs: Float32Array = np.concatenate([embeddings, scipy.special.logit(clipped)], axis=1).astype(np.float32)
    return inputs


@dataclass(frozen=True)
class HeadWeights:
    """Standardisation of the inputs, one hidden ReLU layer, class logits and one distress logit."""

    input_mean: Float32Array
    input_std: Float32Array
    hidden_weight: Float32Array  # (FEATURE_SIZE, hidden)
    hidden_bias: Float32Array
    class_weight: Float32Array  # (hidden, labels)
    class_bias: Float32Array
    distress_weight: Float32Array  # (hidden,)
    distress_bias: Float32Array  # (1,)

    def __post_init__(self) -> None:
        hidden = self.hidden_weight.shape[1] if self.hidden_weight.ndim == 2 else -1
        shapes = {
            "input_mean": (self.input_mean.shape, (FEATURE_SIZE,)),
            "input_std": (self.input_std.shape, (FEATURE_SIZE,)),
            "hidden_weight": (self.hidden_weight.shape, (FEATURE_SIZE, hidden)),
            "hidden_bias": (self.hidden_bias.shape, (hidden,)),
            "class_weight": (self.class_weight.shape[:1], (hidden,)),
            "class_bias": (self.class_bias.shape, self.class_weight.shape[1:]),
            "distress_weight": (self.distress_weight.shape, (hidden,)),
            "distress_bias": (self.distress_bias.shape, (1,)),
        }
        for name, (shape, expected) in shapes.items():
            if shape != expected:
                raise ClassifierError(f"head weights: {name} has shape {shape}, expected {expected}")

    def logits(self, inputs: Float32Array) -> tuple[Float32Array, Float32Array]:
        """(class logits (n, labels), distress logits (n,)) of head inputs (n, FEATURE_SIZE)."""
        hidden = np.maximum((inputs - self.input_mean) / self.input_std @ self.hidden_weight + self.hidden_bias, 0)
        classes: Float32Array = (hidden @ self.class_weight + self.class_bias).astype(np.float32)
        distress: Float32Array = (hidden @ self.distress_weight + self.distress_bias[0]).astype(np.float32)
        return classes, distress


@dataclass(frozen=True)
class HeadCheckpoint:
    """Everything a trained head is: weights, labels, calibration, operating points and where it came from."""

    weights: HeadWeights
    labels: tuple[str, ...]
    calibration: Calibration
    threshold: float
    version: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    accumulation: Accumulation | None = None  # how its windows add up, chosen on validation with the threshold

    def __post_init__(self) -> None:
        if unknown := [label for label in self.labels if label not in SOUND_LABELS]:
            raise ClassifierError(f"head labels {unknown} are not sound labels {SOUND_LABELS}")
        if len(self.labels) != self.weights.class_bias.shape[0]:
            raise ClassifierError(f"{len(self.labels)} labels for {self.weights.class_bias.shape[0]} class outputs")
        if not 0.0 < self.threshold < 1.0:
            raise ClassifierError(f"threshold must be in (0, 1), got {self.threshold}")

    def save(self, path: Path) -> None:
        header = {
            "format": HEAD_FORMAT,
            "model_id": MODEL_ID,
            "version": self.version,
            "labels": list(self.labels),
            "calibration": asdict(self.calibration),
            "threshold": self.threshold,
            "accumulation": asdict(self.accumulation) if self.accumulation else None,
            "yamnet_sha256": SHA256,
            "metadata": dict(self.metadata),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez(handle, header=np.array(json.dumps(header, sort_keys=True)), **asdict(self.weights))
        write_digest(path)

    @classmethod
    def load(cls, path: Path) -> HeadCheckpoint:
        """The head at ``path``, checked against its ``.sha256`` file where it has one."""
        if not path.is_file():
            raise ClassifierError(f"no head checkpoint at {path}; train one with `distress models train-head`")
        verify_digest(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                weights = HeadWeights(
                    **{name: np.asarray(data[name], np.float32) for name in HeadWeights.__annotations__}
                )
        except (OSError, ValueError, KeyError) as error:
            raise ClassifierError(f"{path} is not a distress-yamnet head checkpoint: {error}") from error
        if header.get("format") != HEAD_FORMAT or header.get("model_id") != MODEL_ID:
            raise ClassifierError(f"{path}: head format {header.get('format')} of {header.get('model_id')} is not ours")
        if header["yamnet_sha256"] != SHA256:
            raise ClassifierError(f"{path} was trained on other YAMNet files ({header['yamnet_sha256']})")
        return cls(
            weights,
            tuple(header["labels"]),
            Calibration(**header["calibration"]),
            float(header["threshold"]),
            str(header["version"]),
            header["metadata"],
            Accumulation(**header["accumulation"]) if header.get("accumulation") else None,
        )


class YamnetDistressModel:
    """YAMNet plus a trained head: log-mel patches in YAMNet's front end -> ``ClassScores`` per patch."""

    def __init__(self, yamnet: Yamnet, checkpoint: HeadCheckpoint) -> None:
        self.yamnet = yamnet
        self.checkpoint = checkpoint
        self.labels = checkpoint.labels
        self.model_id = MODEL_ID
        self.model_version = checkpoint.version
        self.threshold = checkpoint.threshold
        self.label_thresholds: Mapping[str, float] = {}  # one operating point for every label
        self.accumulation = checkpoint.accumulation

    def scores_of(
        self, scores: npt.NDArray[np.floating], embeddings: npt.NDArray[np.floating]
    ) -> tuple[Float32Array, Float32Array]:
        """(calibrated class probabilities (n, labels), calibrated distress probabilities (n,)) from YAMNet's
        outputs; training and evaluation call this on cached YAMNet outputs."""
        classes, distress = self.checkpoint.weights.logits(head_inputs(scores, embeddings))
        calibration = self.checkpoint.calibration
        probabilities: Float32Array = scipy.special.softmax(classes / calibration.temperature, axis=1).astype(
            np.float32
        )
        calibrated: Float32Array = scipy.special.expit(
            calibration.platt_scale * distress + calibration.platt_bias
        ).astype(np.float32)
        return probabilities, calibrated

    def predict_batch(self, log_mel_patches: npt.NDArray[np.floating]) -> list[ClassScores]:
        scores, embeddings = self.yamnet.run(log_mel_patches)
        probabilities, distress = self.scores_of(scores, embeddings)
        return [
            ClassScores(self.labels, tuple(float(p) for p in row), float(d), MODEL_ID, self.checkpoint.version)
            for row, d in zip(probabilities, distress, strict=True)
        ]

    def predict(self, log_mel_patch: npt.NDArray[np.floating]) -> ClassScores:
        return self.predict_batch(np.asarray(log_mel_patch)[np.newaxis])[0]
