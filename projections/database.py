"""Engines, migrations, batch upserts, locks and content digests for the projection database.

SQLite (a file in the data directory) is the default and PostgreSQL is used when ``DISTRESS_DATABASE_URL`` names
one. Writers are serialised per projection: SQLite transactions start with ``BEGIN IMMEDIATE`` (WAL journal, so
readers are never blocked), PostgreSQL transactions take a transaction-scoped advisory lock.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Row, Table, create_engine, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from config.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SUPPORTED_DIALECTS = ("sqlite", "postgresql")
_IN_CHUNK = 500


class DatabaseError(Exception):
    """The projection database is unreachable, unsupported or not in the expected state."""


def create_database_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise DatabaseError(f"invalid database URL: {error}") from error
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        raise DatabaseError(f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL")
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": 60.0})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" hook below issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the projector
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes; WAL keeps it consistent
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks

    return engine


def open_database(settings: Settings) -> Engine:
    """The configured projection database, migrated to the current schema."""
    engine = create_database_engine(settings.sqlalchemy_url)
    migrate(engine)
    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest migration (a no-op when it is already there); safe to run concurrently."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.begin() as connection:
        lock(connection, "schema")
        if MigrationContext.configure(connection).get_current_revision() == head:
            return
        command.upgrade(alembic_config(connection), "head")


def lock(connection: Connection, name: str) -> None:
    """Serialise writers of ``name`` until the transaction ends (SQLite's BEGIN IMMEDIATE already does)."""
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


@dataclass(frozen=True)
class _BulkInsert:
    """An INSERT ... ON CONFLICT compiled once per dialect and table, run with plain driver parameters.

    Projections write thousands of rows per transaction; going through the compiled statement's per-row
    parameter machinery costs more than the database does, so rows are turned into driver parameters here,
    still through each column type's own bind processor (UTC datetimes, booleans).
    """

    sql: str
    columns: tuple[str, ...]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    positional: bool

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        values = operator.itemgetter(*self.columns)
        converted: list[Any] = []
        for row in rows:
            items = list(values(row))
            for index, process in self.processors:
                items[index] = process(items[index])
            converted.append(tuple(items) if self.positional else dict(zip(self.columns, items, strict=True)))
        return converted


_BULK_INSERTS: dict[tuple[str, str, bool], _BulkInsert] = {}


def _bulk_insert(connection: Connection, table: Table, overwrite: bool) -> _BulkInsert:
    dialect = connection.dialect
    cached = _BULK_INSERTS.get((dialect.name, table.name, overwrite))
    if cached is not None:
        return cached
    statement = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(table)
    keys = [column.name for column in table.primary_key.columns]
    if overwrite:
        statement = statement.on_conflict_do_update(
            index_elements=keys,
            set_={column.name: statement.excluded[column.name] for column in table.columns if column.name not in keys},
        )
    else:
        statement = statement.on_conflict_do_nothing()
    names = [column.name for column in table.columns]
    compiled = statement.compile(dialect=dialect, column_keys=names)
    columns = tuple(compiled.positiontup or names)
    processors = tuple(
        (index, processor)
        for index, name in enumerate(columns)
        if (processor := table.c[name].type.bind_processor(dialect)) is not None
    )
    bulk = _BULK_INSERTS[(dialect.name, table.name, overwrite)] = _BulkInsert(
        sql=compiled.string, columns=columns, processors=processors, positional=dialect.positional
    )
    return bulk


def upsert(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or overwrite whole rows by primary key, as one batched statement."""
    if rows:
        bulk = _bulk_insert(connection, table, overwrite=True)
        connection.exec_driver_sql(bulk.sql, bulk.parameters(rows))


def insert_missing(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows whose primary key is not there yet; existing rows are left alone (idempotent appends)."""
    if rows:
        bulk = _bulk_insert(connection, table, overwrite=False)
        connection.exec_driver_sql(bulk.sql, bulk.parameters(rows))


def select_by_key(connection: Connection, table: Table, key: str, values: Iterable[Any]) -> list[Row[Any]]:
    wanted = sorted(set(values))
    found: list[Row[Any]] = []
    for start in range(0, len(wanted), _IN_CHUNK):
        found += connection.execute(select(table).where(table.c[key].in_(wanted[start : start + _IN_CHUNK]))).all()
    return found


# ------------------------------------------------------------------------------------------ comparisons

RowKey = tuple[Any, ...]


def canonical(value: Any) -> Any:
    """A backend-independent, JSON-able form of a column value (for digests and diffs)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return value


def table_contents(connection: Connection, table: Table) -> dict[RowKey, dict[str, Any]]:
    """Every row keyed by primary key, values in canonical form."""
    keys = [column.name for column in table.primary_key.columns]
    contents: dict[RowKey, dict[str, Any]] = {}
    for row in connection.execute(select(table)).mappings():
        contents[tuple(row[key] for key in keys)] = {name: canonical(value) for name, value in row.items()}
    return contents


def table_digest(connection: Connection, table: Table) -> str:
    """SHA-256 of the table's rows in primary-key order: equal contents give equal digests on any backend."""
    digest = hashlib.sha256()
    contents = table_contents(connection, table)
    for key in sorted(contents):
        digest.update(json.dumps(contents[key], sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()
