"""Reading topics outside any consumer group, as observers and restarted actors do: from a point in time, one
stream's messages only, and giving up in time when the end cannot be reached. On a real broker."""

from __future__ import annotations

import time

import pytest

from config import Settings
from events.catalogue import StreamEnded
from events.kafka.connection import BusError
from events.kafka.log import TopicLog, read_all


def ended(stream_id: str) -> StreamEnded:
    return StreamEnded(stream_id=stream_id, reason="eof", chunks=0, samples=0)


def test_read_all_from_a_time_and_of_one_key(kafka_settings: Settings) -> None:
    kafka_settings.ensure_topics()
    bus, topic = kafka_settings.bus(), kafka_settings.topics().streams.name
    with bus.producer() as producer:
        producer.publish(ended("old"))
        producer.flush()
        time.sleep(0.05)  # Kafka timestamps have millisecond resolution
        since_ms = int(time.time() * 1000)
        time.sleep(0.05)
        for stream_id in ("a", "b", "a"):
            producer.publish(ended(stream_id))
        producer.flush()
    assert sorted(c.event.stream_id for c in read_all(bus, [topic])) == ["a", "a", "b", "old"]
    assert sorted(c.event.stream_id for c in read_all(bus, [topic], since_ms=since_ms)) == ["a", "a", "b"]
    assert [c.event.stream_id for c in read_all(bus, [topic], since_ms=since_ms, key=b"a")] == ["a", "a"]
    assert list(read_all(bus, [topic], since_ms=int(time.time() * 1000) + 60_000)) == []  # nothing that recent


def test_reading_to_an_end_that_never_comes_gives_up_within_the_time_given(kafka_settings: Settings) -> None:
    kafka_settings.ensure_topics()
    bus, topic = kafka_settings.bus(), kafka_settings.topics().streams.name
    with bus.producer() as producer:
        producer.publish(ended("a"))
        producer.flush()
    with TopicLog(bus, [topic]) as topic_log:
        beyond = {where: end + 1 for where, end in topic_log.end_offsets().items()}
        started_at = time.monotonic()
        with pytest.raises(BusError, match="within 1 s"):
            for _batch in topic_log.read_until(beyond, within_s=1.0):
                pass
        assert time.monotonic() - started_at < 10
