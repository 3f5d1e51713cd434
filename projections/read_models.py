"""The projections: which topics feed which tables, and how one batch of events changes them.

Every ``apply`` is idempotent - rows remember the offset of the last event that changed them (events of one
stream, hence of one incident or alert, share a partition), and append-only tables ignore rows they already have -
so applying an event twice changes nothing even without the checkpoint that normally prevents it. Each batch
loads the rows it touches once, folds all its events in memory, and writes them back with one batched upsert.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection, Dialect, Table

from domain.incidents import IncidentRecord, fold_incident
from events import Event
from events.base import ENVELOPE_FIELDS
from events.catalogue import (
    AlertDeferred,
    AlertDispatched,
    AlertEvent,
    AlertFailed,
    AlertRequested,
    DistressScored,
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
    StreamEnded,
    StreamFailed,
    StreamStarted,
    TranscriptProduced,
)
from events.kafka.consumer import ConsumedEvent
from events.topics import TopicCatalogue
from projections.database import PreparedRows, insert_missing, prepare_rows, select_by_key, upsert
from projections.schema import AlertRow, Base, IncidentRow, IncidentTimelineRow, StreamRow, TranscriptRow

TableMap = Mapping[str, Table]
Row = dict[str, Any]
State = TypeVar("State")


class Projection(Protocol):
    """A read model: its tables, the topics it is built from, and how a batch of their events changes it.

    ``apply`` is ``write`` of ``prepare``: the projector prepares a batch before its transaction begins (rows
    that follow from the events alone, already converted for the driver), so that the transaction, which holds
    SQLite's one write lock, only does what needs the database.
    """

    name: str
    tables: tuple[Table, ...]
    latest_only: frozenset[str]  # event types of which only the latest per stream matters (see Projector)

    def topics(self, catalogue: TopicCatalogue) -> list[str]: ...

    def prepare(self, dialect: Dialect, batch: Sequence[ConsumedEvent]) -> Any:
        """What can be worked out from the batch without the database, for ``write``."""
        ...

    def write(self, connection: Connection, tables: TableMap, prepared: Any) -> None:
        """Write a prepared batch's effect through ``tables`` (live or shadow tables, keyed by live table name)."""
        ...

    def apply(self, connection: Connection, tables: TableMap, batch: Sequence[ConsumedEvent]) -> None:
        """Write the batch's effect through ``tables``."""
        ...


class _Projection(ABC):
    """``apply`` as ``write`` of ``prepare``; by default nothing is prepared but the batch itself."""

    def prepare(self, dialect: Dialect, batch: Sequence[ConsumedEvent]) -> Any:
        return batch

    @abstractmethod
    def write(self, connection: Connection, tables: TableMap, prepared: Any) -> None: ...

    def apply(self, connection: Connection, tables: TableMap, batch: Sequence[ConsumedEvent]) -> None:
        self.write(connection, tables, self.prepare(connection.dialect, batch))


def _table(model: type[Base]) -> Table:
    return Base.metadata.tables[model.__tablename__]


def _json_value(item: Any) -> Any:
    if isinstance(item, datetime):
        return item.isoformat()
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return item.__dict__  # the flat value types (LabelScore, PhraseHit, ...): fields only, and fast
    if isinstance(item, bytes):
        return f"<{len(item)} bytes>"
    raise TypeError(f"cannot store {type(item).__name__} as JSON")


# One encoder for every call (json.dumps with options builds a new one each time). Keys keep the dataclass field
# order, which is fixed, so equal values give equal text without the cost of sorting every object's keys. Event
# values are immutable trees, so the encoder need not track containers to detect cycles.
_JSON = json.JSONEncoder(default=_json_value, separators=(",", ":"), ensure_ascii=False, check_circular=False)


def to_json(value: Any) -> str:
    """Canonical JSON of event values (value dataclasses, tuples, datetimes): equal values, equal text."""
    return _JSON.encode(value)


@dataclass(frozen=True)
class RowFolding(Generic[State]):
    """How a table's rows change: ``load`` a row into a state once per batch, ``fold`` each event into it (the
    same state back means no change), ``dump`` the changed states back to rows once."""

    load: Callable[[Row], State]
    fold: Callable[[State | None, ConsumedEvent], State | None]
    dump: Callable[[State], Row]


