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
FieldDecoder = Callable[[JsonValue], Any]


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
        event: Event = _decode_with_path(_decoder_for(event_class), {**envelope, **payload}, name)
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


class _FieldError(Exception):
    """A decoding problem and the field path leading to it, built up only while the error propagates."""

    def __init__(self, message: str, *path: str) -> None:
        super().__init__(message)
        self.message = message
        self.path = list(path)

    def within(self, part: str) -> _FieldError:
        self.path.insert(0, part)
        return self


_DECODERS: dict[type, FieldDecoder] = {}


def _decoder_for(cls: type) -> FieldDecoder:
    """A validating decoder for a dataclass (an event or a value type), built once per class."""
    decoder = _DECODERS.get(cls)
    if decoder is None:
        decoder = _DECODERS[cls] = _build_decoder(cls)
    return decoder


def _build_decoder(cls: type) -> FieldDecoder:
    hints = typing.get_type_hints(cls)
    fields = {f.name: _decoder_of(hints[f.name]) for f in dataclasses.fields(cls) if f.init}
    required = frozenset(f.name for f in dataclasses.fields(cls)
                         if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    names = frozenset(fields)

    def decode(value: JsonValue) -> Any:
        if not isinstance(value, dict):
            raise _FieldError(f"expected an object, got {type(value).__name__}")
        keys = value.keys()
        if not (required <= keys <= names):
            unexpected, missing = sorted(keys - names), sorted(required - keys)
            raise _FieldError(f"unexpected field(s) {unexpected}" if unexpected else f"missing field(s) {missing}")
        arguments = {}
        for name, item in value.items():
            try:
                arguments[name] = fields[name](item)
            except _FieldError as error:
                raise error.within(name) from None
        try:
            return cls(**arguments)
        except (TypeError, ValueError) as error:
            raise _FieldError(str(error)) from error

    return decode


def _decode_with_path(decoder: FieldDecoder, value: JsonValue, root: str) -> Any:
    """Run a decoder, turning a field error into an ``InvalidPayload`` that names the field's full path."""
    try:
        return decoder(value)
    except _FieldError as error:
        path = "".join(part if part.startswith("[") else f".{part}" for part in error.path)
        raise InvalidPayload(f"{root}{path}: {error.message}") from error


def _decoder_of(hint: Any) -> FieldDecoder:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(options) != 1:
            raise TypeError(f"only 'X | None' unions are supported, not {hint}")
        inner = _decoder_of(options[0])
        return lambda value: None if value is None else inner(value)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"only homogeneous tuple[X, ...] is supported, not {hint}")
        item = _decoder_of(args[0])

        def decode_tuple(value: JsonValue) -> tuple[Any, ...]:
            if not isinstance(value, list):
                raise _FieldError(f"expected a list, got {type(value).__name__}")
            decoded = []
            for index, element in enumerate(value):
                try:
                    decoded.append(item(element))
                except _FieldError as error:
                    raise error.within(f"[{index}]") from None
            return tuple(decoded)

        return decode_tuple
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decoder_for(hint)
    scalar = _SCALAR_DECODERS.get(hint)
    if scalar is None:
        raise TypeError(f"unsupported field type {hint!r}")
    return scalar


def _expect(kind: type, label: str) -> FieldDecoder:
    exact = kind is not int  # JSON integers arrive as int; bool is a subclass of int and must be refused

    def decode(value: JsonValue) -> Any:
        if type(value) is kind or (exact and isinstance(value, kind)):
            return value
        raise _FieldError(f"expected {label}, got {type(value).__name__}")

    return decode


def _decode_float(value: JsonValue) -> float:
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    raise _FieldError(f"expected a number, got {kind.__name__}")


def _decode_bytes(value: JsonValue) -> bytes:
    if type(value) is not str:
        raise _FieldError(f"expected base64 text, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as error:
        raise _FieldError(f"invalid base64: {error}") from error


def _decode_datetime(value: JsonValue) -> datetime:
    if type(value) is not str:
        raise _FieldError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise _FieldError(f"invalid timestamp {value!r}") from error
    if moment.tzinfo is None:
        raise _FieldError(f"timestamp {value!r} has no timezone")
    return moment


_SCALAR_DECODERS: dict[Any, FieldDecoder] = {
    str: _expect(str, "a string"),
    int: _expect(int, "an integer"),
    bool: _expect(bool, "a boolean"),
    float: _decode_float,
    bytes: _decode_bytes,
    datetime: _decode_datetime,
}
