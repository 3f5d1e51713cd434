"""Read-side queries over the projections, returning JSON-ready dicts (used by the CLI and the HTTP API)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, Table, select

from domain.types import STATUSES
from projections.schema import Base

INCIDENTS: Table = Base.metadata.tables["incidents"]
TIMELINE: Table = Base.metadata.tables["incident_timeline"]
STREAMS: Table = Base.metadata.tables["streams"]
ALERTS: Table = Base.metadata.tables["alerts"]
_BOOKKEEPING = frozenset({"last_offset", "lifecycle_offset", "score_offset"})  # idempotence guards, not data


def _document(row: RowMapping, parse: tuple[str, ...] = ()) -> dict[str, Any]:
    """A row as JSON-ready values; ``<name>_json`` columns in ``parse`` become ``<name>``."""
    document: dict[str, Any] = {}
    for name, value in row.items():
        if name in _BOOKKEEPING:
            continue
        if name in parse:
            document[name.removesuffix("_json")] = json.loads(value)
        else:
            document[name] = value.isoformat() if isinstance(value, datetime) else value
    return document


def _incident(row: RowMapping) -> dict[str, Any]:
    return _document(row, ("labels_json", "phrases_json"))


def list_incidents(
    connection: Connection,
    *,
    status: str | None = None,
    stream_id: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first. ``since`` filters on the onset time; a bad filter value is a ValueError naming it."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    query = select(INCIDENTS).order_by(INCIDENTS.c.onset_at.desc(), INCIDENTS.c.incident_id).limit(limit)
    if status is not None:
        query = query.where(INCIDENTS.c.status == status)
    if stream_id is not None:
        query = query.where(INCIDENTS.c.stream_id == stream_id)
    if since is not None:
        query = query.where(INCIDENTS.c.onset_at >= since)
    return [_incident(row) for row in connection.execute(query).mappings()]


def incident_detail(connection: Connection, incident_id: str) -> dict[str, Any] | None:
    """The incident with its evidence, every event of its timeline, and its alert deliveries."""
    row = connection.execute(select(INCIDENTS).where(INCIDENTS.c.incident_id == incident_id)).mappings().first()
    if row is None:
        return None
    document = _incident(row)
    timeline = connection.execute(
        select(TIMELINE)
        .where(TIMELINE.c.incident_id == incident_id)
        .order_by(TIMELINE.c.kafka_partition, TIMELINE.c.kafka_offset)
    ).mappings()
    document["timeline"] = [_document(entry, ("payload_json",)) for entry in timeline]
    alerts = connection.execute(
        select(ALERTS).where(ALERTS.c.incident_id == incident_id).order_by(ALERTS.c.alert_key)
    ).mappings()
    document["alerts"] = [_document(alert) for alert in alerts]
    return document


def list_streams(connection: Connection) -> list[dict[str, Any]]:
    rows = connection.execute(select(STREAMS).order_by(STREAMS.c.stream_id)).mappings()
    return [_document(row, ("last_labels_json",)) for row in rows]
