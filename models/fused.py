"""distress-fused: the YAMNet head and the CNN scoring each window together, fused where measurement showed it adds.

Each model alone misses what the other hears: the head (``models.yamnet_head``) knows real-world sound from
AudioSet, gunshots and alarms; the CNN (``models.classifier``) answers short screams and hears the crying and
glass of our recorded sources. On validation (docs/yamnet.md, "Fusion with the CNN") a weighted mean of their
distress log-odds caught more events than either under a rule that opens no incident in six everyday hours, and
opened fewer incidents in six other hours. The class scores shown to operators are the head's (it knows all
nine labels).

A fused checkpoint is a small JSON file naming both members (paths beside it, with their sha256), the weight of
each member's log-odds, and the operating point and decision rule chosen for the fused score. The members keep
their own checkpoints and ``.sha256`` files; the feature stage computes both front ends side by side, so a patch
holds the head's 64 bands, then the CNN's.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.classifier import (
    ASSETS_DIR,
    ClassifierError,
    ClassScores,
    DistressClassifier,
    sha256_of,
    verify_digest,
    write_digest,
)
from models.fusion import Accumulation
from models.yamnet import Yamnet
from models.yamnet_head import HeadCheckpoint, YamnetDistressModel

MODEL_ID = "distress-fused"
MODEL_VERSION = "1.0.0"
FUSED_FORMAT = 1
MEMBERS = ("yamnet", "cnn")  # in the order of their bands in a patch
BANDS = 64  # each member's log-mel bands


def default_fused_path() -> Path:
    """The fused checkpoint shipped with the package."""
    return ASSETS_DIR / f"{MODEL_ID}-{MODEL_VERSION}.json"


@dataclass(frozen=True)
class FusedCheckpoint:
    """What a fused checkpoint file says: its members, their weights and the decision chosen for the fused score."""

    version: str
    member_paths: Mapping[str, Path]
    weights: Mapping[str, float]
    threshold: float
    accumulation: Accumulation
    metadata: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path) -> FusedCheckpoint:
        """Read and check ``path``: its own ``.sha256``, the format, and each member's file against its sha256."""
        if not path.is_file():
            raise ClassifierError(f"no fused checkpoint at {path}")
        verify_digest(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document["format"] != FUSED_FORMAT or document["model_id"] != MODEL_ID:
                raise ClassifierError(f"{path} is not a {MODEL_ID} checkpoint of format {FUSED_FORMAT}")
            members = {name: document["members"][name] for name in MEMBERS}
            weights = {name: float(member["weight"]) for name, member in members.items()}
            accumulation = Accumulation(**document["accumulation"])
            threshold = float(document["threshold"])
            paths = {name: (path.parent / str(member["path"])).resolve() for name, member in members.items()}
            expected = {name: str(member["sha256"]) for name, member in members.items()}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ClassifierError(f"cannot read fused checkpoint {path}: {error!r}") from error
        if not 0.0 < threshold < 1.0 or any(weight <= 0.0 for weight in weights.values()):
            raise ClassifierError(f"{path}: threshold must be in (0, 1) and member weights positive")
        for name, member_path in paths.items():
            if not member_path.is_file():
                raise ClassifierError(f"{path}: its {name} member {member_path} is missing")
            if (actual := sha256_of(member_path)) != expected[name]:
                raise ClassifierError(
                    f"{path}: its {name} member {member_path} has sha256 {actual}, expected {expected[name]}"
                )
        return cls(str(document["version"]), paths, weights, threshold, accumulation, document.get("metadata", {}))

    def save(self, path: Path) -> None:
        """Write the file and its ``.sha256``; members are named relative to its folder, with their sha256."""
        members = {
            name: {
                "path": os.path.relpath(self.member_paths[name].resolve(), path.parent.resolve()),
                "sha256": sha256_of(self.member_paths[name]),
                "weight": self.weights[name],
            }
            for name in MEMBERS
        }
        document = {
            "format": FUSED_FORMAT,
            "model_id": MODEL_ID,
            "version": self.version,
            "members": members,
            "threshold": self.threshold,
            "accumulation": asdict(self.accumulation),
            "metadata": dict(self.metadata),
        }
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        write_digest(path)


class FusedDistressModel:
    """Both members on each patch; the distress probability is the weighted mean of their log-odds."""

    label_thresholds: Mapping[str, float] = {}  # one point for the fused score

    def __init__(self, checkpoint: FusedCheckpoint, head: YamnetDistressModel, cnn: DistressClassifier) -> None:
        self.checkpoint = checkpoint
        self.head = head
        self.cnn = cnn

    @classmethod
    def load(cls, path: Path, encoder: str | None = None, yamnet_path: Path | None = None) -> FusedDistressModel:
        checkpoint = FusedCheckpoint.load(path)
        head = YamnetDistressModel(Yamnet.load(yamnet_path), HeadCheckpoint.load(checkpoint.member_paths["yamnet"]))
        return cls(checkpoint, head, DistressClassifier.load(checkpoint.member_paths["cnn"], encoder))

    @property
    def model_id(self) -> str:
        return MODEL_ID

    @property
    def model_version(self) -> str:
        return self.checkpoint.version

    @property
    def threshold(self) -> float:
        return self.checkpoint.threshold

    @property
    def accumulation(self) -> Accumulation | None:
        return self.checkpoint.accumulation

    def predict(self, log_mel_patch: npt.NDArray[np.floating]) -> ClassScores:
        return self.predict_batch(log_mel_patch[np.newaxis])[0]

    def predict_batch(self, log_mel_patches: npt.NDArray[np.floating]) -> list[ClassScores]:
        """Scores of patches (n, frames, 128): the head's bands first, then the CNN's."""
        if log_mel_patches.ndim != 3 or log_mel_patches.shape[2] != BANDS * len(MEMBERS):
            raise ClassifierError(
                f"a fused patch holds {BANDS} bands of each of {MEMBERS}, got shape {log_mel_patches.shape}"
            )
        heads = self.head.predict_batch(np.ascontiguousarray(log_mel_patches[:, :, :BANDS]))
        cnns = self.cnn.predict_batch(np.ascontiguousarray(log_mel_patches[:, :, BANDS:]))
        return [
            ClassScores(
                labels=head.labels,
                probabilities=head.probabilities,
                distress_probability=mixed_probability(
                    head.distress_probability, cnn.distress_probability, self.checkpoint.weights
                ),
                model_id=self.model_id,
                model_version=self.model_version,
            )
            for head, cnn in zip(heads, cnns, strict=True)
        ]


def mixed_probability(head: float, cnn: float, weights: Mapping[str, float]) -> float:
    """The members' distress probabilities as one: the ``weights``-weighted mean of their log-odds."""
    total = weights["yamnet"] * _logit(head) + weights["cnn"] * _logit(cnn)
    return 1.0 / (1.0 + math.exp(-total / sum(weights.values())))


def _logit(probability: float) -> float:
    clipped = min(1.0 - 1e-7, max(1e-7, probability))
    return math.log(clipped / (1.0 - clipped))
