from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from events import (
    InvalidPayload,
    MalformedMessage,
    UnknownEventType,
    UnsupportedSchemaVersion,
    default_codec,
)
from events.catalogue import AudioChunkCaptured, DistressScored, StreamStarted
from events.codec import CONTENT_TYPE
from tests.events.samples import sample_events

CODEC = default_codec()
# What the JSON codec before MessagePack wrote for each of sample_events() (captured with it), as on the topics.
LEGACY_JSON = (Path(__file__).parent / "fixtures" / "legacy_json_events.jsonl").read_bytes().splitlines()


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


Document = dict[str, Any]
# wire format -> (the document of sample_events()[index] as that format holds it, the encoding of a document)
WIRES: dict[str, tuple[Callable[[int], Document], Callable[[Document], bytes]]] = {
    "msgpack": (lambda index: msgspec.msgpack.decode(CODEC.encode(sample_events()[index])), msgspec.msgpack.encode),
    "json": (lambda index: json.loads(LEGACY_JSON[index]), lambda document: json.dumps(document).encode()),
}


def _document(wire: str, event_index: int = 0) -> Document:
    return WIRES[wire][0](event_index)


def _decode(wire: str, document: Document) -> object:
    return CODEC.decode(WIRES[wire][1](document))


def test_legacy_json_messages_still_decode() -> None:
    samples = sample_events()
    assert len(LEGACY_JSON) == len(samples)
    for data, sample in zip(LEGACY_JSON, samples, strict=True):
        decoded = CODEC.decode(data)
        assert type(decoded) is type(sample)
        assert decoded.payload() == sample.payload()
        assert decoded.event_id == json.loads(data)["event_id"]
        assert decoded.occurred_at.tzinfo is not None
        assert CODEC.decode(CODEC.encode(decoded)) == decoded


def test_pcm_travels_as_raw_bytes() -> None:
    second = AudioChunkCaptured(
        stream_id="door",
        sequence=0,
        sample_offset=0,
        sample_rate=16000,
        captured_at=datetime(2026, 1, 1, tzinfo=UTC),
        pcm16=bytes(range(256)) * 125,
        clipped_samples=0,
        nonfinite_samples=0,
        is_last=False,
    )  # 1 s of 16 kHz PCM16
    data = CODEC.encode(second)
    assert len(data) < len(second.pcm16) + 400  # the legacy JSON took 4/3 of it (base64) plus the envelope
    assert second.pcm16 in data


def test_headers_name_the_wire_format() -> None:
    headers = dict(CODEC.headers(sample_events()[0]))
    assert headers["content_type"] == CONTENT_TYPE.encode() == b"application/vnd.distress.event+msgpack"
    assert headers["event_type"] == b"StreamStarted" and headers["schema_version"] == b"2"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b"null",
        b'{"type": "StreamEnded"}',
        b"{",
        None,
        msgspec.msgpack.encode({"type": "StreamEnded"}),
        msgspec.msgpack.encode([1, 2]),
        CODEC.encode(sample_events()[0])[:-3],
    ],
)
def test_malformed_bytes_raise_a_typed_error(data: bytes | None) -> None:
    with pytest.raises(MalformedMessage):
        CODEC.decode(data)


@pytest.mark.parametrize("wire", WIRES)
def test_unknown_type_and_newer_version_are_rejected(wire: str) -> None:
    document = _document(wire)
    document["type"] = "Teleported"
    with pytest.raises(UnknownEventType, match="Teleported"):
        _decode(wire, document)
    document = _document(wire)
    document["version"] = 99
    with pytest.raises(UnsupportedSchemaVersion, match="v99"):
        _decode(wire, document)


