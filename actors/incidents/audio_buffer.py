"""The recent audio of one stream, from which the incident engine cuts evidence clips.

Capture times are kept for every chunk (an incident's onset time comes from them); PCM only for streams that may
store audio.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.audio import SAMPLE_RATE
from events.catalogue import AudioChunkCaptured


@dataclass(frozen=True)
class _Chunk:
    start: int
    samples: int
    captured_at: datetime
    pcm16: bytes | None  # None in privacy mode: the timeline is kept, the audio is not

    @property
    def end(self) -> int:
        return self.start + self.samples


class AudioBuffer:
    """The recent chunks of one stream: capture times always, PCM only when the stream may store audio."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self.sample_rate = SAMPLE_RATE
        self.chunks: deque[_Chunk] = deque()

    @property
    def end(self) -> int:
        return self.chunks[-1].end if self.chunks else 0

    def add(self, chunk: AudioChunkCaptured, *, keep_audio: bool, hold_from: int | None) -> None:
        if self.chunks and chunk.sample_offset <= self.chunks[-1].start:
            if chunk.captured_at <= self.chunks[-1].captured_at:
                return  # re-delivered
            self.chunks.clear()  # captured later at a lower offset: the capture restarted
        self.sample_rate = chunk.sample_rate
        self.chunks.append(
            _Chunk(chunk.sample_offset, len(chunk.pcm16) // 2, chunk.captured_at, chunk.pcm16 if keep_audio else None)
        )
        horizon = self.end - int(self.keep_s * self.sample_rate)
        if hold_from is not None:
            horizon = min(horizon, hold_from)
        while self.chunks and self.chunks[0].end <= horizon:
            self.chunks.popleft()

    def captured_at(self, sample: int) -> datetime | None:
        """When a sample was captured: from its chunk, or counted from the nearest chunk of the same capture run
        (a score may arrive before its audio: they travel on different topics). None before any audio."""
        nearest = min(self.chunks, key=lambda chunk: abs(chunk.start - sample), default=None)
        if nearest is None:
            return None
        return nearest.captured_at + timedelta(seconds=(sample - nearest.start) / self.sample_rate)

    def chunk_samples(self, sample: int) -> int:
        for chunk in self.chunks:
            if chunk.start == sample:
                return chunk.samples
        return 0

    def pcm16(self, start: int, end: int) -> bytes:
        """The stored audio within [start, end), contiguous from the first stored chunk overlapping it."""
        pieces: list[bytes] = []
        for chunk in self.chunks:
            if chunk.pcm16 is None or chunk.end <= start or chunk.start >= end:
                continue
            low, high = max(start, chunk.start) - chunk.start, min(end, chunk.end) - chunk.start
            pieces.append(chunk.pcm16[2 * low : 2 * high])
        return b"".join(pieces)
