"""Batched consumption of decoded events in a consumer group, with explicit checkpoints and dead-lettering."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from events.base import Event
from events.codec import CodecError, EventCodec
from events.kafka.connection import BusError, KafkaConnection
from events.kafka.producer import EventProducer

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ConsumedEvent:
    """A decoded event and where it came from."""

    event: Event
    topic: str
    partition: int
    offset: int
    timestamp_ms: int

    @classmethod
    def of(cls, event: Event, topic: str, partition: int, offset: int, timestamp_ms: int) -> ConsumedEvent:
        """The same as the constructor, without the frozen dataclass's ``__init__`` (an ``object.__setattr__``
        per field): readers make one per message, and that cost more than reading the message."""
        consumed = object.__new__(cls)
        fields = consumed.__dict__
        fields["event"], fields["topic"], fields["partition"] = event, topic, partition
        fields["offset"], fields["timestamp_ms"] = offset, timestamp_ms
        return consumed


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


def usable(message: Message) -> bool:
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
        self._rebalances = 0  # partitions revoked or lost so far
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

    def consume(
        self, max_messages: int = 500, timeout_s: float = 1.0, *, linger_s: float | None = None
    ) -> list[ConsumedEvent]:
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
                rebalances = self._rebalances
                more = self._consumer.consume(num_messages=max_messages - 1, timeout=linger_s)
                # A rebalance served inside the second call took the first message's partition away before it
                # was processed: its next owner (maybe this consumer again) reads it from the committed offset,
                # so handling it here too would handle it twice.
                messages = more if self._rebalances != rebalances else messages + more
        events: list[ConsumedEvent] = []
        for message in messages:
            if not usable(message):
                continue
            topic, partition, offset = _origin(message)
            try:
                event = self._codec.decode(message.value())
            except CodecError as codec_error:
                self._handle_decode_failure(message, codec_error)
                self.checkpoint.record(topic, partition, offset)
                continue
            _, timestamp_ms = message.timestamp()
            events.append(
                ConsumedEvent(event=event, topic=topic, partition=partition, offset=offset, timestamp_ms=timestamp_ms)
            )
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
            extra={
                "topic": failure.topic,
                "partition": failure.partition,
                "offset": failure.offset,
                "error": str(error),
                "action": action.value,
            },
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
        self._rebalances += 1

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.checkpoint.forget(partitions)
        self._rebalances += 1


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
