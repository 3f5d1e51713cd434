"""Headerless PCM from a byte stream (stdin) as a source, in FFmpeg's sample format names."""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import BinaryIO, Final

import numpy as np

from actors.capture.blocks import AudioBlock, Float32Array, SourceError, integer_to_float

log = logging.getLogger(__name__)

RAW_PCM_READ_BYTES: Final = 16384
# How often a raw PCM read waiting on an idle pipe looks at the stop flag: a stop is seen this soon even when the
# writer keeps the pipe open without writing (a supervisor that signals only us).
RAW_PCM_STOP_POLL_S: Final = 0.1

RAW_SAMPLE_FORMATS: Final[dict[str, str]] = {"s16le": "<i2", "s32le": "<i4", "f32le": "<f4", "f64le": "<f8"}


@dataclass(frozen=True, kw_only=True)
class RawPcmFormat:
    """Layout of headerless PCM: rate, interleaved channels and sample format (FFmpeg's names)."""

    sample_rate: int = 16000
    channels: int = 1
    sample_format: str = "s16le"

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"raw PCM sample rate must be positive, got {self.sample_rate}")
        if not 1 <= self.channels <= 32:
            raise ValueError(f"raw PCM channels must be between 1 and 32, got {self.channels}")
        if self.sample_format not in RAW_SAMPLE_FORMATS:
            raise ValueError(
                f"unknown raw PCM sample format {self.sample_format!r}; use one of {', '.join(RAW_SAMPLE_FORMATS)}"
            )

    @property
    def dtype(self) -> np.dtype[np.generic]:
        return np.dtype(RAW_SAMPLE_FORMATS[self.sample_format])

    @property
    def frame_bytes(self) -> int:
        return self.dtype.itemsize * self.channels


@dataclass
class RawPcmSource:
    """Headerless PCM from a byte stream (stdin): blocks are yielded as soon as bytes arrive."""

    stream: BinaryIO
    pcm_format: RawPcmFormat = field(default_factory=RawPcmFormat)
    description: str = "stdin"
    kind: str = "stdin"
    live: bool = True
    reconnects: int = 0
    warnings: list[str] = field(default_factory=list)
    declared_seconds: float | None = None

    def blocks(self, stop: threading.Event) -> Generator[AudioBlock, None, None]:
        frame_bytes = self.pcm_format.frame_bytes
        leftover = b""
        total_frames = 0
        descriptor = self._descriptor()
        while not stop.is_set():
            data = self._read(descriptor, stop)
            if not data:
                break
            data = leftover + data
            whole = len(data) // frame_bytes * frame_bytes
            leftover = data[whole:]
            if whole:
                total_frames += whole // frame_bytes
                yield AudioBlock(self._to_float(data[:whole]), self.pcm_format.sample_rate)
        if leftover:
            log.warning(
                "raw PCM ended inside a frame; partial frame dropped",
                extra={"source": self.description, "dropped_bytes": len(leftover)},
            )
            self.warnings.append(f"the input ended inside a PCM frame: its last {len(leftover)} byte(s) were dropped")
        if total_frames == 0 and not stop.is_set():
            raise SourceError(self.description, "zero-length audio: no complete PCM frame was read")

    def _descriptor(self) -> int | None:
        """The stream's file descriptor (a pipe, stdin), or None for in-memory streams, which never block."""
        try:
            return self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.BytesIO raises io.UnsupportedOperation
            return None

    def _read(self, descriptor: int | None, stop: threading.Event) -> bytes:
        """The bytes available now (waiting for some), or b"" at the end of the stream or once stopped.

        A stream with a file descriptor is read straight from the descriptor after ``select`` says it is readable,
        so the wait can look at ``stop``; nothing reads it through its Python buffer first.
        """
        try:
            if descriptor is None:
                read1 = getattr(self.stream, "read1", None)  # what is available instead of waiting to fill
                return bytes(read1(RAW_PCM_READ_BYTES) if read1 is not None else self.stream.read(RAW_PCM_READ_BYTES))
            while not select.select([descriptor], [], [], RAW_PCM_STOP_POLL_S)[0]:
                if stop.is_set():
                    return b""
            return os.read(descriptor, RAW_PCM_READ_BYTES)
        except OSError as error:
            raise SourceError(self.description, f"read failed: {error}") from error

    def _to_float(self, data: bytes) -> Float32Array:
        values = np.frombuffer(data, dtype=self.pcm_format.dtype).reshape(-1, self.pcm_format.channels)
        if np.issubdtype(values.dtype, np.integer):
            return integer_to_float(values, unsigned=False)
        return values.astype(np.float32)
