"""What every audio source yields and raises: ``AudioBlock``s of float32 frames, and ``SourceError``.

A source yields blocks at its own rate and channel count; normalising to 16 kHz mono is the next stage's job.
Every failure is a ``SourceError`` that names the (redacted) source and the reason, so a capture actor can turn it
into a StreamFailed event and the CLI into a readable message.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from config.redaction import redact_text

Float32Array = npt.NDArray[np.float32]


class SourceError(Exception):
    """A source could not be opened or read; ``source`` is redacted and ``reason`` says what went wrong."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = redact_text(reason)
        super().__init__(f"{source}: {self.reason}")


@dataclass(frozen=True)
class AudioBlock:
    """Consecutive source frames: ``samples`` is (frames, channels) float32 at ``sample_rate``.

    ``discontinuity`` marks the first block after a reconnect: it does not continue the previous block, so
    resampler state must not blend the two.
    """

    samples: Float32Array
    sample_rate: int
    discontinuity: bool = False

    def __post_init__(self) -> None:
        if self.samples.dtype != np.float32 or self.samples.ndim != 2:
            raise ValueError(f"AudioBlock.samples must be 2-D float32, got {self.samples.dtype} {self.samples.shape}")
        if self.samples.shape[0] == 0 or self.samples.shape[1] == 0:
            raise ValueError(f"AudioBlock.samples must hold at least one frame and channel, got {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"AudioBlock.sample_rate must be positive, got {self.sample_rate}")

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])


class AudioSource(Protocol):
    """Where a stream's audio comes from. ``blocks`` raises ``SourceError``; it returns at the end of the audio."""

    kind: str  # "file", "url", "microphone" or "stdin", as recorded in StreamStarted
    description: str  # redacted: safe for events and logs
    live: bool  # audio arrives in real time (capture timestamps come from arrival, not from the publish time)
    reconnects: int  # reconnections so far (always 0 for sources that never reconnect)
    warnings: list[str]  # what of the input was never heard (cut off, undecodable); empty when all of it was
    declared_seconds: float | None  # how long the input says it is (a file's container), when it says

    def blocks(self, stop: threading.Event) -> Generator[AudioBlock, None, None]:
        """The audio, block by block, until its end or until ``stop`` is set; closing it releases the source."""
        ...


def integer_to_float(array: npt.NDArray[Any], *, unsigned: bool) -> Float32Array:
    """Integer PCM to float32 in [-1, 1): signed full scale is 2**(bits-1), unsigned PCM is offset by half."""
    bits = array.dtype.itemsize * 8
    scale = float(2 ** (bits - 1))
    values = array.astype(np.float64)
    if unsigned:
        values -= scale
    return (values / scale).astype(np.float32)
