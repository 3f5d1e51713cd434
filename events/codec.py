"""Strict codec for events: bytes on Kafka <-> typed, frozen event objects, built on msgspec.

Events travel as canonical MessagePack (sorted keys): bytes fields such as PCM audio as raw binary, not as base64
text a third larger; timestamps as RFC 3339 text, so their UTC offset survives. The document keeps the envelope
of the earlier JSON format (type, version, envelope fields, payload). Messages already on the topics in that
format (canonical JSON, bytes as base64) still decode: a JSON object starts with ``{``, which no MessagePack map
does, so the format is told from the first byte (the ``content_type`` header names it for tools; the consumers
only see the value).

Decoding never trusts the wire: msgspec checks each field against the event class's type hints while it parses
(strictly: no bool for an int, no string for a number, timestamps must carry a timezone); unknown or missing
fields are errors, and older schema versions are upcast as dicts before validation. Events stay the frozen
dataclasses of ``events.base``: each class gets a generated msgspec ``Struct`` mirroring its fields, used only to
validate, and the event is filled from it. Every failure is a ``CodecError`` subclass so a consumer can
dead-letter the message instead of crashing.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any

import msgspec

from events.base import ENVELOPE_FIELDS, Event
from events.upcasting import UpcasterRegistry

CONTENT_TYPE = "application/vnd.distress.event+msgpack"
LEGACY_CONTENT_TYPE = "application/vnd.distress.event+json"  # what the topics hold from before MessagePack


class CodecError(Exception):
    """A message could not be turned into an event (or an event into a message)."""


class MalformedMessage(CodecError):
    """The bytes are not a MessagePack (or legacy JSON) object with a valid event envelope."""


class UnknownEventType(CodecError):
    """The envelope names an event type this build does not know."""


class UnsupportedSchemaVersion(CodecError):
    """The schema version is newer than this build, or no upcaster path leads to the current version."""


class InvalidPayload(CodecError):
    """A field is missing, unexpected or of the wrong type."""


_Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]  # naive times are refused, as Event refuses them


class _Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The document around every payload; its value fields are ``Event``'s envelope fields."""

    type: str
    version: Annotated[int, msgspec.Meta(ge=1)]
    event_id: str
    occurred_at: _Timestamp
    stream_id: str
    correlation_id: str | None
    causation_id: str | None
    payload: msgspec.Raw  # decoded in a second step, once the type and version say into what


