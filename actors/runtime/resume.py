"""What a restarted actor reads back from the topics so that it carries on as if it had not crashed.

- ``recent_input`` - the input a stage with memory had finished just before its committed offsets.
- ``locate_stream_run`` - how far a stream's capture run got (``StreamRun``), and ``ResumingPublisher``, which
  continues that run from a capture that starts over.

No Ray here: these read Kafka and are tested on a broker alone.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from actors.capture.actor import EventPublisher
from events import Event
from events.catalogue import AudioChunkCaptured, StreamEnded, StreamFailed, StreamStarted
from events.kafka.admin import KafkaProbe, MetricsError
from events.kafka.bus import Bus
from events.kafka.connection import BusError
from events.kafka.consumer import ConsumedEvent
from events.kafka.log import TopicLog, read_all

log = logging.getLogger(__name__)

RESTART_ALLOWANCE_S = 60.0  # how long rebuilding a restarted stage's memory may spend reading its input
READ_WITHIN_S = 60.0  # how long reading a stream's run back may take before it is retried (BusError)


def recent_input(
    bus: Bus, group_id: str, topics: Sequence[str], partitions: Sequence[tuple[str, int]], *, window_s: float
) -> list[ConsumedEvent]:
    """The events of ``partitions`` in the last ``window_s`` before the group's committed offsets, oldest first.

    The window ends at each partition's last finished event (the one before its committed offset), found first, so
    a stage that took long to come back still gets its memory; it is trimmed per partition to ``window_s`` before
    that event. A replay that cannot be read is skipped (logged): the stage then resumes with empty memory, as it
    would without one.
    """
    try:
        probe = KafkaProbe(bus.connection)
        committed = probe.committed(group_id, list(partitions))
        targets = {key: offset for key, offset in committed.items() if offset}
        if not targets:
            return []
        deadline = time.monotonic() + RESTART_ALLOWANCE_S
        last_ms = _last_finished_ms(bus, probe, topics, targets, deadline)
        finished: dict[tuple[str, int], deque[ConsumedEvent]] = {key: deque() for key in targets}
        since_ms = min(last_ms.values()) - int(window_s * 1000)
        with TopicLog(bus, topics, since_ms=since_ms, purpose="recent-input") as topic_log:
            while topic_log.remaining(targets) > 0 and time.monotonic() < deadline:
                for consumed in topic_log.read(timeout_s=0.2).events:
                    key = (consumed.topic, consumed.partition)
                    if key in targets and consumed.offset < targets[key]:
                        window = finished[key]
                        window.append(consumed)
                        while window[0].timestamp_ms < consumed.timestamp_ms - window_s * 1000:
                            window.popleft()
    except (MetricsError, BusError) as error:
        log.warning(
            "cannot read the input to rebuild a stage's memory", extra={"group_id": group_id, "error": str(error)}
        )
        return []
    return sorted((event for window in finished.values() for event in window), key=lambda c: c.timestamp_ms)


def _last_finished_ms(
    bus: Bus, probe: KafkaProbe, topics: Sequence[str], targets: Mapping[tuple[str, int], int], deadline: float
) -> dict[tuple[str, int], int]:
    """Kafka timestamps of the event before each committed offset; now for one that cannot be read by ``deadline``
    or cannot be decoded (the reader skips it, so waiting for it would only spend the deadline)."""
    last = {key: offset - 1 for key, offset in targets.items()}
    found: dict[tuple[str, int], int] = {}
    start = {**probe.end_offsets(probe.partitions(topics)), **last}  # the other partitions: nothing to read
    with TopicLog(bus, topics, start=start, purpose="recent-input") as topic_log:
        while topic_log.remaining(targets) > 0 and time.monotonic() < deadline:
            for consumed in topic_log.read(timeout_s=0.2).events:
                key = (consumed.topic, consumed.partition)
                if last.get(key) == consumed.offset:
                    found[key] = consumed.timestamp_ms
    now_ms = int(time.time() * 1000)
    return {key: found.get(key, now_ms) for key in last}


@dataclass(frozen=True, kw_only=True)
class StreamRun:
    """How far a stream's run got since the pipeline started, according to the topics."""

    started: StreamStarted | None  # None: the stream has not started in this run
    finished: bool
    next_sequence: int  # the first chunk not published yet
    next_sample_offset: int  # the first sample not published yet
    anchor: datetime | None  # wall time of the run's first sample (from its latest chunk, else its StreamStarted)


