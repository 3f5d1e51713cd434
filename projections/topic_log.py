"""Reading topics from explicit offsets, outside any consumer group.

Projections keep their Kafka position in their own database (in the same transaction as their rows), and
rebuilding state from history - the incident actor on start, operator commands, replays - reads a topic from the
beginning to its end. Neither may commit offsets to Kafka, so both assign partitions directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from events import CodecError
from events.bus import Bus, BusError, ConsumedEvent

log = logging.getLogger(__name__)

Partition = tuple[str, int]


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
    """Assigned (not subscribed) reading of all partitions of some topics from given offsets.

    ``key`` skips, without decoding, every message whose Kafka key differs (events are keyed by stream id).
    """

    def __init__(
        self,
        bus: Bus,
        topics: Sequence[str],
        *,
        start: Mapping[Partition, int] | None = None,
        key: bytes | None = None,
        purpose: str = "reader",
    ) -> None:
        self._codec = bus.codec
        self._key = key
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
            for topic in topics:
                for partition in self._partitions(topic):
                    low, high = self._watermarks((topic, partition))
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
        return {partition: self._watermarks(partition)[1] for partition in self._positions}

    def remaining(self, until: Mapping[Partition, int]) -> int:
        return sum(max(0, until.get(partition, 0) - offset) for partition, offset in self._positions.items())

    def low_watermark(self, where: Partition) -> int:
        """The first offset still on the broker (as of the last look): where reading from the start begins."""
        return self._lows[where]

    def seek(self, positions: Mapping[Partition, int]) -> None:
        """Continue from ``positions``; a position whose events expired moves up to the first one kept."""
        for where, offset in positions.items():
            self._lows[where] = self._watermarks(where)[0]
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

        Of the event types in ``latest_only`` (by their ``event_type`` header), only the last message per
        partition and key in the batch is decoded: for a reader that only keeps the latest such event per
        stream, the earlier ones are superseded, so they are counted and passed over unread.
        """
        batch = LogBatch()
        overshoot = False
        messages = self._consumer.consume(num_messages=max_messages, timeout=timeout_s)
        superseded = _superseded(messages, latest_only) if latest_only else set()
        for index, message in enumerate(messages):
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise BusError(f"fatal consumer error: {error.str()}")
                log.warning("consumer error", extra={"kafka_error": error.str()})
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
            batch.events.append(
                ConsumedEvent(
                    event=event, topic=topic, partition=partition, offset=offset, timestamp_ms=message.timestamp()[1]
                )
            )
        self._positions.update(batch.next_offsets)
        if overshoot:
            self._assign()  # the consumer fetched past ``until``: put it back where the caller stands
        return batch

    def read_until(
        self, until: Mapping[Partition, int], max_messages: int = 2000, latest_only: frozenset[str] = frozenset()
    ) -> Iterator[LogBatch]:
        """Batches until every partition has reached ``until`` (typically the ends captured before reading)."""
        while self.remaining(until) > 0:
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

    def _partitions(self, topic: str, retry_for_s: float = 10.0) -> list[int]:
        deadline = time.monotonic() + retry_for_s
        while True:
            metadata = self._consumer.list_topics(topic=topic, timeout=30.0).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                return sorted(metadata.partitions)
            settling = metadata is not None and metadata.error is not None and metadata.error.code() in _SETTLING
            if not settling or time.monotonic() > deadline:
                raise LogPositionError(f"topic {topic} does not exist (start the pipeline or `distress broker up`)")
            time.sleep(0.2)

    def _watermarks(self, where: Partition, retry_for_s: float = 30.0) -> tuple[int, int]:
        """(first, next) offset of a partition; retried while a new topic's leadership settles."""
        deadline = time.monotonic() + retry_for_s
        while True:
            try:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(*where), timeout=10.0, cached=False)
                return int(low), int(high)
            except KafkaException as error:
                kafka_error = error.args[0]
                if not (kafka_error.retriable() or kafka_error.code() in _SETTLING) or time.monotonic() > deadline:
                    raise BusError(f"cannot read the offsets of {where[0]}[{where[1]}]: {kafka_error.str()}") from error
                time.sleep(0.2)


_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def _superseded(messages: Sequence[Message], event_types: frozenset[str]) -> set[int]:
    """Indexes of messages of ``event_types`` followed, later in the batch, by one of the same partition and key."""
    wanted = {event_type.encode() for event_type in event_types}
    seen: set[tuple[str | None, int | None, Any]] = set()
    superseded: set[int] = set()
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.error() is not None or dict(message.headers() or ()).get("event_type") not in wanted:
            continue
        identity = (message.topic(), message.partition(), message.key())
        if identity in seen:
            superseded.add(index)
        seen.add(identity)
    return superseded


def read_all(bus: Bus, topics: Sequence[str], *, key: bytes | None = None) -> Iterator[ConsumedEvent]:
    """Every decodable event of the topics as they are now, partition by partition in offset order."""
    with TopicLog(bus, topics, key=key) as topic_log:
        for batch in topic_log.read_until(topic_log.end_offsets()):
            yield from batch.events
