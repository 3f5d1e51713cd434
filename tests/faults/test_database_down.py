"""The projection database goes down during a batch: after it returns the tables hold every row exactly once.

The projector is hosted as in production (``ProjectorPool``: a failed projector is rebuilt from its stored
checkpoint, with backoff) and follows a real broker. Faults:

* PostgreSQL (a private cluster, so no one else's database goes down): the projector's connection is killed with
  ``pg_terminate_backend`` while it is inside a batch transaction, and later the whole cluster is shut down
  (immediate mode, like a crash) while a batch is being written, and started again;
* SQLite: the filesystem holding the database file fills up while batches are being applied (a read-only remount
  is refused while the file is open for writing), then has room again.

Afterwards the tables must equal a projection of the same topics that never saw a fault (table digests), the
checkpoint must cover every message, and every incident event must have exactly one timeline row.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from benchmarks.replay import synthetic_history
from config import Settings
from events import Event
from events.catalogue import IncidentEvent
from projections.database import create_database_engine, migrate, table_digest
from projections.pool import ProjectorPool
from projections.projector import CHECKPOINTS, Projector, load_checkpoint
from projections.read_models import PROJECTIONS
from projections.schema import IncidentRow, IncidentTimelineRow
from tests.conftest import wait_for
from tests.faults.conftest import fill, tiny_filesystem
from tests.support.postgres import PrivateCluster

INCIDENTS = PROJECTIONS["incidents"]
PROJECTOR_APP = "faults-projector"


def history() -> list[IncidentEvent]:
    """About 8000 incident events: several of the projector's 2000-event batches."""
    events = synthetic_history(streams=12, incidents_per_stream=110, windows_per_incident=1, seed=5)
    return [event for event in events if isinstance(event, IncidentEvent)]


def publish(settings: Settings, events: Sequence[Event]) -> None:
    with settings.bus().producer() as producer:
        for event in events:
            producer.publish(event)
        producer.flush()


def applied(engine: Engine) -> int:
    """Messages covered by the stored checkpoint (every message is one incident event here)."""
    with engine.connect() as connection:
        return sum(load_checkpoint(connection, INCIDENTS.name).values())


def assert_exactly_once(engine: Engine, settings: Settings, events: Sequence[IncidentEvent], tmp_path: Path) -> None:
    """Nothing lost, nothing doubled: equal to a fault-free projection, one timeline row per event."""
    reference = create_database_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    migrate(reference)
    projector = Projector(reference, settings.bus(), INCIDENTS)
    projector.catch_up()
    projector.close()
    with engine.connect() as faulty, reference.connect() as clean:
        for table in INCIDENTS.tables:
            assert table_digest(faulty, table) == table_digest(clean, table), f"{table.name} differs"
        assert faulty.scalar(select(func.count()).select_from(IncidentTimelineRow)) == len(events)
        assert faulty.scalar(select(func.count()).select_from(IncidentRow)) == len(
            {event.incident_id for event in events}
        )
    reference.dispose()


# ------------------------------------------------------------------------------------------------ PostgreSQL


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.data, ignore_errors=True)


@contextmanager
def checkpoint_writes_held(url: URL) -> Iterator[None]:
    """Block writes to the checkpoint table (reads go on) until the block ends or the server dies.

    A projector batch then does all its read-model writes and waits at its checkpoint write, inside its transaction:
    exactly the moment a fault must not lose or double anything. Waiting for that state, rather than polling for a
    batch that happens to be in flight, keeps the test from racing a fast projector.
    """
    holder = create_engine(url.update_query_dict({"application_name": "faults-holder"}))
    try:
        with holder.connect() as connection, connection.begin():
            connection.execute(text(f"LOCK TABLE {CHECKPOINTS.name} IN SHARE MODE"))
            yield
    except OperationalError:
        pass  # the crash took the holder's session (and its lock) with it
    finally:
        holder.dispose()


def blocked_at_checkpoint(admin: Engine) -> list[int]:
    """Backend pids of the projector waiting on a lock inside a batch transaction."""
    with admin.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = :app"
                    " AND xact_start IS NOT NULL AND wait_event_type = 'Lock'"
                ),
                {"app": PROJECTOR_APP},
            ).scalars()
        )


def kill(admin: Engine, pids: Sequence[int]) -> None:
    with admin.connect() as connection:
        for pid in pids:
            assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_postgres_killed_and_crashed_mid_batch_loses_and_doubles_nothing(
    kafka_settings: Settings, postgres: PrivateCluster, tmp_path: Path
) -> None:
    database = f"faults_{os.urandom(4).hex()}"
    admin = create_engine(
        make_url(postgres.url).update_query_dict({"application_name": "faults-admin"}),
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=True,
    )  # outlives the crash
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    url = make_url(postgres.url).set(database=database).update_query_dict({"application_name": PROJECTOR_APP})
    engine = create_database_engine(url.render_as_string(hide_password=False))
    migrate(engine)
    kafka_settings.ensure_topics()
    events = history()
    half = len(events) // 2
    pool = ProjectorPool(engine, kafka_settings.bus(), (INCIDENTS,))
    pool.start()
    try:
        with checkpoint_writes_held(url):
            publish(kafka_settings, events[:half])
            wait_for(lambda: bool(blocked_at_checkpoint(admin)), what="a batch at its checkpoint write", timeout_s=60)
            kill(admin, blocked_at_checkpoint(admin))
            assert applied(engine) == 0
        wait_for(lambda: applied(engine) == half, what="the first half after the killed connection")

        with checkpoint_writes_held(url):
            publish(kafka_settings, events[half:])
            wait_for(lambda: bool(blocked_at_checkpoint(admin)), what="a batch at its checkpoint write", timeout_s=60)
            postgres.crash()
        wait_for(lambda: pool.statuses[INCIDENTS.name].error is not None, what="the projector to notice")
        postgres.start()
        wait_for(lambda: applied(engine) == len(events), what="the rest after the restart", timeout_s=120)
    finally:
        pool.stop()
    assert_exactly_once(engine, kafka_settings, events, tmp_path)
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{database}" WITH (FORCE)'))
    admin.dispose()


# ---------------------------------------------------------------------------------------------------- SQLite


def test_sqlite_unavailable_mid_batch_loses_and_doubles_nothing(kafka_settings: Settings, tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "db", size="64m") as folder:
        engine = create_database_engine(f"sqlite:///{folder / 'projections.db'}")
        migrate(engine)
        kafka_settings.ensure_topics()
        events = history()
        half = len(events) // 2
        pool = ProjectorPool(engine, kafka_settings.bus(), (INCIDENTS,))
        pool.start()
        status = pool.statuses[INCIDENTS.name]
        try:
            publish(kafka_settings, events[:half])
            wait_for(lambda: applied(engine) == half, what="the first half", timeout_s=120)
            with closing(sqlite3.connect(folder / "projections.db", isolation_level=None)) as connection:
                busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            # an empty WAL: the next batch needs blocks that the full disk does not have
            assert busy == 0 and (folder / "projections.db-wal").stat().st_size == 0
            fill(folder)
            try:
                publish(kafka_settings, events[half:])
                wait_for(lambda: status.error is not None, what="a batch to fail on the full disk")
                assert applied(engine) == half
                time.sleep(1.0)  # stays down through a retry or two
            finally:
                (folder / "filler").unlink()
            wait_for(lambda: applied(engine) == len(events), what="the rest once there is room", timeout_s=120)
        finally:
            pool.stop()
        assert_exactly_once(engine, kafka_settings, events, tmp_path)
        engine.dispose()
