"""Publishing events to their catalogue topics, and raw bytes (dead letters), with acknowledged delivery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from events.base import Event
from events.codec import EventCodec
from events.kafka.connection import BusError, KafkaConnection
from events.topics import TopicCatalogue


class DeliveryFailed(BusError):
    """At least one produced message was not acknowledged by the broker."""


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
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        timestamp_ms: int | None = None,
    ) -> None:
        """Produce bytes as they are (used for dead letters, which must keep the original bytes); ``timestamp_ms``
        sets the message's Kafka timestamp (default: now), for a message that must look as old as it is."""
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers),
                    on_delivery=self._on_delivery,
                    timestamp=timestamp_ms or 0,  # 0: librdkafka stamps it now
                )
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
