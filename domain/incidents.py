"""An incident as the event log tells it: the record folded from its events, the rules that refuse an operator's
action, and the ids that tie an incident's events together.

Concurrency policy. Incident events have two writers: the incident engine (``actors.incidents``: opened, updated,
escalated, resolved by ``system``, system notes) and operator commands (``actors.commands``, the CLI and the
dashboard: acknowledged, resolved, false alarm, notes). Neither takes a lock nor appends with an expected version.
Both append to the incidents topic keyed by stream (an incident id names its stream), so one partition holds every
event of an incident in one order, and that order is the truth. A command checks ``refusal`` against the history it
read, which may already be stale when it appends; so ``fold_incident`` applies the same rules again at each event's
place in the log, and an event the state there forbids changes nothing, for every reader alike (the projection,
the engine's restore, the next command): the first writer wins. Hence a resolution racing an auto-resolution is a
no-op, an escalation after the close is ignored, severity never decreases, and a repeated opening is dropped. The
one exception is deliberate: a false alarm may follow an auto-resolution (see ``refusal``). The engine learns of
operator closes from the same topic (``IncidentEngine.on_incident_event``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from domain.types import CLOSED_STATUSES, SYSTEM_ACTOR, IncidentAction, IncidentStatus, Severity, severity_rank
from events.base import Event
from events.catalogue import (
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentEvent,
    IncidentMarkedFalseAlarm,
    IncidentNoteAdded,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    LabelScore,
    PhraseHit,
)

_EVENT_ID_NAMESPACE: Final = uuid.UUID("5b0c8f5e-3f4d-4f55-9d52-6a1f3e0c2b71")


def incident_id_for(stream_id: str, trigger_event_id: str) -> str:
    """``<stream>:<12 hex>``: deterministic per triggering window, and the stream prefix lets a reader find an
    incident's events by Kafka key without decoding the whole topic."""
    return f"{stream_id}:{uuid.uuid5(_EVENT_ID_NAMESPACE, trigger_event_id).hex[:12]}"


def stream_of_incident(incident_id: str) -> str:
    stream_id, separator, suffix = incident_id.rpartition(":")
    if not separator or not stream_id or len(suffix) != 12:
        raise ValueError(f"malformed incident id {incident_id!r}: expected '<stream>:<12 hex digits>'")
    return stream_id


def derived_event_id(cause_event_id: str, transition: str, incident_id: str) -> str:
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{cause_event_id}/{transition}/{incident_id}"))


@dataclass(frozen=True, kw_only=True)
class IncidentRecord:
    """The current state of one incident, folded from its events (the projection row, the command check)."""

    incident_id: str
    stream_id: str
    correlation_id: str | None
    status: IncidentStatus
    severity: Severity
    score: float
    reason: str
    onset_sample: int
    onset_at: datetime
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    close_reason: str | None = None
    labels: tuple[LabelScore, ...] = ()
    phrases: tuple[PhraseHit, ...] = ()
    transcript: str = ""
    clip_sha256: str | None = None
    clip_duration_s: float | None = None

    @property
    def closed(self) -> bool:
        return self.status in CLOSED_STATUSES

    def evolve(self, **changes: Any) -> IncidentRecord:
        """A copy with some fields changed. Unlike ``dataclasses.replace`` it does not re-run ``__init__`` over
        every field: folding is the projection's hot path, and a record has no validation to re-run."""
        unknown = changes.keys() - self.__dict__.keys()
        if unknown:
            raise TypeError(f"IncidentRecord has no field(s) {sorted(unknown)}")
        copy = object.__new__(IncidentRecord)
        copy.__dict__.update(self.__dict__, **changes)
        return copy


def refusal(record: IncidentRecord, action: IncidentAction) -> str | None:
    """Why an operator action is not allowed in the incident's current state, or None when it is.

    Notes are always allowed. A false alarm may still be declared after the *system* auto-resolved an incident:
    operators often review after the sound stopped, and that verdict feeds the scorer's threshold. Once an
    operator has resolved or dismissed an incident it is closed for good.
    """
    if action == "note":
        return None
    if action not in ("acknowledge", "resolve", "false_alarm"):
        raise ValueError(f"unknown incident action {action!r}")
    if record.status == "open":
        return None
    if record.status == "acknowledged":
        return f"already acknowledged by {record.acknowledged_by}" if action == "acknowledge" else None
    if record.status == "resolved":
        if action == "false_alarm" and record.closed_by == SYSTEM_ACTOR:
            return None
        return f"already resolved by {record.closed_by} at {_when(record.closed_at)}"
    return f"already marked a false alarm by {record.closed_by} at {_when(record.closed_at)}"


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "an unknown time"


_ACTION_OF: dict[type[IncidentEvent], IncidentAction] = {
    IncidentAcknowledged: "acknowledge",
    IncidentResolved: "resolve",
    IncidentMarkedFalseAlarm: "false_alarm",
    IncidentNoteAdded: "note",
}


def fold_incident(record: IncidentRecord | None, event: IncidentEvent) -> IncidentRecord | None:
    """The state after one more event. Pure; a repeated opening or a transition the state forbids changes nothing."""
    if isinstance(event, IncidentOpened):
        if record is not None:
            return record
        return IncidentRecord(
            incident_id=event.incident_id,
            stream_id=event.stream_id,
            correlation_id=event.correlation_id,
            status="open",
            severity=event.severity,
            score=event.score,
            reason=event.reason,
            onset_sample=event.onset_sample,
            onset_at=event.onset_at,
            opened_at=event.occurred_at,
            updated_at=event.occurred_at,
            labels=event.labels,
            phrases=event.phrases,
            transcript=event.transcript,
            clip_sha256=event.clip_sha256,
            clip_duration_s=event.clip_duration_s,
        )
    if record is None:
        return None
    when = event.occurred_at
    if isinstance(event, IncidentUpdated):
        return record.evolve(
            score=event.score,
            reason=event.reason,
            labels=event.labels,
            phrases=event.phrases,
            transcript=event.transcript,
            clip_sha256=event.clip_sha256,
            clip_duration_s=event.clip_duration_s,
            updated_at=when,
        )
    if isinstance(event, IncidentEscalated):
        if record.closed or severity_rank(event.to_severity) <= severity_rank(record.severity):
            return record
        return record.evolve(severity=event.to_severity, reason=event.reason, updated_at=when)
    action = _ACTION_OF.get(type(event))
    if action is None:
        raise TypeError(f"not an incident event: {type(event).__name__}")
    if refusal(record, action) is not None:
        return record
    if isinstance(event, IncidentAcknowledged):
        return record.evolve(status="acknowledged", acknowledged_at=when, acknowledged_by=event.actor, updated_at=when)
    if isinstance(event, IncidentResolved):
        return record.evolve(
            status="resolved",
            closed_at=when,
            closed_by=event.actor,
            close_reason=_joined(event.reason, event.note),
            updated_at=when,
        )
    if isinstance(event, IncidentMarkedFalseAlarm):
        return record.evolve(
            status="false_alarm",
            closed_at=when,
            closed_by=event.actor,
            close_reason=_joined("false alarm", event.note),
            updated_at=when,
        )
    return record.evolve(updated_at=when)  # a note


def fold_incidents(events: Iterable[Event]) -> dict[str, IncidentRecord]:
    """Every incident's state from a sequence of events (non-incident events are ignored)."""
    records: dict[str, IncidentRecord] = {}
    for event in events:
        if isinstance(event, IncidentEvent):
            folded = fold_incident(records.get(event.incident_id), event)
            if folded is not None:
                records[event.incident_id] = folded
    return records


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)
