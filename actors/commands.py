"""Operator commands on incidents: validated against the incident's history, then appended as events.

Nothing here writes SQL: the incidents topic is the audit trail (who did what, when) and the tables are projections
of it. The CLI uses this module now and the HTTP API will use it later, so both follow one code path.

The current state comes from the event log itself (not from a projection that may lag behind): the incident id
names its stream, events are keyed by stream, so only that stream's messages are decoded.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from domain.incidents import fold_incidents, refusal, stream_of_incident
from domain.types import SYSTEM_ACTOR, IncidentAction
from events.catalogue import (
    IncidentAcknowledged,
    IncidentEvent,
    IncidentMarkedFalseAlarm,
    IncidentNoteAdded,
    IncidentResolved,
)
from events.kafka.admin import KafkaProbe, MetricsError
from events.kafka.bus import Bus
from events.kafka.connection import BusError
from events.kafka.log import read_all

MAX_ACTOR_CHARS = 128
MAX_NOTE_CHARS = 4000
# An operator waits at most about this long for the event log before being told the command failed (reading the
# history of a broker that is down otherwise waits 30 s for metadata, and a delivery up to librdkafka's 5 min).
COMMAND_TIMEOUT_S = 3.0
_E = TypeVar("_E", bound=IncidentEvent)


class CommandRejected(Exception):
    """The command was refused; nothing was appended. The message says why."""


class UnknownIncident(CommandRejected):
    pass


class InvalidTransition(CommandRejected):
    pass


class InvalidCommand(CommandRejected, ValueError):
    """The command itself is malformed (actor, note)."""


class EventLogUnavailable(BusError):
    """The event log did not answer within the command's time bound. A delivery that timed out may still have
    been recorded, so the message says to look before repeating."""


class IncidentCommands:
    """acknowledge / resolve / mark_false_alarm / add_note, each returning the event it appended.

    Each command answers within about ``timeout_s``: the broker is asked with that bound before the history is
    read, and the appended event must be acknowledged within what is left of it.
    """

    def __init__(self, bus: Bus, *, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.bus = bus
        self.timeout_s = timeout_s

    def history(self, incident_id: str) -> list[IncidentEvent]:
        """Every event of one incident, in log order."""
        try:
            stream_id = stream_of_incident(incident_id)
        except ValueError as error:
            raise UnknownIncident(f"unknown incident {incident_id!r}: {error}") from error
        try:
            KafkaProbe(self.bus.connection, timeout_s=self.timeout_s).ping()
        except MetricsError as error:
            raise EventLogUnavailable(str(error)) from error
        return [
            consumed.event
            for consumed in read_all(self.bus, [self.bus.catalogue.incidents.name], key=stream_id.encode())
            if isinstance(consumed.event, IncidentEvent) and consumed.event.incident_id == incident_id
        ]

    def acknowledge(self, incident_id: str, *, actor: str, note: str = "") -> IncidentAcknowledged:
        return self._append(
            incident_id,
            "acknowledge",
            actor,
            note,
            lambda envelope: IncidentAcknowledged(**envelope, incident_id=incident_id, actor=actor, note=note),
        )

    def resolve(self, incident_id: str, *, actor: str, note: str = "") -> IncidentResolved:
        return self._append(
            incident_id,
            "resolve",
            actor,
            note,
            lambda envelope: IncidentResolved(
                **envelope, incident_id=incident_id, actor=actor, reason="resolved by operator", note=note
            ),
        )

    def mark_false_alarm(self, incident_id: str, *, actor: str, note: str = "") -> IncidentMarkedFalseAlarm:
        return self._append(
            incident_id,
            "false_alarm",
            actor,
            note,
            lambda envelope: IncidentMarkedFalseAlarm(**envelope, incident_id=incident_id, actor=actor, note=note),
        )

    def add_note(self, incident_id: str, *, actor: str, note: str) -> IncidentNoteAdded:
        if not note.strip():
            raise InvalidCommand("a note must not be empty")
        return self._append(
            incident_id,
            "note",
            actor,
            note,
            lambda envelope: IncidentNoteAdded(**envelope, incident_id=incident_id, actor=actor, note=note),
        )

    def _append(
        self, incident_id: str, action: IncidentAction, actor: str, note: str, build: Callable[[dict[str, Any]], _E]
    ) -> _E:
        _check_actor(actor)
        _check_note(note)
        deadline = time.monotonic() + self.timeout_s
        history = self.history(incident_id)
        record = fold_incidents(history).get(incident_id)
        if record is None:
            raise UnknownIncident(f"unknown incident {incident_id!r}: no such incident was ever opened")
        why_not = refusal(record, action)
        if why_not is not None:
            raise InvalidTransition(f"cannot {action.replace('_', ' ')} incident {incident_id}: {why_not}")
        event = build(_envelope(history))
        left_s = max(0.5, deadline - time.monotonic())
        try:
            with self.bus.producer(**{"message.timeout.ms": int(left_s * 1000)}) as producer:
                producer.publish(event)
                producer.flush(left_s)
        except BusError as error:
            raise EventLogUnavailable(
                f"the {action.replace('_', ' ')} was not confirmed by the event log within "
                f"{self.timeout_s:g} s ({error}); look at the incident before repeating "
                "it"
            ) from error
        return event


def _envelope(history: Sequence[IncidentEvent]) -> dict[str, Any]:
    """Same stream and correlation as the incident; caused by its latest event (the state the operator saw)."""
    latest = history[-1]
    return {
        "stream_id": latest.stream_id,
        "correlation_id": latest.correlation_id or latest.event_id,
        "causation_id": latest.event_id,
    }


def _check_actor(actor: str) -> None:
    if not actor.strip():
        raise InvalidCommand("the actor (who is doing this) must not be empty")
    if len(actor) > MAX_ACTOR_CHARS:
        raise InvalidCommand(f"the actor must be at most {MAX_ACTOR_CHARS} characters, got {len(actor)}")
    if actor.strip() == SYSTEM_ACTOR:
        raise InvalidCommand(f"the actor name {SYSTEM_ACTOR!r} is reserved for automatic decisions")
    if any(unicodedata.category(char).startswith("C") for char in actor):
        raise InvalidCommand("the actor must not contain control characters")


def _check_note(note: str) -> None:
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidCommand(f"a note must be at most {MAX_NOTE_CHARS} characters, got {len(note)}")
    if any(unicodedata.category(char) == "Cc" and char not in "\n\t" for char in note):
        raise InvalidCommand("a note must not contain control characters other than newlines and tabs")
