"""StageRunner on a real broker: outputs are published, offsets committed, and a restart resumes after them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from actors.stage import StageRunner
from config import Settings
from events import Event
from events.catalogue import IncidentNoteAdded, StreamEnded
from events.kafka.consumer import ConsumedEvent
from events.topics import TopicCatalogue
from tests.support.kafka import drain


class NoteEveryEnd:
    """Turns each StreamEnded into a note, and emits one 'tick' note per batch when asked to."""

    name = "note-every-end"

    def __init__(self, catalogue: TopicCatalogue) -> None:
        self.catalogue = catalogue
        self.seen: list[str] = []

    def input_topics(self) -> Sequence[str]:
        return [self.catalogue.streams.name]

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        self.seen.append(consumed.event.event_id)
        yield IncidentNoteAdded(**consumed.event.caused(), incident_id="i", actor="stage", note="ended")

    def tick(self) -> Iterable[Event]:
        return ()


def test_runner_publishes_commits_and_resumes(kafka_settings: Settings) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    ends = [StreamEnded(stream_id=f"s{index}", reason="eof", chunks=index, samples=0) for index in range(5)]
    with bus.producer() as producer:
        for event in ends[:3]:
            producer.publish(event)
    group = f"stage-{uuid.uuid4()}"
    first = NoteEveryEnd(bus.catalogue)
    runner = StageRunner(first, bus, group_id=group)
    while len(first.seen) < 3:
        runner.run_once()
    runner.close()

    with bus.producer() as producer:
        for event in ends[3:]:
            producer.publish(event)
    second = NoteEveryEnd(bus.catalogue)
    runner = StageRunner(second, bus, group_id=group)
    while len(second.seen) < 2:
        runner.run_once()
    runner.close()
    assert sorted(first.seen) == sorted(event.event_id for event in ends[:3])
    assert sorted(second.seen) == sorted(event.event_id for event in ends[3:])  # resumed after the commit

    with bus.producer() as producer:
        reader = bus.consumer(group_id=f"r-{uuid.uuid4()}", topics=[bus.catalogue.incidents.name], producer=producer)
        notes = drain(reader, 5)
        reader.close()
    assert sorted(consumed.event.causation_id or "" for consumed in notes) == sorted(e.event_id for e in ends)
