"""When a chunk may be published, and the wall-clock time its first sample was captured.

Three ways to tell time, one per kind of capture:

* ``PACED`` (``--realtime``): an anchor (monotonic and wall time, sample position) is taken when audio first
  arrives, and again after a reconnect. A chunk is due when its last sample would have been heard,
  ``anchor + end / 16000`` on the monotonic clock; ``captured_at = anchor_wall + offset / 16000``. Both are
  computed from absolute sample positions, never by adding up sleeps, so no drift accumulates.
* ``ARRIVAL`` (live sources: network, microphone, stdin): the newest audio arrived *now*, so a chunk's first
  sample was captured ``(received - offset) / 16000`` seconds before the last arrival. Published at once.
* ``PUBLISH`` (files read as fast as possible): the audio has no capture time of its own, so ``captured_at`` is
  the time the chunk is published.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from actors.capture.chunker import Chunk


class ClockMode(enum.Enum):
    PACED = "paced"
    ARRIVAL = "arrival"
    PUBLISH = "publish"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ChunkClock:
    """Capture timestamps and publication times of one stream's chunks (see the module docstring)."""

    def __init__(
        self,
        mode: ClockMode,
        *,
        sample_rate: int,
        stop: threading.Event,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.mode = mode
        self.sample_rate = sample_rate
        self._stop = stop
        self._monotonic = monotonic
        self._wall = wall
        self._anchor_monotonic = 0.0
        self._anchor_wall = datetime.min.replace(tzinfo=UTC)
        self._anchor_sample = 0
        self._anchored = False
        self._arrival_wall = self._anchor_wall
        self._arrival_sample = 0

    def audio_arrived(self, block_start: int, received: int, *, discontinuity: bool) -> None:
        """Audio covering normalised samples ``[block_start, received)`` arrived just now."""
        if self.mode is ClockMode.PACED and (not self._anchored or discontinuity):
            self._anchor_monotonic = self._monotonic()
            self._anchor_wall = self._wall()
            self._anchor_sample = block_start
            self._anchored = True
        elif self.mode is ClockMode.ARRIVAL:
            self._arrival_wall = self._wall()
            self._arrival_sample = received

    def captured_at(self, chunk: Chunk) -> datetime:
        if self.mode is ClockMode.PACED:
            return self._anchor_wall + self._seconds(chunk.sample_offset - self._anchor_sample)
        if self.mode is ClockMode.ARRIVAL:
            return self._arrival_wall - self._seconds(self._arrival_sample - chunk.sample_offset)
        return self._wall()

    def due_at(self, chunk: Chunk) -> float | None:
        """Monotonic time the chunk may be published at (PACED), or None: at once."""
        if self.mode is not ClockMode.PACED:
            return None
        return self._anchor_monotonic + (chunk.end - self._anchor_sample) / self.sample_rate

    def wait_until_due(self, chunk: Chunk) -> bool:
        """Sleep until the chunk is due; False when the capture was stopped meanwhile."""
        due = self.due_at(chunk)
        if due is not None:
            delay = due - self._monotonic()
            if delay > 0:
                return not self._stop.wait(delay)
        return not self._stop.is_set()

    def _seconds(self, samples: int) -> timedelta:
        return timedelta(microseconds=round(samples * 1_000_000 / self.sample_rate))
