"""Chunk timing: paced publication without drift, arrival-based and publish-time capture timestamps."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np

from actors.capture.chunker import Chunk
from actors.capture.pacing import ChunkClock, ClockMode

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


class SteppedClock:
    """A clock the test moves by hand, for both the monotonic and the wall reading."""

    def __init__(self) -> None:
        self.seconds = 100.0

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds - 100.0)


def chunk(offset: int, length: int = 16000) -> Chunk:
    return Chunk(
        sequence=offset // 16000,
        sample_offset=offset,
        samples=np.zeros(length, dtype=np.float32),
        nonfinite_samples=0,
        clipped_samples=0,
        is_last=False,
    )


def clock_for(mode: ClockMode, time: SteppedClock, stop: threading.Event | None = None) -> ChunkClock:
    return ChunkClock(mode, sample_rate=16000, stop=stop or threading.Event(), monotonic=time.monotonic, wall=time.wall)


def test_paced_due_times_come_from_sample_positions_so_lateness_does_not_accumulate() -> None:
    time = SteppedClock()
    clock = clock_for(ClockMode.PACED, time)
    clock.audio_arrived(0, 4000, discontinuity=False)
    assert clock.due_at(chunk(0)) == 101.0
    time.seconds = 101.7  # the first chunk went out 0.7 s late ...
    clock.audio_arrived(4000, 40000, discontinuity=False)
    assert clock.due_at(chunk(16000)) == 102.0  # ... and the schedule did not shift
    assert clock.captured_at(chunk(16000)) == T0 + timedelta(seconds=1)
    assert clock.wait_until_due(chunk(0))  # already due: no wait


def test_paced_clock_reanchors_after_a_discontinuity() -> None:
    time = SteppedClock()
    clock = clock_for(ClockMode.PACED, time)
    clock.audio_arrived(0, 16000, discontinuity=False)
    time.seconds = 130.0  # a reconnect took 29 s
    clock.audio_arrived(32000, 40000, discontinuity=True)
    assert clock.captured_at(chunk(32000)) == T0 + timedelta(seconds=30)
    assert clock.due_at(chunk(32000)) == 131.0


def test_a_stopped_paced_clock_stops_waiting() -> None:
    stop = threading.Event()
    stop.set()
    clock = clock_for(ClockMode.PACED, SteppedClock(), stop)
    clock.audio_arrived(0, 100, discontinuity=False)
    assert not clock.wait_until_due(chunk(0))  # due in 1 s, but stopped: returns at once


def test_arrival_clock_dates_chunks_back_from_the_newest_audio() -> None:
    time = SteppedClock()
    clock = clock_for(ClockMode.ARRIVAL, time)
    time.seconds = 110.0
    clock.audio_arrived(16000, 24000, discontinuity=False)  # samples up to 1.5 s have arrived at T0 + 10 s
    assert clock.captured_at(chunk(0)) == T0 + timedelta(seconds=8.5)
    assert clock.captured_at(chunk(16000)) == T0 + timedelta(seconds=9.5)
    assert clock.due_at(chunk(0)) is None


def test_publish_clock_stamps_the_publish_time() -> None:
    time = SteppedClock()
    clock = clock_for(ClockMode.PUBLISH, time)
    clock.audio_arrived(0, 48000, discontinuity=False)
    time.seconds = 105.0
    assert clock.captured_at(chunk(32000)) == T0 + timedelta(seconds=5)
    assert clock.due_at(chunk(32000)) is None and clock.wait_until_due(chunk(32000))
