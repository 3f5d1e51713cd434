"""The classifier's second stage: Whisper's encoder read as an audio-event feature extractor (Whisper-AT).

Gong et al. (2023) showed that Whisper's encoder representations are strong, noise-robust audio-event features.
The encoder of the tiny.en model we already ship for ASR reads the same ~1 s patch the CNN scores:

* our 64-band natural-log mel is mapped onto Whisper's 80-band log10 mel by a linear map fitted on training
  audio (``MelBridge``), so the scorer keeps consuming features events and never needs the audio again;
* the encoder's output frames are pooled (mean, max and standard deviation over time) and a small head gives
  class logits and one distress logit.

It costs about 20 times the CNN per patch, so it runs only on patches the CNN already finds suspicious (its
calibrated distress probability at or above ``gate``); there the two distress logits are averaged. The encoder
learnt from real speech and sounds rather than from our synthetic set, and on held-out sources it generalises
better than the CNN: that is what the extra cost buys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import numpy.typing as npt
import torch
from faster_whisper.feature_extractor import FeatureExtractor
from torch import nn

from models.features import FeatureConfig

WHISPER_MELS = 80
WHISPER_N_FFT = 400
_LOG10_FLOOR = 1e-10
_DYNAMIC_RANGE = 8.0  # Whisper keeps log10 power within 8 (80 dB) of the input's maximum
_ENCODER_BATCH = 32
_FRAME_GRID = FeatureConfig()

FloatArray = npt.NDArray[np.float32]


def whisper_log_mel(signal: npt.NDArray[np.floating], config: FeatureConfig = _FRAME_GRID) -> FloatArray:
    """(frames, 80) Whisper log10 mel power, before its clamp and scaling, on our frame grid (frame ``i``
    covers samples ``[i*hop, i*hop + 400)``, as ``models.features.log_mel``): the target ``MelBridge`` fits."""
    samples = np.asarray(signal, dtype=np.float32)
    n_frames = config.frames_in(len(samples))
    windows = np.lib.stride_tricks.sliding_window_view(samples, WHISPER_N_FFT)[:: config.hop_length][:n_frames]
    window = np.hanning(WHISPER_N_FFT + 1)[:-1]  # periodic Hann, as Whisper
    power = np.abs(np.fft.rfft(windows * window, axis=1)) ** 2
    filters = FeatureExtractor.get_mel_filters(config.sample_rate, WHISPER_N_FFT, n_mels=WHISPER_MELS)
    mel: FloatArray = np.log10(np.maximum(power @ filters.T, _LOG10_FLOOR)).astype(np.float32)
    return mel


@dataclass(frozen=True)
class MelBridge:
    """Affine map from our log-mel frame to Whisper's log10 mel frame: ``weights`` is (our bands + 1, 80),
    its last row the bias. Ridge-regressed on training audio; it cannot restore what our 125-7500 Hz bands
    leave out, but the head is trained on the bridged input, so training and runtime see the same thing."""

    weights: FloatArray

    @classmethod
    def fit(cls, ours: FloatArray, whisper: FloatArray, ridge: float = 1.0) -> MelBridge:
        """Least squares with an L2 penalty ``ridge`` from (n, our bands) frames to (n, 80) frames."""
        design = np.hstack([ours, np.ones((len(ours), 1), dtype=ours.dtype)]).astype(np.float64)
        gram = design.T @ design + ridge * np.eye(design.shape[1])
        weights = np.linalg.solve(gram, design.T @ whisper.astype(np.float64))
        return cls(weights.astype(np.float32))

    def whisper_input(self, patches: FloatArray) -> FloatArray:
        """(n, 80, frames) encoder input for (n, frames, our bands) patches, clamped and scaled as Whisper."""
        mel = patches @ self.weights[:-1] + self.weights[-1]
        mel = np.maximum(mel, mel.max(axis=(1, 2), keepdims=True) - _DYNAMIC_RANGE)
        return np.ascontiguousarray(((mel + 4.0) / 4.0).transpose(0, 2, 1), dtype=np.float32)


class WhisperEncoder:
    """The encoder of a CTranslate2 Whisper model, pooled into one vector per patch."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        self.model_dir = model_dir
        self._model = ctranslate2.models.Whisper(
            str(model_dir), device="cpu", compute_type="int8", intra_threads=threads, inter_threads=1
        )

    def embed(self, whisper_input: FloatArray) -> FloatArray:
        """(n, 3 * width) mean, max and standard deviation over time of the encoder's output frames."""
        pooled = []
        for start in range(0, len(whisper_input), _ENCODER_BATCH):
            batch = ctranslate2.StorageView.from_array(whisper_input[start : start + _ENCODER_BATCH])
            frames = np.asarray(self._model.encode(batch, to_cpu=True), dtype=np.float32)
            pooled.append(np.concatenate([frames.mean(axis=1), frames.max(axis=1), frames.std(axis=1)], axis=1))
        return np.concatenate(pooled)