@pytest.mark.parametrize(
    ("wire", "field", "value", "message"),
    [
        *(
            (wire, field, value, message)
            for wire in WIRES
            for field, value, message in [
                ("sequence", "7", "Expected `int`, got `str`"),
                ("sequence", True, "Expected `int`, got `bool`"),
                ("captured_at", "2026-11-26T10:00:00", "Expected `datetime` with a timezone"),
                ("captured_at", "yesterday", "Invalid RFC3339"),
                ("is_last", 0, "Expected `bool`, got `int`"),
            ]
        ),
        ("json", "pcm16", "***not base64***", "Invalid base64"),
        ("msgpack", "pcm16", "AAEC", "Expected `bytes`, got `str`"),  # MessagePack carries bytes, never text
    ],
)
def test_wrong_field_types_name_the_field(wire: str, field: str, value: object, message: str) -> None:
    document = _document(wire, 3)  # AudioChunkCaptured
    document["payload"][field] = value
    with pytest.raises(InvalidPayload, match=message) as error:
        _decode(wire, document)
    assert f"AudioChunkCaptured.{field}:" in str(error.value)


@pytest.mark.parametrize("wire", WIRES)
def test_envelope_fields_are_validated(wire: str) -> None:
    document = _document(wire, 3)
    document["occurred_at"] = "2026-11-26T10:00:00"
    with pytest.raises(InvalidPayload, match=r"AudioChunkCaptured\.occurred_at: .*timezone"):
        _decode(wire, document)
    document = _document(wire, 3)
    document["stream_id"] = ""
    with pytest.raises(InvalidPayload, match="stream_id"):
        _decode(wire, document)
    document = _document(wire, 3)
    document["version"] = True
    with pytest.raises(MalformedMessage, match="version"):
        _decode(wire, document)


@pytest.mark.parametrize("wire", WIRES)
def test_missing_and_unexpected_fields_are_rejected(wire: str) -> None:
    document = _document(wire, 3)
    del document["payload"]["pcm16"]
    with pytest.raises(InvalidPayload, match=r"missing.*pcm16"):
        _decode(wire, document)
    document = _document(wire, 3)
    document["payload"]["volume"] = 11
    with pytest.raises(InvalidPayload, match=r"unknown field.*volume"):
        _decode(wire, document)
    document = _document(wire, 6)  # DistressScored: value objects refuse unknown fields too
    document["payload"]["labels"][0]["colour"] = "red"
    with pytest.raises(InvalidPayload, match=r"labels\[0\]: .*unknown field.*colour"):
        _decode(wire, document)


@pytest.mark.parametrize("wire", WIRES)
def test_nested_value_types_are_validated(wire: str) -> None:
    document = _document(wire, 6)  # DistressScored
    document["payload"]["labels"][0]["score"] = "high"
    with pytest.raises(InvalidPayload, match=r"labels\[0\]\.score"):
        _decode(wire, document)


def test_non_finite_numbers_cannot_be_encoded() -> None:
    event = next(event for event in sample_events() if isinstance(event, DistressScored))
    broken = DistressScored(**{**event.payload(), "stream_id": event.stream_id, "score": math.nan})
    with pytest.raises(InvalidPayload):
        CODEC.encode(broken)


@pytest.mark.parametrize("wire", WIRES)
def test_stored_v1_payload_decodes_as_current_version(wire: str) -> None:
    assert StreamStarted.schema_version == 2
    v1 = {
        "type": "StreamStarted",
        "version": 1,
        "event_id": "01a20000-0000-7000-8000-000000000001",
        "occurred_at": "2025-06-01T12:00:00+00:00",
        "stream_id": "door",
        "correlation_id": None,
        "causation_id": None,
        "payload": {
            "source": "rtsp://***@cam/***",
            "sample_rate": 16000,
            "chunk_samples": 16000,
            "source_sample_rate": 48000,
            "source_channels": 1,
            "realtime": True,
        },
    }
    event = _decode(wire, v1)
    assert isinstance(event, StreamStarted)
    assert event.source_kind == "url"
    assert event.event_id == v1["event_id"]
    assert msgspec.msgpack.decode(CODEC.encode(event))["version"] == 2
    v1["payload"]["realtime"] = "yes"  # type: ignore[index]
    with pytest.raises(InvalidPayload, match=r"StreamStarted\.realtime"):  # upcast payloads are validated too
        _decode(wire, v1)
