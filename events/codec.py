"""Strict JSON codec for events: bytes on Kafka <-> typed, frozen event objects.

Decoding never trusts the wire: every field is checked against the event class's type hints, unknown or missing
fields are errors, and older schema versions are upcast before validation. Every failure is a ``CodecError``
subclass so a consumer can dead-letter the message instead of crashing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from events.base import ENVELOPE_FIELDS, Event
from events.upcasting import UpcasterRegistry

CONTENT_TYPE = "application/vnd.distress.event+json"


class CodecError(Exception):
    """A message could not be turned into an event (or an event into a message)."""


class MalformedMessage(CodecError):
    """The bytes are not a JSON object with a valid event envelope."""


class UnknownEventType(CodecError):
    """The envelope names an event type this build does not know."""


class UnsupportedSchemaVersion(CodecError):
    """The schema version is newer than this build, or no upcaster path leads to the current version."""


class InvalidPayload(CodecError):
    """A field is missing, unexpected or of the wrong type."""


JsonValue = Any
FieldDecoder = Callable[[JsonValue, str], Any]


class EventCodec:
    """Encodes events to canonical JSON bytes and decodes them back, upcasting old versions."""

    def __init__(self, event_types: Iterable[type[Event]], upcasters: UpcasterRegistry | None = None) -> None:
        self._types: dict[str, type[Event]] = {}
        for event_type in event_types:
            name = event_type.event_type
            if name in self._types:
                raise ValueError(f"event type {name!r} registered twice")
            self._types[name] = event_type
        self._upcasters = upcasters or UpcasterRegistry()

    @property
    def event_types(self) -> Mapping[str, type[Event]]:
        return types.MappingProxyType(self._types)

    # ------------------------------------------------------------------------------------------- encode

    def encode(self, event: Event) -> bytes:
        if self._types.get(event.event_type) is not type(event):
            raise UnknownEventType(f"cannot encode unregistered event type {type(event).__name__}")
        document = {
            "type": event.event_type,
            "version": event.schema_version,
            "event_id": event.event_id,
            "occurred_at": event.occurred_at.isoformat(),
            "stream_id": event.stream_id,
            "correlation_id": event.correlation_id,
            "causation_id": event.causation_id,
            "payload": {name: _to_json(value) for name, value in event.payload().items()},
        }
        try:
            return json.dumps(document, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
        except ValueError as error:  # NaN or infinity in a float field
            raise InvalidPayload(f"{event.event_type}: {error}") from error

    @staticmethod
    def headers(event: Event) -> list[tuple[str, bytes]]:
        """Kafka headers that let tools route or filter without decoding the value."""
        return [
            ("event_type", event.event_type.encode()),
            ("schema_version", str(event.schema_version).encode()),
            ("content_type", CONTENT_TYPE.encode()),
        ]

    # ------------------------------------------------------------------------------------------- decode

    def decode(self, data: bytes | None) -> Event:
        if data is None:
            raise MalformedMessage("message has no value (tombstone)")
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MalformedMessage(f"not valid JSON: {error}") from error
        if not isinstance(document, dict):
            raise MalformedMessage(f"expected a JSON object, got {type(document).__name__}")
        expected = {"type", "version", "payload", *ENVELOPE_FIELDS}
        if set(document) != expected:
            missing, extra = sorted(expected - set(document)), sorted(set(document) - expected)
            raise MalformedMessage(f"bad envelope: missing {missing}, unexpected {extra}")
        name, version, payload = document["type"], document["version"], document["payload"]
        if not isinstance(name, str):
            raise MalformedMessage("envelope field 'type' must be a string")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise MalformedMessage("envelope field 'version' must be a positive integer")
        if not isinstance(payload, dict):
            raise MalformedMessage("envelope field 'payload' must be an object")
        event_class = self._types.get(name)
        if event_class is None:
            raise UnknownEventType(f"unknown event type {name!r}")
        current = event_class.schema_version
        if version > current:
            raise UnsupportedSchemaVersion(f"{name} v{version} is newer than supported v{current}")
        if version < current:
            try:
                payload = self._upcasters.upcast(name, version, current, payload)
            except LookupError as error:
                raise UnsupportedSchemaVersion(str(error)) from error
        envelope = {key: document[key] for key in ENVELOPE_FIELDS}
        event: Event = _decoder_for(event_class)({**envelope, **payload}, name)
        return event


def _to_json(value: Any) -> JsonValue:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


_DECODERS: dict[type, FieldDecoder] = {}


def _decoder_for(cls: type) -> FieldDecoder:
    """A validating decoder for a dataclass (an event or a value type), built once per class."""
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = _build_decoder(cls)
    return decoder


def _build_decoder(cls: type) -> FieldDecoder:
    hints = typing.get_type_hints(cls)
    fields = {f.name: (_decoder_of(hints[f.name]), f.default is dataclasses.MISSING
                       and f.default_factory is dataclasses.MISSING)
              for f in dataclasses.fields(cls) if f.init}

    def decode(value: JsonValue, path: str) -> Any:
        if not isinstance(value, dict):
            raise InvalidPayload(f"{path}: expected an object, got {type(value).__name__}")
        unexpected = sorted(set(value) - set(fields))
        if unexpected:
            raise InvalidPayload(f"{path}: unexpected field(s) {unexpected}")
        missing = sorted(name for name, (_, required) in fields.items() if required and name not in value)
        if missing:
            raise InvalidPayload(f"{path}: missing field(s) {missing}")
        arguments = {name: fields[name][0](item, f"{path}.{name}") for name, item in value.items()}
        try:
            return cls(**arguments)
        except (TypeError, ValueError) as error:
            raise InvalidPayload(f"{path}: {error}") from error

    return decode


def _decoder_of(hint: Any) -> FieldDecoder:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(options) != 1:
            raise TypeError(f"only 'X | None' unions are supported, not {hint}")
        inner = _decoder_of(options[0])
        return lambda value, path: None if value is None else inner(value, path)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"only homogeneous tuple[X, ...] is supported, not {hint}")
        item = _decoder_of(args[0])

        def decode_tuple(value: JsonValue, path: str) -> tuple[Any, ...]:
            if not isinstance(value, list):
                raise InvalidPayload(f"{path}: expected a list, got {type(value).__name__}")
            return tuple(item(element, f"{path}[{index}]") for index, element in enumerate(value))

        return decode_tuple
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decoder_for(hint)
    scalar = _SCALAR_DECODERS.get(hint)
    if scalar is None:
        raise TypeError(f"unsupported field type {hint!r}")
    return scalar


def _expect(kinds: type | tuple[type, ...], label: str) -> FieldDecoder:
    def decode(value: JsonValue, path: str) -> Any:
        if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            raise InvalidPayload(f"{path}: expected {label}, got bool")
        if not isinstance(value, kinds):
            raise InvalidPayload(f"{path}: expected {label}, got {type(value).__name__}")
        return value

    return decode


def _decode_float(value: JsonValue, path: str) -> float:
    return float(_expect((int, float), "a number")(value, path))


def _decode_bytes(value: JsonValue, path: str) -> bytes:
    text = _expect(str, "base64 text")(value, path)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise InvalidPayload(f"{path}: invalid base64: {error}") from error


def _decode_datetime(value: JsonValue, path: str) -> datetime:
    text = _expect(str, "an ISO 8601 timestamp")(value, path)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidPayload(f"{path}: invalid timestamp {text!r}") from error
    if moment.tzinfo is None:
        raise InvalidPayload(f"{path}: timestamp {text!r} has no timezone")
    return moment


_SCALAR_DECODERS: dict[Any, FieldDecoder] = {
    str: _expect(str, "a string"),
    int: _expect(int, "an integer"),
    bool: _expect(bool, "a boolean"),
    float: _decode_float,
    bytes: _decode_bytes,
    datetime: _decode_datetime,
}
