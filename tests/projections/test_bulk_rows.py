"""Rows written by the projections' bulk inserts are stored exactly as through each column type's own bind
processor and the sqlite3 module's adapters (SQLite: the datetimes' text, which the bulk path makes in one step)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from projections.database import create_database_engine, insert_missing, migrate
from projections.schema import Base

TIMELINE = Base.metadata.tables["incident_timeline"]
MOMENTS = [
    datetime(2026, 1, 5, 20, 0, 9, 30927, tzinfo=UTC),
    datetime(2026, 1, 5, 20, 0, 9, tzinfo=UTC),
    datetime(2026, 3, 29, 2, 30, 0, 1, tzinfo=timezone(timedelta(hours=2))),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
]


def _row(number: int, occurred_at: datetime) -> dict[str, Any]:
    return {
        "event_id": f"e-{number}",
        "incident_id": "cam-1:abc",
        "stream_id": "cam-1",
        "event_type": "IncidentNoteAdded",
        "occurred_at": occurred_at,
        "actor": None,
        "summary": "note: checked",
        "payload_json": "{}",
        "kafka_partition": 0,
        "kafka_offset": number,
    }


def _stored(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT * FROM incident_timeline ORDER BY event_id").fetchall()


def test_bulk_rows_are_stored_as_sqlalchemy_stores_them(tmp_path: Path) -> None:
    rows = [_row(number, moment) for number, moment in enumerate(MOMENTS)]
    for name in ("bulk", "typed"):
        engine = create_database_engine(f"sqlite:///{tmp_path / name}.db")
        migrate(engine)
        with engine.begin() as connection:
            if name == "bulk":
                insert_missing(connection, TIMELINE, rows)
            else:  # each value through its column type's processor, then as the sqlite3 module adapts it
                processors = [column.type.bind_processor(connection.dialect) for column in TIMELINE.columns]
                connection.exec_driver_sql(
                    f"INSERT INTO incident_timeline VALUES ({', '.join('?' * len(processors))})",
                    [
                        tuple(
                            value if process is None else process(value)
                            for process, value in zip(processors, row.values(), strict=True)
                        )
                        for row in rows
                    ],
                )
        engine.dispose()
    assert _stored(tmp_path / "bulk.db") == _stored(tmp_path / "typed.db")
    stored = [row[4] for row in _stored(tmp_path / "bulk.db")]
    assert stored[:2] == ["2026-01-05 20:00:09.030927", "2026-01-05 20:00:09"]


def test_a_naive_datetime_is_refused(tmp_path: Path) -> None:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'naive.db'}")
    migrate(engine)
    with pytest.raises(ValueError, match="naive datetime"), engine.begin() as connection:
        insert_missing(connection, TIMELINE, [_row(1, datetime(2026, 1, 5, 20, 0, 0))])
    engine.dispose()
