"""TopicLog's positions against a real broker: where reading starts, where each partition ends, and records
deleted from the front of a partition (the watermarks are asked for all partitions at once)."""

from __future__ import annotations

from collections import Counter

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from config import Settings
from events.catalogue import IncidentNoteAdded
from events.kafka.bus import Bus
from events.kafka.connection import Partition
from events.kafka.consumer import ConsumedEvent
from events.kafka.log import LogPositionError, TopicLog


def _publish(bus: Bus, notes: int, streams: int = 10) -> None:
    with bus.producer() as producer:
        for number in range(notes):
            producer.publish(
                IncidentNoteAdded(
                    stream_id=f"ward-{number % streams}", incident_id=f"inc-{number}", actor="ana", note="checked"
                )
            )
        producer.flush()


def _counts(log: TopicLog, until: dict[Partition, int]) -> Counter[Partition]:
    return Counter((consumed.topic, consumed.partition) for batch in log.read_until(until) for consumed in batch.events)


def test_every_partition_is_read_from_its_start_to_its_end(kafka_settings: Settings) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    topic = bus.catalogue.incidents.name
    _publish(bus, 40)
    with TopicLog(bus, [topic]) as log:
        ends = log.end_offsets()
        assert set(ends) == {(topic, partition) for partition in range(bus.catalogue.incidents.partitions)}
        assert sum(ends.values()) == 40
        assert len([end for end in ends.values() if end > 0]) > 1  # the streams' keys spread over partitions
        assert log.positions == dict.fromkeys(ends, 0)
        assert _counts(log, ends) == Counter({where: end for where, end in ends.items() if end})
        assert log.positions == ends
        assert log.remaining(ends) == 0
        _publish(bus, 5)
        later = log.end_offsets()
        assert sum(later.values()) == 45
        assert all(later[where] >= end for where, end in ends.items())
        assert log.ends_when_opened == ends  # what it was, not asked again
    with pytest.raises(LogPositionError, match="beyond its end"):
        TopicLog(bus, [topic], start={where: end + 1 for where, end in later.items()})


def test_reading_starts_at_the_first_record_still_kept(kafka_settings: Settings) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    topic = bus.catalogue.incidents.name
    _publish(bus, 40)
    with TopicLog(bus, [topic]) as log:
        ends = log.end_offsets()
    where, end = max(ends.items(), key=lambda item: item[1])
    admin = AdminClient(bus.connection.client_config())
    for future in admin.delete_records([TopicPartition(*where, end - 2)]).values():
        future.result(timeout=30)
    with TopicLog(bus, [topic], start=dict.fromkeys(ends, 0)) as log:
        assert log.low_watermark(where) == end - 2
        assert log.positions[where] == end - 2
        assert all(log.positions[other] == 0 for other in ends if other != where)
        assert _counts(log, ends)[where] == 2
        log.seek({where: 0})
        assert log.positions[where] == end - 2
        assert log.end_offsets() == ends


def test_a_consumed_event_made_the_quick_way_is_the_same_as_one_constructed() -> None:
    note = IncidentNoteAdded(stream_id="ward-1", incident_id="inc-1", actor="ana", note="checked")
    quick = ConsumedEvent.of(note, "incidents", 3, 17, 1_700_000_000_000)
    constructed = ConsumedEvent(event=note, topic="incidents", partition=3, offset=17, timestamp_ms=1_700_000_000_000)
    assert quick == constructed and hash(quick) == hash(constructed) and repr(quick) == repr(constructed)
    assert list(vars(quick)) == list(vars(constructed))
    with pytest.raises(AttributeError):
        quick.offset = 18  # type: ignore[misc]
