"""Operator commands against a real broker: validated on the incident's history, appended as events, or refused
with a clear reason and nothing appended."""

from __future__ import annotations

import pytest

from actors.commands import IncidentCommands, InvalidCommand, InvalidTransition, UnknownIncident
from actors.incidents.engine import IncidentEngine
from config import Settings
from config.settings import IncidentConfig
from domain.incidents import fold_incidents
from events import Event
from events.catalogue import IncidentAcknowledged, IncidentEvent, IncidentOpened, IncidentResolved
from events.kafka.bus import Bus
from events.kafka.log import read_all
from tests.support.scenario import Scenario


def publish_incident(bus: Bus, stream_id: str, *, auto_resolve: bool = False) -> IncidentOpened:
    """An incident as the detector would record it: opened, and auto-resolved after quiet windows if asked."""
    story = Scenario(stream_id=stream_id)
    engine = IncidentEngine(
        IncidentConfig(quiet_period_s=5, merge_gap_s=5), clip_store=None, stores_audio=lambda _: True, clock=lambda: 0.0
    )
    windows = [story.score(0, 0.95)] + ([story.score(i) for i in range(1, 8)] if auto_resolve else [])
    events: list[Event] = [event for window in windows for event in engine.on_score(window)]
    with bus.producer() as producer:
        for event in events:
            producer.publish(event)
    opened = events[0]
    assert isinstance(opened, IncidentOpened)
    return opened


def incident_events(bus: Bus) -> list[IncidentEvent]:
    return [
        consumed.event
        for consumed in read_all(bus, [bus.catalogue.incidents.name])
        if isinstance(consumed.event, IncidentEvent)
    ]


@pytest.fixture
def bus(kafka_settings: Settings) -> Bus:
    kafka_settings.ensure_topics()
    return kafka_settings.bus()


def test_decisions_are_appended_with_who_and_why(bus: Bus) -> None:
    opened = publish_incident(bus, "lobby")
    publish_incident(bus, "lobby-2")  # another stream's incident must not be mistaken for this one
    commands = IncidentCommands(bus)
    ack = commands.acknowledge(opened.incident_id, actor="operator:ana", note="on my way")
    note = commands.add_note(opened.incident_id, actor="operator:ana", note="résident fine ✓\nback to bed")
    resolved = commands.resolve(opened.incident_id, actor="operator:ana", note="all good")
    assert isinstance(ack, IncidentAcknowledged) and isinstance(resolved, IncidentResolved)
    assert (ack.actor, ack.note, resolved.reason, resolved.note) == (
        "operator:ana",
        "on my way",
        "resolved by operator",
        "all good",
    )
    assert ack.stream_id == opened.stream_id and ack.correlation_id == opened.correlation_id
    assert ack.causation_id == opened.event_id and resolved.causation_id == note.event_id

    recorded = incident_events(bus)
    # Kafka orders events within a partition only, so the order is checked on this incident's stream alone.
    assert [event for event in recorded if event.stream_id == opened.stream_id][-3:] == [ack, note, resolved]
    record = fold_incidents(recorded)[opened.incident_id]
    assert (record.status, record.acknowledged_by, record.closed_by, record.close_reason) == (
        "resolved",
        "operator:ana",
        "operator:ana",
        "resolved by operator; all good",
    )


def test_unknown_and_closed_incidents_are_refused_and_nothing_is_appended(bus: Bus) -> None:
    opened = publish_incident(bus, "ward-1")
    commands = IncidentCommands(bus)
    commands.resolve(opened.incident_id, actor="operator:ben")
    before = incident_events(bus)
    with pytest.raises(InvalidTransition, match=r"cannot acknowledge incident .*: already resolved by operator:ben"):
        commands.acknowledge(opened.incident_id, actor="operator:ana")
    with pytest.raises(InvalidTransition, match="already resolved"):
        commands.resolve(opened.incident_id, actor="operator:ana")
    with pytest.raises(InvalidTransition, match="already resolved"):
        commands.mark_false_alarm(opened.incident_id, actor="operator:ana")
    with pytest.raises(UnknownIncident, match="no such incident was ever opened"):
        commands.acknowledge("ward-1:0123456789ab", actor="operator:ana")
    with pytest.raises(UnknownIncident, match="malformed incident id"):
        commands.add_note("42", actor="operator:ana", note="hello")
    assert incident_events(bus) == before
    commands.add_note(opened.incident_id, actor="operator:ana", note="notes stay possible")
    assert len(incident_events(bus)) == len(before) + 1


def test_a_false_alarm_may_follow_an_automatic_resolution_but_not_an_acknowledgement_twice(bus: Bus) -> None:
    auto = publish_incident(bus, "yard", auto_resolve=True)
    assert fold_incidents(incident_events(bus))[auto.incident_id].closed_by == "system"
    commands = IncidentCommands(bus)
    dismissed = commands.mark_false_alarm(auto.incident_id, actor="operator:chi", note="a door")
    assert fold_incidents(incident_events(bus))[auto.incident_id].status == "false_alarm"
    with pytest.raises(InvalidTransition, match="already marked a false alarm by operator:chi"):
        commands.mark_false_alarm(auto.incident_id, actor="operator:chi")
    assert dismissed.note == "a door"

    opened = publish_incident(bus, "gate")
    commands.acknowledge(opened.incident_id, actor="operator:chi")
    with pytest.raises(InvalidTransition, match="already acknowledged by operator:chi"):
        commands.acknowledge(opened.incident_id, actor="operator:dan")


@pytest.mark.parametrize(
    ("actor", "note", "problem"),
    [
        ("", "", "must not be empty"),
        ("system", "", "reserved"),
        ("operator:\x1b[31m", "", "control characters"),
        ("x" * 129, "", "at most 128"),
        ("operator:ana", "n" * 4001, "at most 4000"),
        ("operator:ana", "bell\x07", "control characters"),
    ],
)
def test_malformed_commands_are_refused_before_anything_is_read(bus: Bus, actor: str, note: str, problem: str) -> None:
    with pytest.raises(InvalidCommand, match=problem):
        IncidentCommands(bus).acknowledge("ward-1:0123456789ab", actor=actor, note=note)
    with pytest.raises(InvalidCommand, match="must not be empty"):
        IncidentCommands(bus).add_note("ward-1:0123456789ab", actor="operator:ana", note="  ")