def fold_rows(
    connection: Connection,
    table: Table,
    key: str,
    batch: Sequence[tuple[Any, ConsumedEvent]],
    folding: RowFolding[State],
) -> None:
    """Load the rows the batch touches, fold its events into them in order, write back the changed ones."""
    if not batch:
        return
    states: dict[Any, State] = {
        found._mapping[key]: folding.load(dict(found._mapping))
        for found in select_by_key(connection, table, key, (item for item, _ in batch))
    }
    changed: set[Any] = set()
    for item, consumed in batch:
        before = states.get(item)
        after = folding.fold(before, consumed)
        if after is not None and after is not before:
            states[item] = after
            changed.add(item)
    upsert(connection, table, [folding.dump(states[item]) for item in sorted(changed)])


def _same_row(row: Row) -> Row:
    return row


# ------------------------------------------------------------------------------------------- incidents


def record_from_row(row: Row) -> IncidentRecord:
    return IncidentRecord(
        incident_id=row["incident_id"],
        stream_id=row["stream_id"],
        correlation_id=row["correlation_id"],
        status=row["status"],
        severity=row["severity"],
        score=row["score"],
        reason=row["reason"],
        onset_sample=row["onset_sample"],
        onset_at=row["onset_at"],
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        closed_at=row["closed_at"],
        closed_by=row["closed_by"],
        close_reason=row["close_reason"],
        labels=tuple(LabelScore(**item) for item in json.loads(row["labels_json"])),
        phrases=tuple(PhraseHit(**item) for item in json.loads(row["phrases_json"])),
        transcript=row["transcript"],
        clip_sha256=row["clip_sha256"],
        clip_duration_s=row["clip_duration_s"],
    )


def row_from_record(record: IncidentRecord, last_offset: int) -> Row:
    row = dict(vars(record))
    row["labels_json"] = to_json(row.pop("labels"))
    row["phrases_json"] = to_json(row.pop("phrases"))
    row["last_offset"] = last_offset
    return row


def timeline_summary(event: IncidentEvent) -> tuple[str | None, str]:
    """Who did it (None for the detector) and one readable line about it."""
    if isinstance(event, IncidentOpened):
        return None, f"opened, {event.severity}: {event.reason}"
    if isinstance(event, IncidentUpdated):
        clip = f"; clip {event.clip_duration_s:.1f} s" if event.clip_sha256 and event.clip_duration_s else ""
        return None, f"evidence: {event.reason}{clip}"
    if isinstance(event, IncidentEscalated):
        return None, f"escalated {event.from_severity} -> {event.to_severity}: {event.reason}"
    if isinstance(event, IncidentAcknowledged):
        return event.actor, _with_note("acknowledged", event.note)
    if isinstance(event, IncidentResolved):
        return event.actor, _with_note(f"resolved: {event.reason}", event.note)
    if isinstance(event, IncidentMarkedFalseAlarm):
        return event.actor, _with_note("marked a false alarm", event.note)
    if isinstance(event, IncidentNoteAdded):
        return event.actor, f"note: {event.note}"
    raise TypeError(f"not an incident event: {type(event).__name__}")


def _payload(event: Event) -> dict[str, Any]:
    """``event.payload()`` without the per-call field introspection (the timeline stores one per event)."""
    return {name: value for name, value in vars(event).items() if name not in _ENVELOPE}


_ENVELOPE = frozenset(ENVELOPE_FIELDS)


def _with_note(text: str, note: str) -> str:
    return f"{text} ({note})" if note else text


class IncidentsProjection(_Projection):
    """``incidents`` (current state) and ``incident_timeline`` (every event) from the incidents topic."""

    name = "incidents"
    tables: tuple[Table, ...] = (_table(IncidentRow), _table(IncidentTimelineRow))
    latest_only: frozenset[str] = frozenset()

    def topics(self, catalogue: TopicCatalogue) -> list[str]:
        return [catalogue.incidents.name]

    def prepare(
        self, dialect: Dialect, batch: Sequence[ConsumedEvent]
    ) -> tuple[PreparedRows, list[tuple[Any, ConsumedEvent]]]:
        """The timeline's rows (one per event, whatever the database holds), and the events keyed by incident."""
        incident_events = [consumed for consumed in batch if isinstance(consumed.event, IncidentEvent)]
        timeline: list[Row] = []
        keyed: list[tuple[Any, ConsumedEvent]] = []
        for consumed in incident_events:
            event = consumed.event
            assert isinstance(event, IncidentEvent)
            actor, summary = timeline_summary(event)
            timeline.append(
                {
                    "event_id": event.event_id,
                    "incident_id": event.incident_id,
                    "stream_id": event.stream_id,
                    "event_type": event.event_type,
                    "occurred_at": event.occurred_at,
                    "actor": actor,
                    "summary": summary,
                    "payload_json": to_json(_payload(event)),
                    "kafka_partition": consumed.partition,
                    "kafka_offset": consumed.offset,
                }
            )
            keyed.append((event.incident_id, consumed))
        return prepare_rows(dialect, _table(IncidentTimelineRow), timeline), keyed

    def write(
        self, connection: Connection, tables: TableMap, prepared: tuple[PreparedRows, list[tuple[Any, ConsumedEvent]]]
    ) -> None:
        timeline, keyed = prepared
        insert_missing(connection, tables["incident_timeline"], timeline)
        fold_rows(connection, tables["incidents"], "incident_id", keyed, _INCIDENT_ROWS)


