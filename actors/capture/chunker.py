"""Fixed windows of normalised audio with a per-stream sequence number and exact sample offsets.

Every window holds ``chunk_samples`` samples except the stream's last, which holds the remainder (1 to
``chunk_samples`` samples, never zero-padded) and is flagged ``is_last``; a window is only released once a
sample after it has arrived, so the last one can always be flagged. Offsets are therefore contiguous and the sum
of all chunk lengths is exactly the number of normalised samples.

PCM16 wire format: little-endian int16 of ``round(clip(x, -1, 1) * 32767)``; decoding divides by 32767.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from actors.capture.normalise import NormalisedAudio

Float32Array = npt.NDArray[np.float32]
Int64Array = npt.NDArray[np.int64]

PCM16_SCALE = 32767
# A sample is counted as clipped when it reaches 16-bit full scale (32767/32768) or beyond: the source saturated,
# or resampling overshot and PCM16 encoding will clip it.
CLIP_LEVEL = 32767 / 32768


def encode_pcm16(samples: Float32Array) -> bytes:
    """Little-endian PCM16 of float samples, clipped to [-1, 1]."""
    scaled = np.round(np.clip(samples, -1.0, 1.0) * PCM16_SCALE)
    return scaled.astype("<i2").tobytes()


def decode_pcm16(payload: bytes) -> Float32Array:
    """Float32 samples of a PCM16 payload (the inverse of ``encode_pcm16`` up to quantisation)."""
    if len(payload) % 2:
        raise ValueError(f"PCM16 payload has an odd number of bytes ({len(payload)})")
    return (np.frombuffer(payload, dtype="<i2").astype(np.float32) / np.float32(PCM16_SCALE)).astype(np.float32)


def count_clipped(samples: Float32Array) -> int:
    return int(np.count_nonzero(np.abs(samples) >= CLIP_LEVEL))


@dataclass(frozen=True)
class Chunk:
    """One window of a stream: ``samples`` start at stream sample ``sample_offset``."""

    sequence: int
    sample_offset: int
    samples: Float32Array
    nonfinite_samples: int  # source frames inside this window that held NaN or infinity (now silence)
    clipped_samples: int
    is_last: bool

    @property
    def end(self) -> int:
        return self.sample_offset + int(self.samples.shape[0])


class Chunker:
    """Cuts a continuous normalised signal into ``Chunk``s."""

    def __init__(self, chunk_samples: int) -> None:
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples must be at least 1, got {chunk_samples}")
        self.chunk_samples = chunk_samples
        self.received = 0  # samples pushed so far (the end of the buffered signal)
        self.emitted_samples = 0
        self.emitted_chunks = 0
        self._pending: list[Float32Array] = []
        self._pending_samples = 0
        self._nonfinite: list[Int64Array] = []

    def push(self, audio: NormalisedAudio) -> list[Chunk]:
        """The full windows that are complete and provably not the last."""
        if audio.start != self.received:
            raise ValueError(f"audio starts at sample {audio.start}, expected {self.received}")
        if audio.samples.size:
            self._pending.append(audio.samples)
            self._pending_samples += int(audio.samples.shape[0])
            self.received = audio.end
        if audio.nonfinite_positions.size:
            self._nonfinite.append(audio.nonfinite_positions)
        chunks = []
        while self._pending_samples > self.chunk_samples:
            chunks.append(self._take(self.chunk_samples, is_last=False))
        return chunks

    def finish(self) -> Chunk | None:
        """The remaining samples as the last chunk, or None when the stream produced no samples at all."""
        if self._pending_samples == 0:
            return None
        return self._take(self._pending_samples, is_last=True)

    def _take(self, length: int, *, is_last: bool) -> Chunk:
        buffered = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        samples, rest = buffered[:length], buffered[length:]
        self._pending = [rest] if rest.size else []
        self._pending_samples = int(rest.shape[0])
        start = self.emitted_samples
        chunk = Chunk(
            sequence=self.emitted_chunks,
            sample_offset=start,
            samples=np.ascontiguousarray(samples),
            nonfinite_samples=self._take_nonfinite(start + length, is_last=is_last),
            clipped_samples=count_clipped(samples),
            is_last=is_last,
        )
        self.emitted_samples += length
        self.emitted_chunks += 1
        return chunk

    def _take_nonfinite(self, end: int, *, is_last: bool) -> int:
        """Non-finite frames before ``end`` (all of them for the last chunk) leave the pending set."""
        if not self._nonfinite:
            return 0
        positions = np.concatenate(self._nonfinite)
        inside = np.ones(positions.shape, dtype=bool) if is_last else positions < end
        remaining = positions[~inside]
        self._nonfinite = [remaining] if remaining.size else []
        return int(np.count_nonzero(inside))