def locate_stream_run(bus: Bus, stream_id: str, *, since_ms: int, recent_s: float = 60.0) -> StreamRun:
    """Read the stream's events since ``since_ms``: its StreamStarted, whether it ended, its latest chunk.

    Only this stream's messages are decoded, and chunks are first looked for in the last ``recent_s`` (a capture
    is restarted within seconds of its crash) before the whole run is read.
    """
    started: StreamStarted | None = None
    finished = False
    key = stream_id.encode()
    for consumed in read_all(bus, [bus.catalogue.streams.name], since_ms=since_ms, key=key, within_s=READ_WITHIN_S):
        event = consumed.event
        if isinstance(event, StreamStarted):
            started, finished = event, False
        elif isinstance(event, StreamEnded | StreamFailed) and started is not None:
            finished = finished or event.correlation_id == started.event_id
    if started is None or finished:
        return StreamRun(started=started, finished=finished, next_sequence=0, next_sample_offset=0, anchor=None)
    started_ms = int(started.occurred_at.timestamp() * 1000)
    latest: AudioChunkCaptured | None = None
    for window_start in (max(started_ms, int((time.time() - recent_s) * 1000)), started_ms):
        chunks = read_all(
            bus, [bus.catalogue.audio_chunks.name], since_ms=window_start, key=key, within_s=READ_WITHIN_S
        )
        for consumed in chunks:
            chunk = consumed.event
            if (
                isinstance(chunk, AudioChunkCaptured)
                and chunk.correlation_id == started.event_id
                and (latest is None or chunk.sequence > latest.sequence)
            ):
                latest = chunk
        if latest is not None:
            break
    if latest is None:
        return StreamRun(
            started=started, finished=False, next_sequence=0, next_sample_offset=0, anchor=started.occurred_at
        )
    anchor = latest.captured_at - timedelta(seconds=latest.sample_offset / latest.sample_rate)
    return StreamRun(
        started=started,
        finished=False,
        next_sequence=latest.sequence + 1,
        next_sample_offset=latest.sample_offset + len(latest.pcm16) // 2,
        anchor=anchor,
    )


class ResumingPublisher:
    """Continues a stream run that a crashed capture left unfinished, from a capture that starts over.

    The new capture's StreamStarted is dropped and everything else is filed under the original one. A recording is
    read again from its start (chunking is deterministic, so its chunks are the same): chunks already published are
    dropped and, with ``paced``, the rest go out on the original run's clock (overdue ones at once, later ones when
    their audio would have been heard) with ``captured_at`` continuing the original timeline. A live source cannot be
    read again: its new audio continues the run, numbered after the last chunk published (the audio missed during
    the restart is a gap, as after a reconnect).
    """

    def __init__(
        self, producer: EventPublisher, run: StreamRun, *, live: bool, paced: bool, stop: threading.Event
    ) -> None:
        if run.started is None:
            raise ValueError("nothing to resume: the stream has not started")
        self._producer = producer
        self._started = run.started
        self._live = live
        self._next_sequence = run.next_sequence
        self._next_sample_offset = run.next_sample_offset
        self._anchor = run.anchor if paced and not live else None
        self._stop = stop

    def publish(self, event: Event) -> None:
        if isinstance(event, StreamStarted):
            return
        changes: dict[str, Any] = self._started.caused()
        if isinstance(event, AudioChunkCaptured) and self._live:
            changes.update(
                sequence=event.sequence + self._next_sequence,
                sample_offset=event.sample_offset + self._next_sample_offset,
            )
        elif isinstance(event, AudioChunkCaptured):
            if event.sequence < self._next_sequence:
                return
            if self._anchor is not None:
                samples = len(event.pcm16) // 2
                due = self._anchor + timedelta(seconds=(event.sample_offset + samples) / event.sample_rate)
                self._stop.wait(max(0.0, (due - datetime.now(UTC)).total_seconds()))
                changes["captured_at"] = self._anchor + timedelta(seconds=event.sample_offset / event.sample_rate)
        elif isinstance(event, StreamEnded | StreamFailed) and self._live:
            changes.update(chunks=event.chunks + self._next_sequence, samples=event.samples + self._next_sample_offset)
        self._producer.publish(dataclasses.replace(event, **changes))

    def flush(self, timeout_s: float = 60.0) -> None:
        self._producer.flush(timeout_s)
