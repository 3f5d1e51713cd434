"""Immutable, versioned events and the Kafka plumbing that carries them. Imports nothing else of ours."""

from events.base import Event, EventDefinitionError, new_event_id
from events.catalogue import ALL_EVENT_TYPES
from events.codec import (
    CodecError,
    EventCodec,
    InvalidPayload,
    MalformedMessage,
    UnknownEventType,
    UnsupportedSchemaVersion,
)
from events.upcasting import UPCASTERS


def default_codec() -> EventCodec:
    """The codec for every event in the catalogue, with the registered upcasters."""
    return EventCodec(ALL_EVENT_TYPES, UPCASTERS)


__all__ = [
    "ALL_EVENT_TYPES",
    "UPCASTERS",
    "CodecError",
    "Event",
    "EventCodec",
    "EventDefinitionError",
    "InvalidPayload",
    "MalformedMessage",
    "UnknownEventType",
    "UnsupportedSchemaVersion",
    "default_codec",
    "new_event_id",
]
