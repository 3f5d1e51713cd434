"""Reading the projections (``projections.schema``) into the API's shapes; the dashboard never writes SQL rows.

Everything shown to an operator passes ``redact_text`` on the way out: alert errors and channel names come from
libraries that may echo a notification URL, and no page or endpoint may leak one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select, text, true

from config import StreamConfig
from config.redaction import redact_text
from domain.incidents import refusal
from domain.types import ACTIVE_STATUSES
from frontend.schemas import (
    AlertDelivery,
    AllowedActions,
    IncidentDetail,
    IncidentPage,
    IncidentSummary,
    LabelScoreOut,
    PhraseOut,
    StreamTile,
    TimelineEntry,
)
from projections.read_models import record_from_row
from projections.schema import AlertRow, IncidentRow, IncidentTimelineRow, StreamRow, TranscriptRow

LEVEL_FLOOR_DBFS = -60.0
TOP_LABELS = 3


@dataclass(frozen=True, kw_only=True)
class IncidentFilter:
    """The incident list's filters and page; every field is already validated by the API layer."""

    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    stream_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


class ReadModels:
    """Queries over the projection tables of one database."""

    def __init__(self, engine: Engine, streams: Sequence[StreamConfig] = ()) -> None:
        self.engine = engine
        self.stream_names = {stream.id: stream.name for stream in streams if stream.name}
        self.configured_streams = tuple(stream.id for stream in streams)

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    # ------------------------------------------------------------------------------------------ incidents

    def incidents(self, wanted: IncidentFilter) -> IncidentPage:
        table = IncidentRow.__table__
        conditions: list[ColumnElement[bool]] = []
        if wanted.statuses:
            conditions.append(table.c.status.in_(wanted.statuses))
        if wanted.severities:
            conditions.append(table.c.severity.in_(wanted.severities))
        if wanted.stream_id is not None:
            conditions.append(table.c.stream_id == wanted.stream_id)
        if wanted.since is not None:
            conditions.append(table.c.onset_at >= wanted.since)
        if wanted.until is not None:
            conditions.append(table.c.onset_at < wanted.until)
        where = and_(*conditions) if conditions else true()
        with self.engine.connect() as connection:
            total = connection.execute(select(func.count()).select_from(table).where(where)).scalar_one()
            rows = (
                connection.execute(
                    select(table)
                    .where(where)
                    .order_by(table.c.onset_at.desc(), table.c.incident_id)
                    .limit(wanted.limit)
                    .offset(wanted.offset)
                )
                .mappings()
                .all()
            )
        return IncidentPage(
            items=[self._summary(row) for row in rows], total=total, limit=wanted.limit, offset=wanted.offset
        )

    def incident(self, incident_id: str) -> IncidentSummary | None:
        row = self._incident_row(incident_id)
        return None if row is None else self._summary(row)

    def incident_detail(self, incident_id: str) -> IncidentDetail | None:
        row = self._incident_row(incident_id)
        if row is None:
            return None
        record = record_from_row(dict(row))
        allowed = AllowedActions(
            acknowledge=refusal(record, "acknowledge") is None,
            resolve=refusal(record, "resolve") is None,
            false_alarm=refusal(record, "false_alarm") is None,
            note=True,
        )
        return IncidentDetail(
            incident=self._summary(row),
            timeline=self.timeline(incident_id),
            alerts=self.alerts(incident_id),
            allowed=allowed,
        )

    def timeline(self, incident_id: str) -> list[TimelineEntry]:
        table = IncidentTimelineRow.__table__
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(table)
                    .where(table.c.incident_id == incident_id)
                    .order_by(table.c.kafka_offset, table.c.occurred_at)
                )
                .mappings()
                .all()
            )
        return [
            TimelineEntry(
                event_id=row["event_id"],
                event_type=row["event_type"],
                occurred_at=row["occurred_at"],
                actor=row["actor"],
                summary=redact_text(row["summary"]),
            )
            for row in rows
        ]

    def alerts(self, incident_id: str) -> list[AlertDelivery]:
        table = AlertRow.__table__
        with self.engine.connect() as connection:
            rows = (
                connection.execute(select(table).where(table.c.incident_id == incident_id).order_by(table.c.updated_at))
                .mappings()
                .all()
            )
        return [
            AlertDelivery(
                alert_key=redact_text(row["alert_key"]),
                channel=redact_text(row["channel"]),
                kind=row["kind"],
                route=row["route"],
                status=row["status"],
                severity=row["severity"],
                title=row["title"],
                attempts=row["attempts"],
                detail=redact_text(row["detail"]) if row["detail"] else None,
                requested_at=row["requested_at"],
                updated_at=row["updated_at"],
            )
            for row in rows
        ]

    def incident_counts(self) -> dict[tuple[str, str], int]:
        """(status, severity) -> incidents, for the metrics endpoint."""
        table = IncidentRow.__table__
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(table.c.status, table.c.severity, func.count()).group_by(table.c.status, table.c.severity)
            ).all()
        return {(status, severity): count for status, severity, count in rows}

    def active_incident_count(self) -> int:
        table = IncidentRow.__table__
        with self.engine.connect() as connection:
            count: int = connection.execute(
                select(func.count()).select_from(table).where(table.c.status.in_(ACTIVE_STATUSES))
            ).scalar_one()
        return count

    def stream_ids(self) -> list[str]:
        """Every stream the dashboard knows: configured ones first, then those seen in the events."""
        with self.engine.connect() as connection:
            seen = connection.execute(select(StreamRow.__table__.c.stream_id)).scalars().all()
            with_incidents = connection.execute(select(IncidentRow.__table__.c.stream_id).distinct()).scalars().all()
        return list(dict.fromkeys([*self.configured_streams, *sorted({*seen, *with_incidents})]))

    # -------------------------------------------------------------------------------------------- streams

    def streams(self, *, now: datetime, stale_after_s: float) -> list[StreamTile]:
        streams, incidents, transcripts = StreamRow.__table__, IncidentRow.__table__, TranscriptRow.__table__
        with self.engine.connect() as connection:
            rows = {row["stream_id"]: row for row in connection.execute(select(streams)).mappings()}
            active: dict[str, int] = dict(
                connection.execute(
                    select(incidents.c.stream_id, func.count())
                    .where(incidents.c.status.in_(ACTIVE_STATUSES))
                    .group_by(incidents.c.stream_id)
                ).all()
            )
            latest = (
                select(transcripts.c.stream_id, func.max(transcripts.c.occurred_at).label("at"))
                .where(transcripts.c.is_partial.is_(False))
                .group_by(transcripts.c.stream_id)
                .subquery()
            )
            last_lines = dict(
                connection.execute(
                    select(transcripts.c.stream_id, transcripts.c.text).join(
                        latest,
                        and_(transcripts.c.stream_id == latest.c.stream_id, transcripts.c.occurred_at == latest.c.at),
                    )
                ).all()
            )
        ids = list(dict.fromkeys([*self.configured_streams, *sorted(rows)]))
        return [
            self._tile(
                stream_id,
                rows.get(stream_id),
                active.get(stream_id, 0),
                last_lines.get(stream_id),
                now=now,
                stale_after_s=stale_after_s,
            )
            for stream_id in ids
        ]

    def _tile(
        self, stream_id: str, row: Any, active: int, last_line: str | None, *, now: datetime, stale_after_s: float
    ) -> StreamTile:
        name = self.stream_names.get(stream_id, stream_id)
        if row is None:
            return StreamTile(
                stream_id=stream_id,
                name=name,
                status="not started",
                source_kind=None,
                started_at=None,
                last_activity_at=None,
                end_reason=None,
                rms_dbfs=None,
                level=0.0,
                last_score=None,
                last_is_distress=None,
                labels=[],
                last_transcript=last_line,
                active_incidents=active,
            )
        status = row["status"]
        last_activity = row["last_activity_at"]
        if status == "running" and (last_activity is None or (now - last_activity).total_seconds() > stale_after_s):
            status = "silent"
        rms = row["rms_dbfs"]
        level = 0.0 if rms is None else min(1.0, max(0.0, (rms - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS))
        labels = sorted(_labels(row["last_labels_json"]), key=lambda item: -item.score)[:TOP_LABELS]
        return StreamTile(
            stream_id=stream_id,
            name=name,
            status=status,
            source_kind=row["source_kind"],
            started_at=row["started_at"],
            last_activity_at=last_activity,
            end_reason=redact_text(row["end_reason"]) if row["end_reason"] else None,
            rms_dbfs=rms,
            level=level,
            last_score=row["last_score"],
            last_is_distress=row["last_is_distress"],
            labels=labels,
            last_transcript=last_line,
            active_incidents=active,
        )

    # -------------------------------------------------------------------------------------------- helpers

    def _incident_row(self, incident_id: str) -> Any:
        table = IncidentRow.__table__
        with self.engine.connect() as connection:
            return connection.execute(select(table).where(table.c.incident_id == incident_id)).mappings().first()

    def _summary(self, row: Any) -> IncidentSummary:
        return IncidentSummary(
            incident_id=row["incident_id"],
            stream_id=row["stream_id"],
            stream_name=self.stream_names.get(row["stream_id"], row["stream_id"]),
            status=row["status"],
            severity=row["severity"],
            score=row["score"],
            reason=redact_text(row["reason"]),
            onset_at=row["onset_at"],
            opened_at=row["opened_at"],
            updated_at=row["updated_at"],
            acknowledged_at=row["acknowledged_at"],
            acknowledged_by=row["acknowledged_by"],
            closed_at=row["closed_at"],
            closed_by=row["closed_by"],
            close_reason=redact_text(row["close_reason"]) if row["close_reason"] else None,
            labels=sorted(_labels(row["labels_json"]), key=lambda item: -item.score),
            phrases=[PhraseOut(**item) for item in json.loads(row["phrases_json"])],
            transcript=row["transcript"],
            has_clip=row["clip_sha256"] is not None,
            clip_duration_s=row["clip_duration_s"],
        )


def _labels(labels_json: str) -> list[LabelScoreOut]:
    return [LabelScoreOut(**item) for item in json.loads(labels_json)]


def timeline_after(engine: Engine, cursor: dict[int, int]) -> list[dict[str, Any]]:
    """Timeline rows past ``cursor`` (partition -> last offset seen): what happened since the last look."""
    table = IncidentTimelineRow.__table__
    seen = [
        and_(table.c.kafka_partition == partition, table.c.kafka_offset > offset)
        for partition, offset in cursor.items()
    ]
    unseen_partition = table.c.kafka_partition.notin_(list(cursor)) if cursor else true()
    with engine.connect() as connection:
        return [
            dict(row)
            for row in connection.execute(
                select(table.c.incident_id, table.c.event_type, table.c.kafka_partition, table.c.kafka_offset)
                .where(or_(unseen_partition, *seen))
                .order_by(table.c.kafka_partition, table.c.kafka_offset)
            ).mappings()
        ]


def timeline_ends(engine: Engine) -> dict[int, int]:
    """The last timeline offset per partition: where a live feed starts."""
    table = IncidentTimelineRow.__table__
    with engine.connect() as connection:
        return dict(
            connection.execute(
                select(table.c.kafka_partition, func.max(table.c.kafka_offset)).group_by(table.c.kafka_partition)
            ).all()
        )


def clip_of(engine: Engine, incident_id: str) -> tuple[str | None, float | None, int] | None:
    """(clip sha256, clip duration, onset sample) of an incident, or None when there is no such incident."""
    table = IncidentRow.__table__
    with engine.connect() as connection:
        row = connection.execute(
            select(table.c.clip_sha256, table.c.clip_duration_s, table.c.onset_sample).where(
                table.c.incident_id == incident_id
            )
        ).first()
    return None if row is None else (row[0], row[1], row[2])
