"""Voice-activity detection with the Silero VAD ONNX model that ships inside faster-whisper.

Why this model: it is already installed (no download, no torch), runs through onnxruntime on one
thread at a few hundred times real time, and its recurrent state can be carried from one audio chunk
to the next, so a live stream gets exactly the probabilities an offline pass over the whole recording
would give.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import onnxruntime

from domain.audio import SAMPLE_RATE as SAMPLE_RATE  # the rate Silero scores at is the pipeline's

WINDOW_SAMPLES: Final = 512
"""Silero scores audio in 32 ms windows of 512 samples at 16 kHz."""
WINDOW_S: Final = WINDOW_SAMPLES / SAMPLE_RATE
_CONTEXT_SAMPLES: Final = 64
"""The v5/v6 models see the last 64 samples of the previous window in front of each window."""
_STATE_SHAPE: Final = (1, 1, 128)

FloatArray = npt.NDArray[np.float32]


def bundled_silero_model_path() -> Path:
    """Locate the Silero ONNX file inside the installed faster-whisper package (newest version wins)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("faster-whisper is not installed, so its bundled Silero VAD model is missing")
    assets = Path(spec.origin).parent / "assets"
    candidates = sorted(assets.glob("silero_*.onnx"))
    if not candidates:
        raise FileNotFoundError(f"no silero_*.onnx model found in {assets}")
    return candidates[-1]


@functools.lru_cache(maxsize=4)
def _inference_session(model_path: Path) -> onnxruntime.InferenceSession:
    """One session per model file and process: sessions are thread-safe and the state lives with the caller."""
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"], sess_options=options)


def check_audio(samples: npt.NDArray[np.generic], what: str) -> FloatArray:
    """Reject anything but finite mono float32 samples, naming the offending input."""
    if samples.dtype != np.float32:
        raise ValueError(f"{what} must be float32 samples at {SAMPLE_RATE} Hz, got dtype {samples.dtype}")
    if samples.ndim != 1:
        raise ValueError(f"{what} must be a 1-D mono array, got shape {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{what} contains NaN or infinite samples")
    return samples.astype(np.float32, copy=False)


class SileroVad:
    """Speech probability per 32 ms window, streaming: state carries over between `process` calls."""

    def __init__(self, model_path: Path | None = None) -> None:
        self.model_path = model_path or bundled_silero_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"Silero VAD model not found: {self.model_path}")
        self._session = _inference_session(self.model_path)
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far (use after a gap in the audio)."""
        self._hidden = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._cell = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros((1, _CONTEXT_SAMPLES), dtype=np.float32)

    def process(self, samples: FloatArray) -> FloatArray:
        """Score whole windows of the stream; `samples` must hold a multiple of 512 samples."""
        samples = check_audio(samples, "VAD input")
        if samples.size % WINDOW_SAMPLES:
            raise ValueError(f"VAD input must hold a multiple of {WINDOW_SAMPLES} samples, got {samples.size}")
        if samples.size == 0:
            return np.zeros(0, dtype=np.float32)
        windows = samples.reshape(-1, WINDOW_SAMPLES)
        contexts = np.concatenate([self._context, windows[:-1, -_CONTEXT_SAMPLES:]], axis=0)
        model_input = np.concatenate([contexts, windows], axis=1)
        probabilities, self._hidden, self._cell = self._session.run(
            None, {"input": model_input, "h": self._hidden, "c": self._cell}
        )
        self._context = windows[-1:, -_CONTEXT_SAMPLES:].copy()
        return np.asarray(probabilities, dtype=np.float32).reshape(-1)

    def probabilities(self, audio: FloatArray) -> FloatArray:
        """Score a whole clip from a fresh state (the last window is zero-padded); the stream state is kept."""
        audio = check_audio(audio, "VAD input")
        saved_state = (self._hidden, self._cell, self._context)
        self.reset()
        try:
            padding = (-audio.size) % WINDOW_SAMPLES
            return self.process(np.pad(audio, (0, padding)))
        finally:
            self._hidden, self._cell, self._context = saved_state
