"""A recording cut off in transit: its WAV header declares 120 s, only the first 31 s of samples follow it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

RATE = 16_000
DECLARED_S = 120
PRESENT_S = 31


def quiet_noise(seconds: float) -> np.ndarray:
    return (0.01 * np.random.default_rng(11).standard_normal(int(seconds * RATE))).astype(np.float32)


def cut_off_wav(path: Path) -> Path:
    """``path``: a 16 kHz PCM16 WAV whose header says ``DECLARED_S`` seconds, cut after ``PRESENT_S`` seconds."""
    soundfile.write(path, quiet_noise(DECLARED_S), RATE, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"data") + 8 + PRESENT_S * RATE * 2])
    return path


def whole_wav(path: Path, seconds: float) -> Path:
    soundfile.write(path, quiet_noise(seconds), RATE, subtype="PCM_16")
    return path
