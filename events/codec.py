"""Strict JSON codec for events: bytes on Kafka <-> typed, frozen event objects.

Decoding never trusts the wire: every field is checked against the event class's type hints, unknown or missing
fields are errors, and older schema versions are upcast before validation. Every failure is a ``CodecError``
subclass so a consumer can dead-letter the message instead of crashing.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import inspect
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
            document = _JSON_DECODER.decode(data.decode())  # our encoder writes UTF-8: no encoding sniffing
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MalformedMessage(f"not valid JSON: {error}") from error
        if not isinstance(document, dict):
            raise MalformedMessage(f"expected a JSON object, got {type(document).__name__}")
        if document.keys() != _DOCUMENT_FIELDS:
            missing, extra = sorted(_DOCUMENT_FIELDS - document.keys()), sorted(document.keys() - _DOCUMENT_FIELDS)
            raise MalformedMessage(f"bad envelope: missing {missing}, unexpected {extra}")
        name, version, payload = document.pop("type"), document.pop("version"), document.pop("payload")
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
        document.update(payload)  # what is left of the document is the envelope; payload fields join it
        event: Event = _decode_with_path(_decoder_for(event_class), document, name)
        return event


_JSON_DECODER = json.JSONDecoder()
_DOCUMENT_FIELDS = frozenset({"type", "version", "payload", *ENVELOPE_FIELDS})


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
    init_fields = [f for f in dataclasses.fields(cls) if f.init]
    fields = {f.name: _decoder_of(hints[f.name]) for f in init_fields}
    kept_as_is = {f.name: _json_types_kept(hints[f.name]) for f in init_fields}
    required = frozenset(
        f.name for f in init_fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    names = frozenset(fields)
    construct = _constructor(cls)

    def decode(value: JsonValue) -> Any:
        if not isinstance(value, dict):
            raise _FieldError(f"expected an object, got {type(value).__name__}")
        keys = value.keys()
        if not (required <= keys <= names):
            unexpected, missing = sorted(keys - names), sorted(required - keys)
            raise _FieldError(f"unexpected field(s) {unexpected}" if unexpected else f"missing field(s) {missing}")
        arguments = dict(value)
        try:
            for name, item in value.items():
                if type(item) not in kept_as_is[name]:
                    arguments[name] = fields[name](item)
        except _FieldError as error:
            raise error.within(name) from None
        try:
            return construct(arguments)
        except (TypeError, ValueError) as error:
            raise _FieldError(str(error)) from error

    return decode


def _json_types_kept(hint: Any) -> frozenset[type]:
    """JSON value types that already are a valid value of ``hint`` (a str for a str field, None for an optional
    one): those are checked by their exact type alone, without a call to the field's decoder."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return frozenset().union(*(_json_types_kept(arg) for arg in typing.get_args(hint)))
    return frozenset({hint}) if hint in (str, int, bool, float, type(None)) else frozenset()


def _constructor(cls: type) -> Callable[[dict[str, Any]], Any]:
    """``cls(**arguments)`` for arguments already checked against the fields, without the generated ``__init__``.

    A frozen dataclass's ``__init__`` sets every field through ``object.__setattr__``, which costs more than all
    of the field checks; filling the instance dict at once and running ``__post_init__`` gives the same object.
    The dict is laid out in field order first (defaults in place), as ``__init__`` would: projections write
    ``vars()`` of value objects as JSON, so the order is part of the stored text. Classes that do not fit that
    pattern are constructed normally.
    """
    post_init = getattr(cls, "__post_init__", None)
    params = getattr(cls, "__dataclass_params__", None)
    if (
        params is None
        or not params.init
        or hasattr(cls, "__slots__")
        or (post_init is not None and len(inspect.signature(post_init).parameters) != 1)  # InitVars
    ):
        return lambda arguments: cls(**arguments)
    every_field = dataclasses.fields(cls)
    factories = [(f.name, f.default_factory) for f in every_field if f.default_factory is not dataclasses.MISSING]
    layout = {
        f.name: None if f.default is dataclasses.MISSING else f.default
        for f in every_field
        if f.init or f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }  # required fields are always among the arguments, fields with a factory get theirs below

    def construct(arguments: dict[str, Any]) -> Any:
        instance: Any = object.__new__(cls)
        state = instance.__dict__
        state.update(layout)
        state.update(arguments)  # existing keys keep their place
        for name, factory in factories:
            if name not in arguments:
                state[name] = factory()
        if post_init is not None:
            post_init(instance)
        return instance

    return construct


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