_Assemble = Callable[[Any, dict[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class _Format:
    """One wire format: its envelope decoder, its untyped decoder (for upcasting) and typed decoder factory."""

    name: str
    envelope: Callable[[bytes], _Envelope]
    untyped: Callable[[bytes], Any]
    typed: Callable[[type], Callable[[bytes], Any]]


_MSGPACK = _Format(
    "MessagePack",
    msgspec.msgpack.Decoder(_Envelope).decode,
    msgspec.msgpack.Decoder().decode,
    lambda cls: msgspec.msgpack.Decoder(cls).decode,
)
_JSON = _Format(
    "JSON",
    msgspec.json.Decoder(_Envelope).decode,
    msgspec.json.Decoder().decode,
    lambda cls: msgspec.json.Decoder(cls).decode,
)


@dataclasses.dataclass(frozen=True)
class _Schema:
    """What decoding one event class needs, built once per class."""

    version: int
    payload: type[msgspec.Struct]
    decoders: dict[str, Callable[[bytes], Any]]  # format name -> typed payload decoder
    assemble: _Assemble

    @classmethod
    def of(cls, event_class: type[Event]) -> _Schema:
        payload = _mirror_struct(event_class, skip=ENVELOPE_FIELDS)
        return cls(
            version=event_class.schema_version,
            payload=payload,
            decoders={wire.name: wire.typed(payload) for wire in (_MSGPACK, _JSON)},
            assemble=_assembler(event_class, skip=ENVELOPE_FIELDS),
        )


class EventCodec:
    """Encodes events to canonical MessagePack and decodes them (or legacy JSON) back, upcasting old versions."""

    def __init__(self, event_types: Iterable[type[Event]], upcasters: UpcasterRegistry | None = None) -> None:
        self._types: dict[str, type[Event]] = {}
        for event_type in event_types:
            name = event_type.event_type
            if name in self._types:
                raise ValueError(f"event type {name!r} registered twice")
            self._types[name] = event_type
        self._schemas = {name: _Schema.of(event_type) for name, event_type in self._types.items()}
        self._upcasters = upcasters or UpcasterRegistry()
        self._encoder = msgspec.msgpack.Encoder(order="sorted")  # canonical: equal events give equal bytes

    @property
    def event_types(self) -> Mapping[str, type[Event]]:
        return types.MappingProxyType(self._types)

    # ------------------------------------------------------------------------------------------- encode

    def encode(self, event: Event) -> bytes:
        if self._types.get(event.event_type) is not type(event):
            raise UnknownEventType(f"cannot encode unregistered event type {type(event).__name__}")
        # Value objects become maps, timestamps RFC 3339 text, tuples arrays; bytes stay bytes (MessagePack bin).
        payload = msgspec.to_builtins(event, builtin_types=(bytes,))
        if not _finite(payload):
            raise InvalidPayload(f"{event.event_type}: NaN or infinity in a float field")
        document = {name: payload.pop(name) for name in ENVELOPE_FIELDS}
        document.update(type=event.event_type, version=event.schema_version, payload=payload)
        return self._encoder.encode(document)

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
        wire = _JSON if data[:1] == b"{" else _MSGPACK
        try:
            envelope = wire.envelope(data)
        except msgspec.ValidationError as error:  # a DecodeError too: caught first
            message, path = _split(error)
            if path.lstrip(".") not in ENVELOPE_FIELDS:
                raise MalformedMessage(f"bad envelope: {error}") from error
            raise InvalidPayload(f"{_type_named_in(data, wire)}{path}: {message}") from error
        except msgspec.DecodeError as error:
            raise MalformedMessage(f"not valid {wire.name}: {error}") from error
        name, version = envelope.type, envelope.version
        schema = self._schemas.get(name)
        if schema is None:
            raise UnknownEventType(f"unknown event type {name!r}")
        if version > schema.version:
            raise UnsupportedSchemaVersion(f"{name} v{version} is newer than supported v{schema.version}")
        try:
            if version == schema.version:
                payload = schema.decoders[wire.name](envelope.payload)
            else:
                payload = msgspec.convert(self._upcast(wire, envelope, schema.version), schema.payload, strict=True)
        except msgspec.ValidationError as error:
            message, path = _split(error)
            raise InvalidPayload(f"{name}{path}: {message}") from error
        except msgspec.DecodeError as error:
            raise MalformedMessage(f"not valid {wire.name}: {error}") from error
        try:
            event: Event = schema.assemble(
                payload,
                {  # in Event's field order
                    "stream_id": envelope.stream_id,
                    "event_id": envelope.event_id,
                    "occurred_at": envelope.occurred_at,
                    "correlation_id": envelope.correlation_id,
                    "causation_id": envelope.causation_id,
                },
            )
        except (TypeError, ValueError) as error:  # __post_init__ checks, such as an empty stream id
            raise InvalidPayload(f"{name}: {error}") from error
        return event

    def _upcast(self, wire: _Format, envelope: _Envelope, target: int) -> dict[str, Any]:
        """An old version's payload as a dict, lifted to ``target``. Upcasters see the payload as the wire holds
        it: bytes are base64 text in legacy JSON and bytes in MessagePack; timestamps are RFC 3339 text in both."""
        payload = wire.untyped(envelope.payload)
        if not isinstance(payload, dict):
            raise MalformedMessage(f"envelope field 'payload' must be an object, got {type(payload).__name__}")
        try:
            return self._upcasters.upcast(envelope.type, envelope.version, target, payload)
        except LookupError as error:
            raise UnsupportedSchemaVersion(str(error)) from error


def _type_named_in(data: bytes, wire: _Format) -> str:
    """The event type a message with a bad envelope field names, to start the field path of the error with."""
    document = wire.untyped(data)  # it parsed once already
    name = document.get("type") if isinstance(document, dict) else None
    return name if isinstance(name, str) else "envelope"


def _split(error: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec's "Expected `int`, got `str` - at `$.labels[0].score`" as (message, ".labels[0].score")."""
    message, _, path = str(error).partition(" - at `$")
    return message, path.removesuffix("`")


def _finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a ``to_builtins`` tree: JSON could not carry them, so no event holds one."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        return all(_finite(item) for item in value.values())
    if kind is list or kind is tuple:
        return all(_finite(item) for item in value)
    return True


# ---------------------------------------------------------------------------------- mirrors and assembly


_MIRRORS: dict[tuple[type, tuple[str, ...]], type[msgspec.Struct]] = {}


def _mirror_struct(cls: type, skip: tuple[str, ...] = ()) -> type[msgspec.Struct]:
    """A msgspec Struct with the init fields of dataclass ``cls`` (less ``skip``), refusing unknown fields; built
    once per class, so that a value type has one mirror wherever it is used."""
    mirror = _MIRRORS.get((cls, skip))
    if mirror is None:
        mirror = _MIRRORS[cls, skip] = _build_mirror_struct(cls, skip)
    return mirror


def _build_mirror_struct(cls: type, skip: tuple[str, ...]) -> type[msgspec.Struct]:
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field in dataclasses.fields(cls):
        if not field.init or field.name in skip:
            continue
        hint = _mirror(hints[field.name])
        if field.default is not dataclasses.MISSING:
            fields.append((field.name, hint, field.default))
        elif field.default_factory is not dataclasses.MISSING:
            fields.append((field.name, hint, msgspec.field(default_factory=field.default_factory)))
        else:
            fields.append((field.name, hint))
    # gc=False: mirrors live only while an event is built and never form cycles, so the collector need not track
    # them (a rebuild allocates millions; tracked, they trigger collections of the reader's whole heap)
    return msgspec.defstruct(f"{cls.__name__}Wire", fields, kw_only=True, forbid_unknown_fields=True, gc=False)


def _mirror(hint: Any) -> Any:
    """The type msgspec validates a field against: value dataclasses become mirror Structs, times must be aware."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _mirror(_optional_inner(hint)) | None
    if origin is tuple:
        return tuple[_mirror(_tuple_item(hint)), ...]  # type: ignore[misc]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _mirror_struct(hint)
    if hint is datetime:
        return _Timestamp
    if hint in (str, int, bool, float, bytes):
        return hint
    if origin is typing.Literal and all(isinstance(arg, str) for arg in typing.get_args(hint)):
        return hint  # travels as its string; decoding refuses any other word
    raise TypeError(f"unsupported field type {hint!r}")


def _optional_inner(hint: Any) -> Any:
    options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if len(options) != 1:
        raise TypeError(f"only 'X | None' unions are supported, not {hint}")
    return options[0]


def _tuple_item(hint: Any) -> Any:
    args = typing.get_args(hint)
    if len(args) != 2 or args[1] is not Ellipsis:
        raise TypeError(f"only homogeneous tuple[X, ...] is supported, not {hint}")
    return args[0]


def _assembler(cls: type, skip: tuple[str, ...] = ()) -> _Assemble:
    """Builds a ``cls`` from its validated mirror Struct and a fresh dict of the fields given apart, which come
    first in ``cls`` (an event's envelope: the base class's fields), in their field order."""
    hints = typing.get_type_hints(cls)
    construct = _constructor(cls)
    converters = [
        (field.name, convert)
        for field in dataclasses.fields(cls)
        if field.init and field.name not in skip and (convert := _converter(hints[field.name])) is not None
    ]
    as_dict = msgspec.structs.asdict

    def assemble(value: Any, arguments: dict[str, Any]) -> Any:
        arguments.update(as_dict(value))
        for name, convert in converters:
            arguments[name] = convert(arguments[name])
        return construct(arguments)

    return assemble


def _converter(hint: Any) -> Callable[[Any], Any] | None:
    """Turns a validated value of the mirror type back into one of ``hint`` (None: it already is one)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        inner = _converter(_optional_inner(hint))
        return None if inner is None else lambda value: None if value is None else inner(value)
    if origin is tuple:
        item = _converter(_tuple_item(hint))
        return None if item is None else lambda value: tuple([item(element) for element in value])
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        assemble, mirror = _assembler(hint), _mirror_struct(hint)
        # a field default may already be a value object rather than its mirror
        return lambda value: assemble(value, {}) if type(value) is mirror else value
    return None


def _constructor(cls: type) -> Callable[[dict[str, Any]], Any]:
    """``cls(**arguments)`` for arguments already validated, complete and in field order, without ``__init__``.

    A frozen dataclass's ``__init__`` sets every field through ``object.__setattr__``, which costs more than
    msgspec's decoding; filling the instance dict at once and running ``__post_init__`` gives the same object.
    The mirror Structs fill in defaults, so every field is among the arguments, and ``_assembler`` passes them in
    field order, as ``__init__`` would set them: projections write ``vars()`` of value objects as JSON, so the
    order is part of the stored text. Classes that do not fit that pattern are constructed normally.
    """
    post_init = getattr(cls, "__post_init__", None)
    params = getattr(cls, "__dataclass_params__", None)
    if (
        params is None
        or not params.init
        or hasattr(cls, "__slots__")
        or not all(f.init for f in dataclasses.fields(cls))
        or (post_init is not None and len(inspect.signature(post_init).parameters) != 1)  # InitVars
    ):
        return lambda arguments: cls(**arguments)

    def construct(arguments: dict[str, Any]) -> Any:
        instance: Any = object.__new__(cls)
        instance.__dict__.update(arguments)
        if post_init is not None:
            post_init(instance)
        return instance

    return construct
