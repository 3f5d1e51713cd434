from __future__ import annotations

import dataclasses
import json
import math

import pytest

from events import (
    InvalidPayload,
    MalformedMessage,
    UnknownEventType,
    UnsupportedSchemaVersion,
    default_codec,
)
from events.catalogue import DistressScored, StreamStarted
from tests.events.samples import sample_events

CODEC = default_codec()


@pytest.mark.parametrize("event", sample_events(), ids=lambda event: event.event_type)
def test_every_event_round_trips_exactly(event: object) -> None:
    data = CODEC.encode(event)  # type: ignore[arg-type]
    decoded = CODEC.decode(data)
    assert decoded == event
    assert type(decoded) is type(event)
    assert CODEC.encode(decoded) == data  # canonical: re-encoding gives the same bytes


def _fields_in_order(value: object) -> object:
    """Attribute names in instance-dict order, recursively (projections store ``vars()`` of values as JSON)."""
    if isinstance(value, tuple):
        return [_fields_in_order(item) for item in value]
    if dataclasses.is_dataclass(value):
        return [(name, _fields_in_order(item)) for name, item in vars(value).items()]
    return None


@pytest.mark.parametrize("event", sample_events(), ids=lambda event: event.event_type)
def test_decoded_events_lay_out_their_fields_like_constructed_ones(event: object) -> None:
    assert _fields_in_order(CODEC.decode(CODEC.encode(event))) == _fields_in_order(event)  # type: ignore[arg-type]


def _document(event_index: int = 0) -> dict[str, object]:
    return json.loads(CODEC.encode(sample_events()[event_index]))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xfe", b"not json", b"[1, 2]", b"null", b'{"type": "StreamEnded"}', None],
)
def test_malformed_bytes_raise_a_typed_error(data: bytes | None) -> None:
    with pytest.raises(MalformedMessage):
        CODEC.decode(data)


def test_unknown_type_and_newer_version_are_rejected() -> None:
    document = _document()
    document["type"] = "Teleported"
    with pytest.raises(UnknownEventType, match="Teleported"):
        CODEC.decode(json.dumps(document).encode())
    document = _document()
    document["version"] = 99
    with pytest.raises(UnsupportedSchemaVersion, match="v99"):
        CODEC.decode(json.dumps(document).encode())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sequence", "7", "expected an integer"),
        ("sequence", True, "got bool"),
        ("pcm16", "***not base64***", "invalid base64"),
        ("captured_at", "2026-11-26T10:00:00", "no timezone"),
        ("captured_at", "yesterday", "invalid timestamp"),
        ("is_last", 0, "expected a boolean"),
    ],
)
def test_wrong_field_types_name_the_field(field: str, value: object, message: str) -> None:
    document = _document(3)  # AudioChunkCaptured
    document["payload"][field] = value  # type: ignore[index]
    with pytest.raises(InvalidPayload, match=message) as error:
        CODEC.decode(json.dumps(document).encode())
    assert field in str(error.value)


def test_missing_and_unexpected_fields_are_rejected() -> None:
    document = _document(3)
    del document["payload"]["pcm16"]  # type: ignore[attr-defined]
    with pytest.raises(InvalidPayload, match=r"missing.*pcm16"):
        CODEC.decode(json.dumps(document).encode())
    document = _document(3)
    document["payload"]["volume"] = 11  # type: ignore[index]
    with pytest.raises(InvalidPayload, match=r"unexpected.*volume"):
        CODEC.decode(json.dumps(document).encode())


def test_nested_value_types_are_validated() -> None:
    document = _document(6)  # DistressScored
    document["payload"]["labels"][0]["score"] = "high"  # type: ignore[index]
    with pytest.raises(InvalidPayload, match=r"labels\[0\]\.score"):
        CODEC.decode(json.dumps(document).encode())


def test_non_finite_numbers_cannot_be_encoded() -> None:
    event = next(event for event in sample_events() if isinstance(event, DistressScored))
    broken = DistressScored(**{**event.payload(), "stream_id": event.stream_id, "score": math.nan})
    with pytest.raises(InvalidPayload):
        CODEC.encode(broken)


def test_stored_v1_payload_decodes_as_current_version() -> None:
    assert StreamStarted.schema_version == 2
    v1 = {
        "type": "StreamStarted",
        "version": 1,
        "event_id": "01a20000-0000-7000-8000-000000000001",
        "occurred_at": "2025-06-01T12:00:00+00:00",
        "stream_id": "door",
        "correlation_id": None,
        "causation_id": None,
        "payload": {"source": "rtsp://***@cam/***", "sample_rate": 16000, "chunk_samples": 16000,
                    "source_sample_rate": 48000, "source_channels": 1, "realtime": True},
    }
    event = CODEC.decode(json.dumps(v1).encode())
    assert isinstance(event, StreamStarted)
    assert event.source_kind == "url"
    assert event.event_id == v1["event_id"]
    assert json.loads(CODEC.encode(event))["version"] == 2
