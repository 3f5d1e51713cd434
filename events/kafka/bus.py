"""``Bus``: one cluster's connection with the topic catalogue and the codec, making producers and consumers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from events.codec import EventCodec
from events.kafka.admin import ensure_topics
from events.kafka.connection import KafkaConnection
from events.kafka.consumer import DecodeFailure, ErrorAction, EventConsumer, dead_letter_everything
from events.kafka.producer import EventProducer
from events.topics import TopicCatalogue


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
