"""The event base class: every fact the system records is an immutable, typed, versioned value.

Subclasses are turned into frozen, keyword-only dataclasses automatically (as in pyeventsourcing), so an event
cannot be mutated after it is published and a forgotten decorator cannot produce a mutable event.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, dataclass_transform


def _uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7) that is also strictly increasing within this process.

    Python 3.11 has no uuid7; time ordering makes ids sortable in logs, tables and topic dumps.
    """
    global _last_uuid7_ms, _uuid7_counter
    with _uuid7_lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_uuid7_ms:
            _uuid7_counter += 1
            if _uuid7_counter >= 1 << 12:  # counter exhausted within one ms: borrow the next ms
                _last_uuid7_ms += 1
                _uuid7_counter = 0
            now_ms = _last_uuid7_ms
        else:
            _last_uuid7_ms = now_ms
            _uuid7_counter = 0
        counter = _uuid7_counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (now_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


_uuid7_lock = threading.Lock()
_last_uuid7_ms = 0
_uuid7_counter = 0


def new_event_id() -> str:
    """A fresh unique, time-ordered event id."""
    return str(_uuid7())


def utc_now() -> datetime:
    return datetime.now(UTC)


class EventDefinitionError(TypeError):
    """An event class breaks the rules every event type must follow."""


ENVELOPE_FIELDS = ("event_id", "occurred_at", "stream_id", "correlation_id", "causation_id")


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(dataclasses.field,))
@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event type.

    Envelope fields are common to all events; the fields a subclass declares are its typed payload.
    Concrete subclasses set ``event_type`` (the stable wire name) and ``schema_version`` (bumped together with
    an upcaster whenever the payload shape changes). Classes without ``event_type`` are abstract groupings.
    """

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    stream_id: str
    event_id: str = dataclasses.field(default_factory=new_event_id)
    occurred_at: datetime = dataclasses.field(default_factory=utc_now)
    correlation_id: str | None = None
    causation_id: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True, kw_only=True)(cls)
        if "event_type" in cls.__dict__:
            if not isinstance(cls.event_type, str) or not cls.event_type:
                raise EventDefinitionError(f"{cls.__name__}.event_type must be a non-empty string")
            if not isinstance(cls.schema_version, int) or cls.schema_version < 1:
                raise EventDefinitionError(f"{cls.__name__}.schema_version must be a positive int")

    def __post_init__(self) -> None:
        if not hasattr(type(self), "event_type"):
            raise EventDefinitionError(f"{type(self).__name__} is abstract: it declares no event_type")
        if not self.stream_id:
            raise ValueError(f"{type(self).__name__}.stream_id must be a non-empty string")
        if self.occurred_at.tzinfo is None:
            raise ValueError(f"{type(self).__name__}.occurred_at must be timezone-aware")

    def caused(self) -> dict[str, Any]:
        """Envelope arguments for an event caused by this one: same stream and correlation, causation = this."""
        return {
            "stream_id": self.stream_id,
            "correlation_id": self.correlation_id or self.event_id,
            "causation_id": self.event_id,
        }

    def payload(self) -> dict[str, Any]:
        """The subclass-declared fields (everything but the envelope), shallowly."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ENVELOPE_FIELDS}