def _fold_incident_row(
    state: tuple[IncidentRecord, int] | None, consumed: ConsumedEvent
) -> tuple[IncidentRecord, int] | None:
    if state is not None and consumed.offset <= state[1]:
        return state  # already applied
    assert isinstance(consumed.event, IncidentEvent)
    folded = fold_incident(state[0] if state else None, consumed.event)
    return None if folded is None else (folded, consumed.offset)


_INCIDENT_ROWS: RowFolding[tuple[IncidentRecord, int]] = RowFolding(
    load=lambda row: (record_from_row(row), row["last_offset"]),
    fold=_fold_incident_row,
    dump=lambda state: row_from_record(*state),
)


# --------------------------------------------------------------------------------------------- streams


class StreamsProjection(_Projection):
    """``streams``: lifecycle from the streams topic, level and labels from the latest score."""

    name = "streams"
    tables: tuple[Table, ...] = (_table(StreamRow),)
    latest_only = frozenset({DistressScored.event_type})  # level and labels: the latest score wins

    def topics(self, catalogue: TopicCatalogue) -> list[str]:
        return [catalogue.streams.name, catalogue.scores.name]

    def write(self, connection: Connection, tables: TableMap, prepared: Sequence[ConsumedEvent]) -> None:
        keyed = [
            (consumed.event.stream_id, consumed)
            for consumed in prepared
            if isinstance(consumed.event, StreamStarted | StreamEnded | StreamFailed | DistressScored)
        ]
        fold_rows(connection, tables["streams"], "stream_id", keyed, RowFolding(_same_row, self._fold, _same_row))

    @staticmethod
    def _fold(row: Row | None, consumed: ConsumedEvent) -> Row | None:
        event: Event = consumed.event
        current = row or _new_stream_row(event.stream_id)
        guard = "score_offset" if isinstance(event, DistressScored) else "lifecycle_offset"
        if consumed.offset <= current[guard]:
            return row  # already applied
        updated = {**current, guard: consumed.offset}
        previous = current["last_activity_at"]
        updated["last_activity_at"] = event.occurred_at if previous is None else max(previous, event.occurred_at)
        if isinstance(event, DistressScored):
            updated.update(
                last_sequence=event.sequence,
                last_score=event.score,
                last_is_distress=event.is_distress,
                rms_dbfs=event.rms_dbfs,
                pitch_hz=event.pitch_hz,
                last_labels_json=to_json(event.labels),
            )
        elif isinstance(event, StreamStarted):
            updated.update(
                status="running",
                source=event.source,
                source_kind=event.source_kind,
                started_at=event.occurred_at,
                ended_at=None,
                end_reason=None,
                chunks=None,
            )
        else:
            assert isinstance(event, StreamEnded | StreamFailed)
            updated.update(
                status="ended" if isinstance(event, StreamEnded) else "failed",
                ended_at=event.occurred_at,
                end_reason=event.reason,
                chunks=event.chunks,
            )
        return updated


def _new_stream_row(stream_id: str) -> Row:
    return {
        "stream_id": stream_id,
        "status": "running",
        "source": None,
        "source_kind": None,
        "started_at": None,
        "ended_at": None,
        "end_reason": None,
        "chunks": None,
        "last_activity_at": None,
        "last_sequence": None,
        "last_score": None,
        "last_is_distress": None,
        "rms_dbfs": None,
        "pitch_hz": None,
        "last_labels_json": "[]",
        "lifecycle_offset": -1,
        "score_offset": -1,
    }


