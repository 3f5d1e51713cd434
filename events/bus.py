"""Thin wrappers around confluent_kafka: an event producer, a batching consumer with explicit checkpoints,
dead-lettering of undecodable messages, idempotent topic creation, and reading a topic's history from explicit
offsets outside any consumer group (``TopicLog``).

Actors never see raw Kafka messages: they receive decoded ``ConsumedEvent``s and publish ``Event`` objects.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from events.base import Event
from events.codec import CodecError, EventCodec
from events.topics import TopicCatalogue, TopicSpec

log = logging.getLogger(__name__)


class BusError(Exception):
    """Kafka refused or lost something the caller must know about."""


class DeliveryFailed(BusError):
    """At least one produced message was not acknowledged by the broker."""


class _LibrdkafkaLog:
    """librdkafka's own log lines, routed into our logging (logger ``librdkafka``) instead of raw ``%3|...`` lines
    on stderr.

    Its errors are mostly connection attempts it retries by itself (a broker restarting, a refused connect), so
    they are logged as warnings; a failure the caller must act on reaches it as an exception or error event.
    """

    _logger = logging.getLogger("librdkafka")

    def log(self, level: int, message: str, *args: object) -> None:
        """confluent-kafka calls ``log(level, "%s [%s] %s", facility, client, text)`` from the client's poll."""
        if len(args) == 3:
            facility, client, text = args
            self._logger.log(min(level, logging.WARNING), "%s", text, extra={"facility": facility, "client": client})
        else:
            self._logger.log(min(level, logging.WARNING), message, *args)


LIBRDKAFKA_LOG = _LibrdkafkaLog()


@dataclass(frozen=True, kw_only=True)
class KafkaConnection:
    """Where the cluster is and how to talk to it; ``client_options`` passes SASL/SSL settings through verbatim."""

    bootstrap_servers: str
    client_options: Mapping[str, str] = field(default_factory=dict)

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": LIBRDKAFKA_LOG,
            # Brokers close idle connections routinely; librdkafka reconnects when needed, nothing to report.
            "log.connection.close": False,
            **self.client_options,
            **overrides,
        }


# ------------------------------------------------------------------------------------------------- topics


