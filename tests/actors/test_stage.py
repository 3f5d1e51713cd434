"""StageRunner on a real broker: outputs are published, offsets committed, and a restart resumes after them."""

from __future__ import annotations

import threading
import time
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


def test_replicas_joining_and_leaving_a_busy_group_handle_each_event_once(kafka_settings: Settings) -> None:
    """A replica that joins or leaves moves partitions between replicas while events flow; none may be handled
    twice (what `distress run` counts as scored chunks) and none lost."""
    bus = kafka_settings.bus()
    bus.ensure_topics()
    group = f"stage-{uuid.uuid4()}"
    stop_all = threading.Event()
    handled: list[str] = []

    def replica(stop: threading.Event) -> None:
        stage = NoteEveryEnd(bus.catalogue)
        stage.seen = handled  # every replica's handled events, as they happen
        runner = StageRunner(stage, bus, group_id=group)
        try:
            while not stop.is_set() and not stop_all.is_set():
                runner.run_once()
        finally:
            runner.close()

    published: list[str] = []
    steady = threading.Thread(target=replica, args=(threading.Event(),))
    with bus.producer() as producer:
        for round_ in range(4):
            leaving = threading.Event()
            visitor = threading.Thread(target=replica, args=(leaving,))
            visitor.start()
            if round_ == 0:
                steady.start()  # two replicas starting together, as `distress run` starts them
            for index in range(150):
                event = StreamEnded(stream_id=f"s{index % 8}", reason="eof", chunks=round_ * 1000 + index, samples=0)
                producer.publish(event)
                producer.flush()
                published.append(event.event_id)
                time.sleep(0.01)
            leaving.set()
            visitor.join(timeout=60)
        deadline = time.monotonic() + 60
        while len(set(handled)) < len(published) and time.monotonic() < deadline:
            time.sleep(0.2)  # the steady replica finishes the backlog
    stop_all.set()
    steady.join(timeout=60)
    assert sorted(set(handled)) == sorted(published)  # nothing lost
    assert len(handled) == len(published)  # nothing handled twice
