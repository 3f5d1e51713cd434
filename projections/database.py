"""Engines, migrations, batch upserts, locks and content digests for the projection database.

SQLite (a file in the data directory) is the default and PostgreSQL is used when ``DISTRESS_DATABASE_URL`` names
one. Writers are serialised per projection: SQLite transactions start with ``BEGIN IMMEDIATE`` (WAL journal, so
readers are never blocked), PostgreSQL transactions take a transaction-scoped advisory lock.
"""

from __future__ import annotations

import hashlib
import json
import operator
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Dialect, Engine, Row, Table, create_engine, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import PoolProxiedConnection

from config.settings import Settings
from projections.schema import UtcDateTime

if TYPE_CHECKING:
    import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SUPPORTED_DIALECTS = ("sqlite", "postgresql")
_IN_CHUNK = 500
_Insert = sqlite.Insert | postgresql.Insert


class DatabaseError(Exception):
    """The projection database is unreachable, unsupported or not in the expected state."""


def create_database_engine(url: str, *, busy_timeout_s: float = 60.0) -> Engine:
    """An engine for the projection database; ``busy_timeout_s``: how long a SQLite writer waits for another
    process's transaction before failing."""
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
    engine = create_engine(parsed, connect_args={"timeout": busy_timeout_s})
    writers = _Writers()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" hook below issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the projector
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable against process crashes; WAL keeps it consistent
        cursor.execute(f"PRAGMA busy_timeout={round(busy_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writers.begin(connection)  # BEGIN IMMEDIATE: the write lock up front, so no upgrade deadlocks

    # The lock is let go once the transaction has ended (SQLAlchemy has no event after a commit, so the
    # dialect's own calls are wrapped), or when its connection is returned to the pool or lost.
    commit, rollback = engine.dialect.do_commit, engine.dialect.do_rollback
    engine.dialect.do_commit = lambda dbapi_connection: writers.after(dbapi_connection, commit)  # type: ignore[method-assign]
    engine.dialect.do_rollback = lambda dbapi_connection: writers.after(dbapi_connection, rollback)  # type: ignore[method-assign]

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        writers.release(dbapi_connection)

    @event.listens_for(engine, "invalidate")
    def _on_invalidate(dbapi_connection: Any, _record: Any, _error: Any) -> None:
        writers.release(dbapi_connection)

    return engine


class _Writers:
    """SQLite: the threads of one engine take the write lock in turn, each the moment the previous one is done.

    SQLite serialises writers itself, but a connection that finds the database locked sleeps in its busy handler
    (1, 2, 5, ... then 100 ms a try) and does not notice the lock being freed; with several projections writing
    at once (``distress replay``) those sleeps cost more than the writes. So threads queue here, on a lock taken
    just before ``BEGIN IMMEDIATE`` and released just after ``COMMIT`` or ``ROLLBACK``; other processes still
    meet SQLite's locking. A thread that holds it already (a second transaction inside its first) does not
    queue, and meets SQLite's lock as it always did.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread holding it
        self._holder: Any = None  # and its DBAPI (sqlite3) connection

    def begin(self, connection: Connection) -> None:
        if self._owner != threading.get_ident():
            self._lock.acquire()
            self._owner, self._holder = threading.get_ident(), connection.connection.driver_connection
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self.release(connection.connection.driver_connection)
            raise

    def after(self, connection: PoolProxiedConnection, end: Callable[[PoolProxiedConnection], None]) -> None:
        """``end`` the transaction (the dialect's commit or rollback), then let the next thread in."""
        try:
            end(connection)
        finally:
            self.release(connection.driver_connection)

    def release(self, driver_connection: Any) -> None:
        """Let the next thread in, if ``driver_connection`` holds the lock."""
        if driver_connection is not None and driver_connection is self._holder:
            self._owner = self._holder = None
            self._lock.release()


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
class _Staging:
    """PostgreSQL: a session temp table shaped like the target, filled by COPY and emptied after each use."""

    create: str
    copy: str
    empty: str


@dataclass(frozen=True)
class _BulkInsert:
    """An INSERT ... ON CONFLICT built once per dialect and table, run with plain driver parameters.

    Projections write thousands of rows per transaction; going through SQLAlchemy's per-row parameter machinery
    costs more than the database does, so rows are turned into driver parameters here, column by column, still
    through each column type's own bind processor (UTC datetimes, booleans). SQLite runs the statement once per
    row in C (``executemany``). PostgreSQL would spend a bind/execute round per row on both ends that way, so
    there the rows are COPYed into a staging table and moved by one ``INSERT ... SELECT ... ON CONFLICT``.
    """

    sql: str
    columns: tuple[str, ...]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    staging: _Staging | None = None

    def run(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        self.execute(connection, self.convert(rows))

    def convert(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The rows as driver parameters, in ``columns`` order."""
        values = operator.itemgetter(*self.columns)
        columns = [list(column) for column in zip(*map(values, rows), strict=True)]
        for index, process in self.processors:
            columns[index] = list(map(process, columns[index]))
        return list(zip(*columns, strict=True))

    def execute(self, connection: Connection, converted: Sequence[tuple[Any, ...]]) -> None:
        if self.staging is None:
            connection.exec_driver_sql(self.sql, converted)
            return
        driver = cast("psycopg.Connection[Any]", connection.connection.driver_connection)
        with driver.cursor() as cursor:
            cursor.execute(self.staging.create)
            with cursor.copy(self.staging.copy) as copy:
                for row in converted:
                    copy.write_row(row)
            cursor.execute(self.sql)
            cursor.execute(self.staging.empty)


_BULK_INSERTS: dict[tuple[str, str, bool], _BulkInsert] = {}


def _bulk_insert(connection: Connection | Dialect, table: Table, overwrite: bool) -> _BulkInsert:
    dialect = connection if isinstance(connection, Dialect) else connection.dialect
    cached = _BULK_INSERTS.get((dialect.name, table.name, overwrite))
    if cached is None:
        build = _staged_insert if dialect.name == "postgresql" else _compiled_insert
        cached = _BULK_INSERTS[(dialect.name, table.name, overwrite)] = build(dialect, table, overwrite)
    return cached


def _on_conflict(statement: _Insert, table: Table, overwrite: bool) -> _Insert:
    """``overwrite``: a row whose key exists replaces every other column; otherwise the existing row stays."""
    if not overwrite:
        return statement.on_conflict_do_nothing()
    keys = [column.name for column in table.primary_key.columns]
    return statement.on_conflict_do_update(
        index_elements=keys,
        set_={column.name: statement.excluded[column.name] for column in table.columns if column.name not in keys},
    )


def _compiled_insert(dialect: Dialect, table: Table, overwrite: bool) -> _BulkInsert:
    """SQLite: ``INSERT ... VALUES (?, ...) ON CONFLICT ...`` for ``executemany``."""
    names = [column.name for column in table.columns]
    compiled = _on_conflict(sqlite.insert(table), table, overwrite).compile(dialect=dialect, column_keys=names)
    columns = tuple(compiled.positiontup or names)
    return _BulkInsert(sql=compiled.string, columns=columns, processors=_processors(dialect, table, columns))


def _staged_insert(dialect: Dialect, table: Table, overwrite: bool) -> _BulkInsert:
    """PostgreSQL: COPY into ``pg_temp.staging_<table>_<columns digest>``, then one INSERT ... SELECT from it.

    The digest of the column names keeps a session's staging table from outliving a migration that changed
    them. ``DO NOTHING`` tolerates a key twice in one statement, as appends may have it; ``DO UPDATE`` does not,
    and its callers write each key once (a batch's rows are folded per key first).
    """
    names = tuple(column.name for column in table.columns)
    digest = hashlib.sha256("\0".join(names).encode()).hexdigest()[:12]
    preparer = dialect.identifier_preparer
    staging_name = f"staging_{table.name}_{digest}"
    staging = sqlalchemy.table(staging_name, *map(sqlalchemy.column, names), schema="pg_temp")
    moved = _on_conflict(postgresql.insert(table).from_select(names, select(*staging.c)), table, overwrite)
    quoted = f"pg_temp.{preparer.quote(staging_name)}"
    return _BulkInsert(
        sql=str(moved.compile(dialect=dialect)),
        columns=names,
        processors=_processors(dialect, table, names),
        staging=_Staging(
            create=f"CREATE TEMP TABLE IF NOT EXISTS {preparer.quote(staging_name)} "
            f"(LIKE {preparer.format_table(table)})",
            copy=f"COPY {quoted} ({', '.join(map(preparer.quote, names))}) FROM STDIN",
            empty=f"TRUNCATE {quoted}",
        ),
    )


def _processors(dialect: Dialect, table: Table, columns: Sequence[str]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    return tuple(
        (index, processor)
        for index, name in enumerate(columns)
        if (processor := _processor(dialect, table.c[name].type)) is not None
    )


def _processor(dialect: Dialect, column_type: Any) -> Callable[[Any], Any] | None:
    if dialect.name == "sqlite" and isinstance(column_type, UtcDateTime):
        return _sqlite_datetime
    processor: Callable[[Any], Any] | None = column_type.bind_processor(dialect)
    return processor


def _sqlite_datetime(value: datetime | None) -> str | None:
    """SQLite: ``UtcDateTime``'s conversion and then the sqlite3 module's adapting of the naive datetime it gives
    (``isoformat(" ")``), in one call instead of three: a rebuild converts some 100,000 of them."""
    if value is not None and value.tzinfo is UTC:  # as decoded events carry them: the text less its "+00:00"
        return value.isoformat(" ")[:-6]
    moment = _UTC_DATETIME.process_bind_param(value, _SQLITE)
    return None if moment is None else moment.isoformat(" ")


_UTC_DATETIME = UtcDateTime()
_SQLITE = sqlite.dialect()


def upsert(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or overwrite whole rows by primary key, as one batched statement (each key at most once)."""
    if rows:
        _bulk_insert(connection, table, overwrite=True).run(connection, rows)


def insert_missing(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]] | PreparedRows) -> None:
    """Insert rows whose primary key is not there yet; existing rows are left alone (idempotent appends)."""
    bulk = _bulk_insert(connection, table, overwrite=False)
    if isinstance(rows, PreparedRows):
        if rows.columns != bulk.columns:
            raise DatabaseError(f"rows prepared for columns {rows.columns} cannot go into {table.name}")
        if rows.parameters:
            bulk.execute(connection, rows.parameters)
    elif rows:
        bulk.run(connection, rows)


@dataclass(frozen=True)
class PreparedRows:
    """Rows already turned into driver parameters (``prepare_rows``), for ``insert_missing``."""

    columns: tuple[str, ...]
    parameters: list[tuple[Any, ...]]


def prepare_rows(dialect: Dialect, table: Table, rows: Sequence[Mapping[str, Any]]) -> PreparedRows:
    """Rows for ``insert_missing`` into ``table`` or a table with the same columns (its shadow), converted before
    the transaction: while one projection holds SQLite's write lock, another gets its next batch ready."""
    bulk = _bulk_insert(dialect, table, overwrite=False)
    return PreparedRows(columns=bulk.columns, parameters=bulk.convert(rows) if rows else [])


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
