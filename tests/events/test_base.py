from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from events import Event, EventDefinitionError, new_event_id
from events.catalogue import IncidentAcknowledged, IncidentEvent, StreamEnded


def test_events_are_frozen_and_keyword_only() -> None:
    event = StreamEnded(stream_id="s", reason="eof", chunks=1, samples=16000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.chunks = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        StreamEnded("s", "eof", 1, 16000)  # type: ignore[call-arg, arg-type]


def test_envelope_defaults_are_filled() -> None:
    event = StreamEnded(stream_id="s", reason="eof", chunks=1, samples=16000)
    assert event.event_type == "StreamEnded" and event.schema_version == 1
    assert event.occurred_at.tzinfo is not None
    assert event.payload() == {"reason": "eof", "chunks": 1, "samples": 16000}


def test_abstract_events_cannot_be_instantiated() -> None:
    with pytest.raises(EventDefinitionError):
        IncidentEvent(stream_id="s", incident_id="i")


def test_subclasses_become_frozen_dataclasses_even_without_decorator() -> None:
    class Probe(Event):
        event_type = "Probe"
        value: int

    probe = Probe(stream_id="s", value=1)
    assert dataclasses.is_dataclass(probe)
    with pytest.raises(dataclasses.FrozenInstanceError):
        probe.value = 2  # type: ignore[misc]


def test_bad_definitions_and_values_are_rejected() -> None:
    with pytest.raises(EventDefinitionError):

        class NoName(Event):
            event_type = ""

    with pytest.raises(ValueError, match="stream_id"):
        StreamEnded(stream_id="", reason="eof", chunks=0, samples=0)
    with pytest.raises(ValueError, match="timezone"):
        StreamEnded(stream_id="s", occurred_at=datetime(2026, 1, 1), reason="eof", chunks=0, samples=0)


def test_event_ids_are_unique_and_time_ordered() -> None:
    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(identifier[14] == "7" for identifier in ids[:10])  # UUID version 7


def test_caused_links_correlation_and_causation() -> None:
    cause = StreamEnded(stream_id="s", reason="eof", chunks=0, samples=0)
    effect = IncidentAcknowledged(**cause.caused(), incident_id="i", actor="ana", note="")
    assert effect.causation_id == cause.event_id
    assert effect.correlation_id == cause.event_id
    assert effect.stream_id == "s"