# ---------------------------------------------------------------------------------------------- alerts


class AlertsProjection(_Projection):
    """``alerts``: delivery status per incident transition and channel."""

    name = "alerts"
    tables: tuple[Table, ...] = (_table(AlertRow),)
    latest_only: frozenset[str] = frozenset()

    def topics(self, catalogue: TopicCatalogue) -> list[str]:
        return [catalogue.alerts.name]

    def write(self, connection: Connection, tables: TableMap, prepared: Sequence[ConsumedEvent]) -> None:
        keyed = [
            (consumed.event.alert_key, consumed) for consumed in prepared if isinstance(consumed.event, AlertEvent)
        ]
        fold_rows(connection, tables["alerts"], "alert_key", keyed, RowFolding(_same_row, self._fold, _same_row))

    @staticmethod
    def _fold(row: Row | None, consumed: ConsumedEvent) -> Row | None:
        event = consumed.event
        assert isinstance(event, AlertEvent)
        if row is not None and consumed.offset <= row["last_offset"]:
            return row  # already applied
        current = row or {
            "alert_key": event.alert_key,
            "incident_id": event.incident_id,
            "stream_id": event.stream_id,
            "channel": event.channel,
            "transition_event_id": None,
            "kind": None,
            "route": None,
            "severity": None,
            "title": None,
            "status": "requested",
            "attempts": 0,
            "detail": None,
            "requested_at": None,
        }
        updated = {**current, "updated_at": event.occurred_at, "last_offset": consumed.offset}
        if isinstance(event, AlertRequested):
            updated.update(
                transition_event_id=event.transition_event_id,
                kind=event.kind,
                route=event.route,
                severity=event.severity,
                title=event.title,
                requested_at=event.occurred_at,
            )
        elif isinstance(event, AlertDeferred):
            updated.update(
                status="deferred",
                transition_event_id=event.transition_event_id,
                kind="deferred",
                route=event.route,
                severity=event.severity,
                detail=f"{event.reason}: in digest {event.digest_key} due {event.digest_due_at.isoformat()}",
            )
        elif isinstance(event, AlertDispatched):
            updated.update(status="dispatched", attempts=event.attempts, detail=None)
        else:
            assert isinstance(event, AlertFailed)
            updated.update(status="failed" if event.final else "retrying", attempts=event.attempts, detail=event.reason)
        return updated


# ------------------------------------------------------------------------------------------ transcripts


class TranscriptsProjection(_Projection):
    """``transcripts``: recognised speech, one row per transcript event."""

    name = "transcripts"
    tables: tuple[Table, ...] = (_table(TranscriptRow),)
    latest_only: frozenset[str] = frozenset()

    def topics(self, catalogue: TopicCatalogue) -> list[str]:
        return [catalogue.transcripts.name]

    def prepare(self, dialect: Dialect, batch: Sequence[ConsumedEvent]) -> PreparedRows:
        rows = [
            {
                "event_id": event.event_id,
                "stream_id": event.stream_id,
                "occurred_at": event.occurred_at,
                "text": event.text,
                "language": event.language,
                "start_sample": event.start_sample,
                "end_sample": event.end_sample,
                "is_partial": event.is_partial,
                "model_id": event.model_id,
                "avg_logprob": event.avg_logprob,
                "no_speech_prob": event.no_speech_prob,
                "phrases_json": to_json(event.phrases),
                "guard_flags_json": to_json(event.guard_flags),
            }
            for event in (consumed.event for consumed in batch)
            if isinstance(event, TranscriptProduced)
        ]
        return prepare_rows(dialect, _table(TranscriptRow), rows)

    def write(self, connection: Connection, tables: TableMap, prepared: PreparedRows) -> None:
        insert_missing(connection, tables["transcripts"], prepared)


PROJECTIONS: dict[str, Projection] = {
    projection.name: projection
    for projection in (IncidentsProjection(), StreamsProjection(), AlertsProjection(), TranscriptsProjection())
}


def projections_named(name: str) -> list[Projection]:
    """``all`` or one projection by name; a clear error for anything else."""
    if name == "all":
        return list(PROJECTIONS.values())
    if name not in PROJECTIONS:
        raise KeyError(f"unknown projection {name!r}; expected one of: all, {', '.join(PROJECTIONS)}")
    return [PROJECTIONS[name]]