class EncoderHead(nn.Module):
    """Pooled encoder vector -> (class logits, distress logit); input standardisation lives in buffers."""

    def __init__(self, in_features: int, hidden: int, dropout: float, n_labels: int) -> None:
        super().__init__()
        self.in_features, self.hidden, self.dropout, self.n_labels = in_features, hidden, dropout, n_labels
        self.feature_mean: torch.Tensor
        self.feature_std: torch.Tensor
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_std", torch.ones(in_features))
        self.body = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout))
        self.class_head = nn.Linear(hidden, n_labels)
        self.distress_head = nn.Linear(hidden, 1)

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body((embeddings - self.feature_mean) / self.feature_std)
        return self.class_head(hidden), self.distress_head(hidden).squeeze(1)


@dataclass(frozen=True)
class Blend:
    """How the two stages' distress logits combine; every number is fitted on the validation split.

    Where the stage runs, the blended logit is ``head_weight * head / head_scale + (1 - head_weight) * cnn /
    cnn_scale`` (the scales put both logits on the same footing); elsewhere it is ``cnn / cnn_scale``. The
    blended logit is then Platt-scaled (``platt_scale``, ``platt_bias``); the class probabilities there are the
    mean of the CNN's and the head's (softmax at ``head_temperature``).
    """

    gate: float
    cnn_scale: float
    head_scale: float
    head_weight: float
    head_temperature: float = 1.0
    platt_scale: float = 1.0
    platt_bias: float = 0.0


@dataclass
class EncoderStage:
    """Bridge, encoder, head and blend: turns the CNN's scores of a batch of patches into the final ones."""

    bridge: MelBridge
    encoder: WhisperEncoder
    head: EncoderHead
    blend: Blend
    encoder_sha256: str  # of the encoder's model.bin: the head only fits the encoder it was trained on

    def head_logits(self, patches: FloatArray) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = torch.from_numpy(self.encoder.embed(self.bridge.whisper_input(patches)))
        with torch.inference_mode():
            logits: tuple[torch.Tensor, torch.Tensor] = self.head(embeddings)
        return logits

    def blended_logits(
        self, patches: FloatArray, cnn_probabilities: FloatArray, cnn_logit: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """(class probabilities, uncalibrated blended distress logit); ``cnn_logit`` is the CNN's calibrated
        distress logit, whose probability the gate compares."""
        blend = self.blend
        blended = (cnn_logit / blend.cnn_scale).astype(np.float32)
        probabilities = cnn_probabilities.copy()
        suspicious = np.flatnonzero(cnn_logit >= np.log(blend.gate / (1.0 - blend.gate)))
        if suspicious.size:
            class_logits, distress_logit = self.head_logits(patches[suspicious])
            head_probabilities = torch.softmax(class_logits / blend.head_temperature, dim=1).numpy()
            blended[suspicious] = (
                blend.head_weight * distress_logit.numpy() / blend.head_scale
                + (1.0 - blend.head_weight) * blended[suspicious]
            )
            probabilities[suspicious] = (probabilities[suspicious] + head_probabilities) / 2.0
        return probabilities, blended

    def refine(
        self, patches: FloatArray, cnn_probabilities: FloatArray, cnn_logit: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Final (class probabilities, calibrated distress probabilities)."""
        probabilities, blended = self.blended_logits(patches, cnn_probabilities, cnn_logit)
        distress = torch.sigmoid(torch.from_numpy(blended * self.blend.platt_scale + self.blend.platt_bias))
        return probabilities, distress.numpy().astype(np.float32)

    def to_payload(self) -> dict[str, Any]:
        head = self.head
        return {
            "bridge": torch.from_numpy(self.bridge.weights.copy()),
            "head": {
                "in_features": head.in_features,
                "hidden": head.hidden,
                "dropout": head.dropout,
                "n_labels": head.n_labels,
                "state_dict": {k: v.detach().clone() for k, v in head.state_dict().items()},
            },
            "blend": {name: float(value) for name, value in vars(self.blend).items()},
            "encoder_sha256": self.encoder_sha256,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], encoder: WhisperEncoder) -> EncoderStage:
        raw = payload["head"]
        head = EncoderHead(int(raw["in_features"]), int(raw["hidden"]), float(raw["dropout"]), int(raw["n_labels"]))
        head.load_state_dict(raw["state_dict"])
        return cls(
            MelBridge(payload["bridge"].numpy()),
            encoder,
            head.eval(),
            Blend(**payload["blend"]),
            str(payload["encoder_sha256"]),
        )