def ensure_topics(
    connection: KafkaConnection,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Safe to call on every start."""
    admin = AdminClient(connection.client_config())
    specs = list(specs)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=replication_factor,
                 config=spec.config())
        for spec in specs
        if spec.name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout_s, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # lost a race with another starter
                raise BusError(f"could not create topic {name}: {error.args[0].str()}") from error
    return created


# ----------------------------------------------------------------------------------------------- producer


class EventProducer:
    """Publishes events to their catalogue topic, keyed by stream id so each stream stays in order.

    Idempotence is on and acks=all, so broker restarts cause neither loss nor duplicates; delivery errors are
    collected by the callback and raised from ``flush`` so no failure passes silently.
    """

    def __init__(
        self,
        connection: KafkaConnection,
        catalogue: TopicCatalogue,
        codec: EventCodec,
        *,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self._catalogue = catalogue
        self._codec = codec
        self._failures: list[str] = []
        self.delivered = 0
        self._producer = Producer(
            connection.client_config(
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "compression.type": "lz4",
                    "message.max.bytes": 1_000_000,
                    **(extra_config or {}),
                }
            )
        )

    def publish(self, event: Event, *, topic: str | None = None) -> None:
        self.produce_raw(
            topic or self._catalogue.topic_for(event),
            key=event.stream_id.encode(),
            value=self._codec.encode(event),
            headers=self._codec.headers(event),
        )

    def produce_raw(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """Produce bytes as they are (used for dead letters, which must keep the original bytes)."""
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=list(headers),
                                       on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: serve delivery reports to make room (backpressure)
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Block until every produced message is acknowledged; raise if any was not."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise DeliveryFailed(f"{remaining} message(s) still unacknowledged after {timeout_s:.0f} s")
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryFailed(f"{len(failures)} message(s) failed: {failures[:3]}")

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self._failures.append(f"{message.topic()}: {error.str()}")


# ----------------------------------------------------------------------------------------------- consumer


@dataclass(frozen=True, kw_only=True)
class ConsumedEvent:
    """A decoded event and where it came from."""

    event: Event
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True, kw_only=True)
class DecodeFailure:
    """A message that could not be decoded, with everything needed to inspect or replay it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    error: CodecError


class ErrorAction(enum.Enum):
    DEAD_LETTER = "dead_letter"  # copy to the dead-letter topic, then continue
    SKIP = "skip"  # continue without a copy
    RAISE = "raise"  # stop the consumer: the caller decides


def dead_letter_everything(failure: DecodeFailure) -> ErrorAction:
    return ErrorAction.DEAD_LETTER


class Checkpoint:
    """The offsets this consumer has fully processed but not yet committed.

    Commit order, which makes the pipeline at-least-once and never lossy:
      1. the handler has produced every output event of the processed messages (and dead letters);
      2. the producer is flushed, so the broker has acknowledged all of those outputs;
      3. only then are the consumer offsets (next offset to read, per partition) committed, synchronously.
    A crash before step 3 re-delivers the batch; downstream consumers deduplicate by event id or by storing their
    own checkpoint in the same transaction as their rows (projections).
    """

    def __init__(self) -> None:
        self._next_offsets: dict[tuple[str, int], int] = {}

    def record(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        self._next_offsets[key] = max(self._next_offsets.get(key, 0), offset + 1)

    def pending(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition, offset) for (topic, partition), offset in self._next_offsets.items()]

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._next_offsets.pop((tp.topic, tp.partition), None)

    def clear(self) -> None:
        self._next_offsets.clear()

    def __bool__(self) -> bool:
        return bool(self._next_offsets)


def _usable(message: Message) -> bool:
    """False for a message carrying a transient consumer error (logged, skipped); raises on a fatal one."""
    error = message.error()
    if error is None:
        return True
    if error.fatal():
        raise BusError(f"fatal consumer error: {error.str()}")
    log.warning("consumer error", extra={"kafka_error": error.str()})
    return False

class EventConsumer:
    """Batched, manually committed consumption of decoded events, with dead-lettering of bad messages."""

    def __init__(
        self,
        connection: KafkaConnection,
        *,
        group_id: str,
        topics: Sequence[str],
        codec: EventCodec,
        producer: EventProducer,
        dead_letter_topic: str,
        on_decode_error: Callable[[DecodeFailure], ErrorAction] = dead_letter_everything,
        from_beginning: bool = True,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self._codec = codec
        self._producer = producer
        self._dead_letter_topic = dead_letter_topic
        self._on_decode_error = on_decode_error
        self.checkpoint = Checkpoint()
        self.dead_lettered = 0
        self._consumer = Consumer(
            connection.client_config(
                **{
                    "group.id": group_id,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest" if from_beginning else "latest",
                    # range gives a replica the same partitions of every topic it reads: keyed by stream, so a
                    # stage replica sees all of its streams' events (cooperative-sticky, with replicas joining
                    # one by one, gave one replica every scores partition and the other every audio partition).
                    "partition.assignment.strategy": "range",
                    **(extra_config or {}),
                }
            )
        )
        self._consumer.subscribe(list(topics), on_revoke=self._on_revoke, on_lost=self._on_lost)

    def consume(self, max_messages: int = 500, timeout_s: float = 1.0, *,
                linger_s: float | None = None) -> list[ConsumedEvent]:
        """Up to ``max_messages`` decoded events; undecodable ones are handled by the error callback.

        librdkafka returns a batch only when it is full or ``timeout_s`` has passed, so below full batches every
        message waits the whole timeout. With ``linger_s`` the call returns once the first message arrived and
        at most ``linger_s`` more passed (latency-sensitive stages); a backlog still fills the batch.
        """
        if linger_s is None:
            messages = self._consumer.consume(num_messages=max_messages, timeout=timeout_s)
        else:
            messages = self._consumer.consume(num_messages=1, timeout=timeout_s)
            if messages and max_messages > 1:
                messages += self._consumer.consume(num_messages=max_messages - 1, timeout=linger_s)
        events: list[ConsumedEvent] = []
        for message in messages:
            if not _usable(message):
                continue
            topic, partition, offset = _origin(message)
            try:
                event = self._codec.decode(message.value())
            except CodecError as codec_error:
                self._handle_decode_failure(message, codec_error)
                self.checkpoint.record(topic, partition, offset)
                continue
            _, timestamp_ms = message.timestamp()
            events.append(ConsumedEvent(event=event, topic=topic, partition=partition, offset=offset,
                                        timestamp_ms=timestamp_ms))
        return events

    def mark_processed(self, consumed: ConsumedEvent) -> None:
        self.checkpoint.record(consumed.topic, consumed.partition, consumed.offset)

    def commit(self, *, retry_for_s: float = 60.0) -> None:
        """Flush outputs, then commit processed offsets (the order documented on ``Checkpoint``)."""
        if not self.checkpoint:
            return
        self._producer.flush()
        offsets = self.checkpoint.pending()
        deadline = time.monotonic() + retry_for_s
        while True:
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
                break
            except KafkaException as error:
                kafka_error = error.args[0]
                if kafka_error.code() == KafkaError._NO_OFFSET:
                    break
                if not kafka_error.retriable() and kafka_error.code() not in _TRANSIENT_COMMIT_ERRORS:
                    raise BusError(f"offset commit failed: {kafka_error.str()}") from error
                if time.monotonic() > deadline:
                    raise BusError(f"offset commit failing for {retry_for_s:.0f} s: {kafka_error.str()}") from error
                time.sleep(0.5)
        self.checkpoint.clear()

    def assignment(self) -> list[TopicPartition]:
        return list(self._consumer.assignment())

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages not yet consumed per assigned partition (for metrics and for 'caught up' checks)."""
        lag: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            low, high = self._consumer.get_watermark_offsets(tp, timeout=5.0, cached=False)
            position = self._consumer.position([tp])[0].offset
            lag[(tp.topic, tp.partition)] = high - (position if position >= 0 else low)
        return lag

    def close(self) -> None:
        """Commit what was processed, then leave the group."""
        try:
            self.commit()
        finally:
            self._consumer.close()

    def _handle_decode_failure(self, message: Message, error: CodecError) -> None:
        topic, partition, offset = _origin(message)
        failure = DecodeFailure(
            topic=topic,
            partition=partition,
            offset=offset,
            key=_as_bytes(message.key()),
            value=_as_bytes(message.value()),
            headers=_headers_of(message),
            error=error,
        )
        action = self._on_decode_error(failure)
        log.warning(
            "undecodable message",
            extra={"topic": failure.topic, "partition": failure.partition, "offset": failure.offset,
                   "error": str(error), "action": action.value},
        )
        if action is ErrorAction.RAISE:
            raise error
        if action is ErrorAction.DEAD_LETTER:
            self._producer.produce_raw(
                self._dead_letter_topic, key=failure.key, value=failure.value, headers=dead_letter_headers(failure)
            )
            self.dead_lettered += 1

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        mine = [tp for tp in self.checkpoint.pending() if (tp.topic, tp.partition) in revoked]
        if mine:
            self._producer.flush()
            consumer.commit(offsets=mine, asynchronous=False)
        self.checkpoint.forget(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.checkpoint.forget(partitions)


_TRANSIENT_COMMIT_ERRORS = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.REQUEST_TIMED_OUT,
}


def _origin(message: Message) -> tuple[str, int, int]:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise BusError("consumed message without topic, partition or offset")
    return topic, partition, offset


def _headers_of(message: Message) -> tuple[tuple[str, bytes], ...]:
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple((str(name), _as_bytes(value) or b"") for name, value in pairs)


def _as_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def dead_letter_headers(failure: DecodeFailure) -> list[tuple[str, bytes]]:
    """Original headers plus where the message came from and why it could not be read."""
    return [
        *failure.headers,
        ("dlq.source_topic", failure.topic.encode()),
        ("dlq.source_partition", str(failure.partition).encode()),
        ("dlq.source_offset", str(failure.offset).encode()),
        ("dlq.error_type", type(failure.error).__name__.encode()),
        ("dlq.error", str(failure.error).encode()),
    ]



class Bus:
    """Everything needed to talk events on one cluster: connection, topic catalogue and codec."""

    def __init__(self, connection: KafkaConnection, catalogue: TopicCatalogue, codec: EventCodec) -> None:
        self.connection = connection
        self.catalogue = catalogue
        self.codec = codec

    def ensure_topics(self, *, replication_factor: int = 1) -> list[str]:
        return ensure_topics(self.connection, self.catalogue.all(), replication_factor=replication_factor)

    def producer(self, **extra_config: Any) -> EventProducer:
        return EventProducer(self.connection, self.catalogue, self.codec, extra_config=extra_config)

    def consumer(
        self,
        *,
        group_id: str,
        topics: Sequence[str],
        producer: EventProducer,
        on_decode_error: Callable[[DecodeFailure], ErrorAction] = dead_letter_everything,
        **extra_config: Any,
    ) -> EventConsumer:
        return EventConsumer(
            self.connection,
            group_id=group_id,
            topics=topics,
            codec=self.codec,
            producer=producer,
            dead_letter_topic=self.catalogue.dead_letters.name,
            on_decode_error=on_decode_error,
            extra_config=extra_config,
        )


# ------------------------------------------------------------------------------------------ reading history
# Projections keep their Kafka position in their own database (in the same transaction as their rows), and
# rebuilding state from history - the incident actor on start, operator commands, replays - reads a topic from
# the beginning to its end. Neither may commit offsets to Kafka, so both assign partitions directly.

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
            if not _usable(message):
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


def read_all(bus: Bus, topics: Sequence[str], *, key: bytes | None = None) -> Iterator[ConsumedEvent]:
    """Every decodable event of the topics as they are now, partition by partition in offset order."""
    with TopicLog(bus, topics, key=key) as topic_log:
        for batch in topic_log.read_until(topic_log.end_offsets()):
            yield from batch.events
