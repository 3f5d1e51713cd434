"""The Kafka wrappers against a real broker: round trips, dead letters, and no loss across a broker restart."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from config import Settings
from events import Event
from events.catalogue import IncidentNoteAdded
from events.kafka.broker import LocalBroker
from events.kafka.bus import Bus
from tests.events.samples import sample_events
from tests.support.kafka import drain


@pytest.mark.parametrize("linger_s", [None, 0.02], ids=["full-timeout", "linger"])
def test_every_event_type_round_trips_through_kafka(kafka_settings: Settings, linger_s: float | None) -> None:
    bus = kafka_settings.bus()
    assert len(bus.ensure_topics()) == len(bus.catalogue.all())
    assert bus.ensure_topics() == []  # idempotent
    events = sample_events()
    with bus.producer() as producer:
        for event in events:
            producer.publish(event)
        producer.flush()
        topics = sorted({bus.catalogue.topic_for(event) for event in events})
        consumer = bus.consumer(group_id=f"g-{uuid.uuid4()}", topics=topics, producer=producer)
        received = drain(consumer, len(events), linger_s=linger_s)
        consumer.close()
    by_id = {consumed.event.event_id: consumed for consumed in received}
    assert len(received) == len(events)
    for event in events:
        consumed = by_id[event.event_id]
        assert consumed.event == event
        assert bus.codec.encode(consumed.event) == bus.codec.encode(event)
        assert consumed.topic == bus.catalogue.topic_for(event)


def test_poison_message_is_dead_lettered_and_the_next_is_processed(kafka_settings: Settings) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    topic = bus.catalogue.incidents.name
    poison = b'{"type": "IncidentOpened", "truncated'
    good = IncidentNoteAdded(stream_id="ward-3", incident_id="inc-9", actor="ana", note="checked")
    with bus.producer() as producer:
        producer.produce_raw(topic, key=b"ward-3", value=poison, headers=[("trace", b"abc")])
        producer.publish(good)
        producer.flush()
        consumer = bus.consumer(group_id=f"g-{uuid.uuid4()}", topics=[topic], producer=producer)
        received = drain(consumer, 1)
        consumer.close()
        assert [consumed.event for consumed in received] == [good]
        assert consumer.dead_lettered == 1

    dead = _read_raw(bus, bus.catalogue.dead_letters.name, count=1)[0]
    headers = dict(dead.headers() or [])
    assert dead.value() == poison and dead.key() == b"ward-3"
    assert headers["trace"] == b"abc"
    assert headers["dlq.source_topic"] == topic.encode()
    assert headers["dlq.source_offset"] == b"0"
    assert headers["dlq.error_type"] == b"MalformedMessage"
    error = headers["dlq.error"]
    assert isinstance(error, bytes) and b"not valid JSON" in error


def test_ten_thousand_events_survive_a_broker_restart(
    kafka_broker: LocalBroker[Settings], kafka_settings: Settings
) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    total = 10_000
    notes: list[Event] = [
        IncidentNoteAdded(stream_id=f"s{index % 7}", incident_id=f"i{index}", actor="load", note=str(index))
        for index in range(total)
    ]
    with bus.producer() as producer:
        consumer = bus.consumer(group_id=f"g-{uuid.uuid4()}", topics=[bus.catalogue.incidents.name], producer=producer)
        for event in notes[: total // 2]:
            producer.publish(event)
        received = drain(consumer, 2_000)  # part-way through consuming ...
        kafka_broker.down()  # ... the broker goes away with messages still in flight
        kafka_broker.up()
        for event in notes[total // 2 :]:
            producer.publish(event)
        producer.flush(timeout_s=120)
        received += drain(consumer, total - len(received), timeout_s=120)
        consumer.close()
    ids = [consumed.event.event_id for consumed in received]
    assert len(ids) == total, f"received {len(ids)} of {total}"
    assert set(ids) == {event.event_id for event in notes}


def _read_raw(bus: Bus, topic: str, count: int) -> list[Message]:
    consumer = Consumer(
        bus.connection.client_config(**{"group.id": f"raw-{uuid.uuid4()}", "auto.offset.reset": "earliest"})
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    messages: list[Message] = []
    deadline = time.monotonic() + 30
    while len(messages) < count and time.monotonic() < deadline:
        messages += [message for message in consumer.consume(count, timeout=0.5) if message.error() is None]
    consumer.close()
    return messages
