"""Reading topics outside any consumer group: from given offsets, from a point in time, up to their end.

Projections keep their Kafka position in their own database (in the same transaction as their rows), and
rebuilding state from history - the incident actor on start, operator commands, replays, the alert ledger, an
incident's evidence - reads a topic from an offset or a time to its end, as do the observers (metrics, `distress
status`) and a restarted actor reading back what it did. None of them may commit offsets to Kafka (or disturb the
stages' groups), so all assign partitions directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from events.codec import CodecError
from events.kafka.bus import Bus
from events.kafka.connection import BusError, Partition
from events.kafka.consumer import ConsumedEvent, usable

log = logging.getLogger(__name__)


class LogPositionError(BusError):
    """A stored position does not fit the topic (missing topic, or a checkpoint beyond its end)."""


@dataclass(kw_only=True)
class LogBatch:
    """Decoded events of one read, and where each partition stands after it."""

    events: list[ConsumedEvent] = field(default_factory=list)
    first_offsets: dict[Partition, int] = field(default_factory=dict)
    next_offsets: dict[Partition, int] = field(default_factory=dict)
    messages: int = 0
    undecodable: int = 0


class TopicLog:
    """Assigned (not subscribed) reading of all partitions of some topics from given offsets (``start``; the
    first offset kept where none is given) or from the first message stored at or after ``since_ms``.

    Metadata and time lookups that fail while the cluster settles are retried for up to ``timeout_s``; what still
    fails then raises ``BusError``. ``key`` skips, without decoding, every message whose Kafka key differs (events
    are keyed by stream id).
    """

    def __init__(
        self,
        bus: Bus,
        topics: Sequence[str],
        *,
        start: Mapping[Partition, int] | None = None,
        since_ms: int | None = None,
        key: bytes | None = None,
        purpose: str = "reader",
        timeout_s: float = 30.0,
    ) -> None:
        self._codec = bus.codec
        self._key = key
        self._timeout_s = timeout_s
        self._consumer = Consumer(
            bus.connection.client_config(
                **{
                    "group.id": f"distress.{purpose}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    # A fetch with nothing to return is parked this long on the broker connection, delaying the
                    # watermark queries behind it; data that is there is returned at once either way.
                    "fetch.wait.max.ms": 20,
                }
            )
        )
        self._positions: dict[Partition, int] = {}
        self._lows: dict[Partition, int] = {}
        try:
            partitions = [(topic, partition) for topic in topics for partition in self._partitions(topic)]
            if since_ms is not None:
                start = self._offsets_at(partitions, since_ms)
            lows = self._watermarks(partitions, OFFSET_BEGINNING)
            highs = self._watermarks(partitions, OFFSET_END)
            self._ends_when_opened = highs
            for topic, partition in partitions:
                low, high = lows[(topic, partition)], highs[(topic, partition)]
                self._lows[(topic, partition)] = low
                wanted = (start or {}).get((topic, partition), low)
                if wanted > high:
                    raise LogPositionError(
                        f"stored position {wanted} of {topic}[{partition}] is beyond its end ({high}): the topic "
                        "was recreated; rebuild with `distress replay`"
                    )
                if wanted < low:
                    log.warning(
                        "events expired before they were read",
                        extra={"topic": topic, "partition": partition, "lost": low - wanted},
                    )
                self._positions[(topic, partition)] = max(wanted, low)
            self._assign()
        except BaseException:
            self._consumer.close()
            raise

    @property
    def positions(self) -> dict[Partition, int]:
        """The next offset to read per partition."""
        return dict(self._positions)

    def end_offsets(self) -> dict[Partition, int]:
        """The current end (high watermark) of every partition."""
        return self._watermarks(list(self._positions), OFFSET_END)

    @property
    def ends_when_opened(self) -> dict[Partition, int]:
        """The end of every partition when this log was opened, as ``end_offsets()`` said then: for a reader that
        reads up to where the topics ended when it began, without asking again once fetching, when the answer
        waits behind the fetches."""
        return dict(self._ends_when_opened)

    def remaining(self, until: Mapping[Partition, int]) -> int:
        return sum(max(0, until.get(partition, 0) - offset) for partition, offset in self._positions.items())

    def offsets_at(self, timestamp_ms: int) -> dict[Partition, int]:
        """Per partition read, the first offset stored at or after the time (its end where nothing is that recent)."""
        return self._offsets_at(list(self._positions), timestamp_ms)

    def low_watermark(self, where: Partition) -> int:
        """The first offset still on the broker (as of the last look): where reading from the start begins."""
        return self._lows[where]

    def seek(self, positions: Mapping[Partition, int]) -> None:
        """Continue from ``positions``; a position whose events expired moves up to the first one kept."""
        self._lows.update(self._watermarks(list(positions), OFFSET_BEGINNING))
        for where, offset in positions.items():
            self._positions[where] = max(offset, self._lows[where])
        self._assign()

    def read(
        self,
        max_messages: int = 2000,
        timeout_s: float = 0.5,
        until: Mapping[Partition, int] | None = None,
        latest_only: frozenset[str] = frozenset(),
    ) -> LogBatch:
        """Up to ``max_messages``; with ``until``, nothing at or beyond those offsets is returned.

        Of the topics in ``latest_only``, only the last message per partition and key in the batch is decoded:
        for a reader that only keeps the latest event per stream there, the earlier ones are superseded, so they
        are counted and passed over unread. (Deciding by topic, not by each message's ``event_type`` header,
        saves reading the headers, which costs more than everything else done with a skipped message.)
        """
        batch = LogBatch()
        overshoot = False
        messages = self._consumer.consume(num_messages=max_messages, timeout=timeout_s)
        superseded = _superseded(messages, latest_only) if latest_only else set()
        for index, message in enumerate(messages):
            if not usable(message):
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                raise BusError("consumed message without topic, partition or offset")
            where = (topic, partition)
            if until is not None and offset >= until.get(where, 0):
                overshoot = True
                continue
            batch.messages += 1
            batch.first_offsets.setdefault(where, offset)
            batch.next_offsets[where] = offset + 1
            if index in superseded or (self._key is not None and message.key() != self._key):
                continue
            try:
                event = self._codec.decode(message.value())
            except CodecError as codec_error:
                batch.undecodable += 1
                log.warning(
                    "undecodable message skipped",
                    extra={"topic": topic, "partition": partition, "offset": offset, "error": str(codec_error)},
                )
                continue
            batch.events.append(ConsumedEvent.of(event, topic, partition, offset, message.timestamp()[1]))
        self._positions.update(batch.next_offsets)
        if overshoot:
            self._assign()  # the consumer fetched past ``until``: put it back where the caller stands
        return batch

    def read_until(
        self,
        until: Mapping[Partition, int],
        max_messages: int = 2000,
        latest_only: frozenset[str] = frozenset(),
        within_s: float | None = None,
    ) -> Iterator[LogBatch]:
        """Batches until every partition has reached ``until`` (typically the ends captured before reading).

        ``within_s``: a ``BusError`` once reading has taken that long, for a caller that must not wait forever on
        a broker that went away (an observer, a restarted actor); without it, reading waits for the broker.
        """
        deadline = None if within_s is None else time.monotonic() + within_s
        while self.remaining(until) > 0:
            if deadline is not None and time.monotonic() > deadline:
                raise BusError(f"could not read the topics to their end within {within_s:.0f} s")
            batch = self.read(max_messages=max_messages, until=until, latest_only=latest_only)
            if batch.messages:
                yield batch
            else:
                self._skip_gaps()

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _skip_gaps(self) -> None:
        """Offsets that hold no message (transaction markers) advance the consumer but are never returned."""
        for tp in self._consumer.position([TopicPartition(*where) for where in self._positions]):
            where = (tp.topic, tp.partition)
            if tp.offset > self._positions[where]:
                self._positions[where] = tp.offset

    def _assign(self) -> None:
        self._consumer.assign(
            [TopicPartition(topic, partition, offset) for (topic, partition), offset in self._positions.items()]
        )

    def _offsets_at(self, partitions: Sequence[Partition], timestamp_ms: int) -> dict[Partition, int]:
        found = self._ask(
            "look up offsets by time",
            lambda: self._consumer.offsets_for_times(
                [TopicPartition(topic, partition, timestamp_ms) for topic, partition in partitions],
                timeout=self._timeout_s,
            ),
        )
        offsets = {(item.topic, item.partition): item.offset for item in found}
        beyond = [where for where, offset in offsets.items() if offset < 0]
        return offsets | self._watermarks(beyond, OFFSET_END)

    def _ask(self, what: str, call: Callable[[], Answer]) -> Answer:
        """``call``, retried while the cluster settles (new topics without leaders yet) for up to the timeout."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return call()
            except KafkaException as error:
                kafka_error = error.args[0]
                if kafka_error.code() not in _SETTLING or time.monotonic() > deadline:
                    raise BusError(f"cannot {what}: {kafka_error.str()}") from error
            time.sleep(0.2)

    def _partitions(self, topic: str, retry_for_s: float = 10.0) -> list[int]:
        deadline = time.monotonic() + retry_for_s
        while True:
            metadata = self._ask(
                "read topic metadata", lambda: self._consumer.list_topics(topic=topic, timeout=self._timeout_s)
            ).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                return sorted(metadata.partitions)
            settling = metadata is not None and metadata.error is not None and metadata.error.code() in _SETTLING
            if not settling or time.monotonic() > deadline:
                raise LogPositionError(f"topic {topic} does not exist (start the pipeline or `distress broker up`)")
            time.sleep(0.2)

    def _watermarks(
        self, partitions: Sequence[Partition], which: int, retry_for_s: float = 30.0
    ) -> dict[Partition, int]:
        """The first (``OFFSET_BEGINNING``) or next (``OFFSET_END``) offset of every partition, asked in one
        request (per broker), not one per partition: once reading, each request waits behind a fetch parked on the
        broker, and one per partition added up to a large part of a rebuild. Retried while a new topic's leadership
        settles."""
        if not partitions:
            return {}
        deadline = time.monotonic() + retry_for_s
        while True:
            cause: KafkaException | None = None
            try:
                found = self._consumer.offsets_for_times(
                    [TopicPartition(topic, partition, which) for topic, partition in partitions], timeout=10.0
                )
                failed = [(item, item.error) for item in found if item.error is not None]
                if not failed:
                    return {(item.topic, item.partition): int(item.offset) for item in found}
                (item, kafka_error), *_ = failed
                where = f"{item.topic}[{item.partition}]"
            except KafkaException as error:
                cause, kafka_error = error, error.args[0]
                where = ", ".join(f"{topic}[{partition}]" for topic, partition in partitions)
            if not (kafka_error.retriable() or kafka_error.code() in _SETTLING) or time.monotonic() > deadline:
                raise BusError(f"cannot read the offsets of {where}: {kafka_error.str()}") from cause
            time.sleep(0.2)


Answer = TypeVar("Answer")

_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def _superseded(messages: Sequence[Message], topics: frozenset[str]) -> set[int]:
    """Indexes of messages on ``topics`` followed, later in the batch, by one of the same partition and key."""
    seen: set[tuple[str | None, int | None, Any]] = set()
    superseded: set[int] = set()
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        topic = message.topic()
        if topic not in topics or message.error() is not None:
            continue
        identity = (topic, message.partition(), message.key())
        if identity in seen:
            superseded.add(index)
        else:
            seen.add(identity)
    return superseded


def read_all(
    bus: Bus,
    topics: Sequence[str],
    *,
    key: bytes | None = None,
    since_ms: int | None = None,
    within_s: float | None = None,
) -> Iterator[ConsumedEvent]:
    """Every decodable event of the topics as they are now (from ``since_ms`` when given), partition by partition
    in offset order; ``key`` and ``within_s`` as for ``TopicLog`` and ``TopicLog.read_until``."""
    with TopicLog(bus, topics, key=key, since_ms=since_ms) as topic_log:
        for batch in topic_log.read_until(topic_log.end_offsets(), within_s=within_s):
            yield from batch.events
