"""One projection test suite, run against SQLite and PostgreSQL: rows match the event history, exactly-once
checkpoints (also across a SIGKILL), idempotent application, reproducible replays, verify, atomic swaps."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, delete, func, insert, inspect, select, update

from benchmarks.replay import synthetic_history
from config import Settings
from domain.incidents import fold_incidents
from events import Event
from events.catalogue import (
    AlertEvent,
    DistressScored,
    IncidentEvent,
    IncidentNoteAdded,
    StreamEnded,
    TranscriptProduced,
)
from events.kafka.connection import Partition
from events.kafka.log import LogBatch, TopicLog
from projections.database import table_digest
from projections.projector import CHECKPOINTS, Projector, load_checkpoint
from projections.queries import incident_detail, list_incidents, list_streams
from projections.read_models import PROJECTIONS, Projection, TableMap, TranscriptsProjection
from projections.replay import replay, replay_all
from projections.schema import AlertRow, Base, IncidentRow, IncidentTimelineRow, TranscriptRow
from tests.conftest import REPO_ROOT
from tests.projections.conftest import NewDatabase

OpenEngine = Callable[[str], Engine]


def publish(settings: Settings, events: Iterable[Event]) -> None:
    bus = settings.bus()
    with bus.producer() as producer:
        for event in events:
            producer.publish(event)
        producer.flush()


def project_all(engine: Engine, settings: Settings) -> None:
    for projection in PROJECTIONS.values():
        projector = Projector(engine, settings.bus(), projection, batch_size=97)
        projector.catch_up()
        projector.close()


def digests(engine: Engine, projections: Iterable[Projection] = PROJECTIONS.values()) -> dict[str, str]:
    with engine.connect() as connection:
        return {
            table.name: table_digest(connection, table) for projection in projections for table in projection.tables
        }


def small_history() -> list[Event]:
    return synthetic_history(streams=3, incidents_per_stream=4, windows_per_incident=4, seed=11)


def projected_small_history(settings: Settings, engine: Engine) -> Engine:
    """``small_history`` published to fresh topics and projected into ``engine``, which is returned."""
    settings.ensure_topics()
    publish(settings, small_history())
    project_all(engine, settings)
    return engine


class ProjectionSuite:
    """Backend-independent behaviour; subclasses provide ``databases`` for one backend."""

    @pytest.fixture
    def databases(self) -> NewDatabase:
        raise NotImplementedError

    def test_the_migrations_create_exactly_the_modelled_schema(
        self, databases: NewDatabase, engines: OpenEngine
    ) -> None:
        engine = engines(databases())
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []

    def test_the_tables_match_the_event_history(
        self, kafka_settings: Settings, databases: NewDatabase, engines: OpenEngine
    ) -> None:
        kafka_settings.ensure_topics()
        history = small_history()
        publish(kafka_settings, history)
        engine = engines(databases())
        project_all(engine, kafka_settings)

        expected = fold_incidents(history)
        with engine.connect() as connection:
            rows = {row["incident_id"]: row for row in connection.execute(select(IncidentRow.__table__)).mappings()}
            assert rows.keys() == expected.keys()
            for incident_id, record in expected.items():
                row = rows[incident_id]
                assert (row["status"], row["severity"], row["closed_by"], row["clip_sha256"], row["onset_at"]) == (
                    record.status,
                    record.severity,
                    record.closed_by,
                    record.clip_sha256,
                    record.onset_at,
                )
            incident_events = [event for event in history if isinstance(event, IncidentEvent)]
            assert connection.scalar(select(func.count()).select_from(IncidentTimelineRow)) == len(incident_events)
            assert connection.scalar(select(func.count()).select_from(AlertRow)) == len(
                {event.alert_key for event in history if isinstance(event, AlertEvent)}
            )
            assert connection.scalar(select(func.count()).select_from(TranscriptRow)) == len(
                [event for event in history if isinstance(event, TranscriptProduced)]
            )
            assert set(connection.execute(select(AlertRow.status)).scalars()) == {"dispatched"}

            streams = {stream["stream_id"]: stream for stream in list_streams(connection)}
            for stream_id, stream in streams.items():
                last_score = [
                    event for event in history if isinstance(event, DistressScored) and event.stream_id == stream_id
                ][-1]
                ended = next(
                    event for event in history if isinstance(event, StreamEnded) and event.stream_id == stream_id
                )
                assert (stream["status"], stream["chunks"], stream["last_score"], stream["rms_dbfs"]) == (
                    "ended",
                    ended.chunks,
                    last_score.score,
                    last_score.rms_dbfs,
                )
                assert stream["last_labels"][0]["label"] == last_score.labels[0].label
            assert len(streams) == 3

            dismissed = list_incidents(connection, status="false_alarm")
            assert {item["incident_id"] for item in dismissed} == {
                key for key, record in expected.items() if record.status == "false_alarm"
            }
            first = next(iter(expected.values()))
            detail = incident_detail(connection, first.incident_id)
            assert detail is not None
            assert [entry["event_type"] for entry in detail["timeline"]] == [
                event.event_type for event in incident_events if event.incident_id == first.incident_id
            ]
            assert len(detail["alerts"]) == 2 and detail["timeline"][0]["actor"] is None
            assert incident_detail(connection, "no-such:000000000000") is None
            with pytest.raises(ValueError, match="unknown status"):
                list_incidents(connection, status="closed")

    def test_applying_events_again_changes_nothing(
        self, kafka_settings: Settings, databases: NewDatabase, engines: OpenEngine
    ) -> None:
        engine = projected_small_history(kafka_settings, engines(databases()))
        before = digests(engine)
        bus = kafka_settings.bus()
        for projection in PROJECTIONS.values():
            with TopicLog(bus, projection.topics(bus.catalogue)) as log:
                consumed = [event for batch in log.read_until(log.end_offsets()) for event in batch.events]
            with engine.begin() as connection:  # every event once more, bypassing the checkpoint
                projection.apply(connection, {table.name: table for table in projection.tables}, consumed)
            again = Projector(engine, bus, projection)  # the checkpoint: nothing left to apply
            assert again.catch_up().events == 0
            again.close()
        assert digests(engine) == before

    def test_a_projector_behind_another_writes_only_what_the_other_has_not(
        self, kafka_settings: Settings, databases: NewDatabase, engines: OpenEngine
    ) -> None:
        kafka_settings.ensure_topics()
        publish(kafka_settings, small_history())
        reference = engines(databases())
        project_all(reference, kafka_settings)
        engine = engines(databases())
        bus = kafka_settings.bus()
        for projection in PROJECTIONS.values():
            behind = Projector(engine, bus, projection, batch_size=10_000)  # its batch: the whole topic
            ahead = Projector(engine, bus, projection, batch_size=7)
            ends = ahead.log.end_offsets()
            ahead.catch_up({where: end // 2 for where, end in ends.items()})  # half of each partition
            applied = ahead.stats.events
            behind.catch_up(ends)  # prepared all of its batch before its transaction found half of it stored
            assert applied > 0 and behind.stats.events < behind.stats.messages
            ahead.close()
            behind.close()
        assert digests(engine) == digests(reference)

    def test_two_replays_give_identical_tables_equal_to_the_live_ones(
        self, kafka_settings: Settings, databases: NewDatabase, engines: OpenEngine
    ) -> None:
        engine = projected_small_history(kafka_settings, engines(databases()))
        live = digests(engine)
        bus = kafka_settings.bus()
        sequential = [replay(engine, bus, projection, batch_size=53) for projection in PROJECTIONS.values()]
        rebuilt = [digests(engine)]
        collector = gc.get_threshold()
        during: list[int] = []
        concurrent = replay_all(
            engine,
            bus,
            list(PROJECTIONS.values()),
            batch_size=53,
            progress=lambda _name, _total: lambda _messages: during.append(gc.get_threshold()[0]),
        ).results
        rebuilt.append(digests(engine))
        # fewer garbage collections while rebuilding (a third of its CPU), as many as before once it is done
        assert during and min(during) >= 50_000
        assert gc.get_threshold() == collector and gc.get_freeze_count() == 0
        assert all(result.swapped and result.messages > 0 for result in [*sequential, *concurrent])
        assert rebuilt[0] == rebuilt[1] == live
        with engine.connect() as connection:
            assert set(load_checkpoint(connection, "incidents").values()) != {0}
            assert not [name for name in Base.metadata.tables if "__shadow" in name]
            leftovers = connection.execute(select(CHECKPOINTS.c.projection).distinct()).scalars().all()
            assert sorted(leftovers) == sorted(PROJECTIONS)

    def test_verify_reports_tampered_rows_and_leaves_the_live_tables_alone(
        self, kafka_settings: Settings, databases: NewDatabase, engines: OpenEngine
    ) -> None:
        kafka_settings.ensure_topics()
        history = small_history()
        publish(kafka_settings, history)
        engine = engines(databases())
        project_all(engine, kafka_settings)
        bus = kafka_settings.bus()
        assert [replay(engine, bus, projection, verify=True).differences for projection in PROJECTIONS.values()] == [
            0,
            0,
            0,
            0,
        ]
        victim = next(iter(fold_incidents(history)))
        dropped = next(event.event_id for event in history if isinstance(event, IncidentNoteAdded))
        with engine.begin() as connection:
            connection.execute(update(IncidentRow).where(IncidentRow.incident_id == victim).values(severity="low"))
            connection.execute(delete(IncidentTimelineRow).where(IncidentTimelineRow.event_id == dropped))
        tampered = digests(engine)

        result = replay(engine, bus, PROJECTIONS["incidents"], verify=True)
        assert not result.swapped
        found = {
            (comparison.table, difference.key, difference.problem, tuple(difference.columns))
            for comparison in result.comparisons
            for difference in comparison.differences
        }
        assert found == {
            ("incidents", (victim,), "changed", ("severity",)),
            ("incident_timeline", (dropped,), "missing in live", ()),
        }
        changed = next(d for c in result.comparisons for d in c.differences if d.problem == "changed")
        assert changed.columns["severity"][0] == "low"
        assert digests(engine) == tampered  # verify only reports

        replay(engine, bus, PROJECTIONS["incidents"])
        assert replay(engine, bus, PROJECTIONS["incidents"], verify=True).differences == 0

    def test_a_live_projector_carries_on_after_a_swap_and_rewinds_when_its_checkpoint_goes_back(
        self, kafka_settings: Settings, databases: NewDatabase, engines: OpenEngine
    ) -> None:
        kafka_settings.ensure_topics()
        history = small_history()
        publish(kafka_settings, history[:200])
        engine = engines(databases())
        bus = kafka_settings.bus()
        live = Projector(engine, bus, PROJECTIONS["incidents"], batch_size=50)
        live.catch_up()
        replay(engine, bus, PROJECTIONS["incidents"])
        publish(kafka_settings, history[200:])
        live.catch_up()
        assert live.stats.rewinds == 0
        reference = engines(databases())
        project_all(reference, kafka_settings)
        expected = digests(reference, [PROJECTIONS["incidents"]])
        assert digests(engine, [PROJECTIONS["incidents"]]) == expected

        with engine.begin() as connection:  # the database restored from an older backup under the projector
            for table in PROJECTIONS["incidents"].tables:
                connection.execute(delete(table))
            connection.execute(delete(CHECKPOINTS))
        publish(
            kafka_settings,
            [IncidentNoteAdded(stream_id="cam-000", incident_id="cam-000:000000000000", actor="ana", note="late")],
        )
        live.catch_up()
        live.close()
        assert live.stats.rewinds == 1
        with engine.connect() as connection:
            timeline = connection.scalar(select(func.count()).select_from(IncidentTimelineRow))
        assert timeline == len([event for event in history if isinstance(event, IncidentEvent)]) + 1

    def test_a_projector_killed_mid_batch_resumes_to_the_same_tables(
        self, kafka_settings: Settings, databases: NewDatabase, engines: OpenEngine
    ) -> None:
        kafka_settings.ensure_topics()
        events = [
            event
            for event in synthetic_history(streams=12, incidents_per_stream=110, windows_per_incident=1, seed=5)
            if isinstance(event, IncidentEvent)
        ]
        publish(kafka_settings, events)
        reference = engines(databases())
        project_all(reference, kafka_settings)
        expected = digests(reference, [PROJECTIONS["incidents"]])

        url = databases()
        engine = engines(url)
        worker = _projector_process(kafka_settings, url, follow=True)
        try:
            deadline = time.monotonic() + 240
            applied = 0
            while applied < len(events) // 5:
                assert worker.poll() is None, "the projector exited on its own"
                assert time.monotonic() < deadline, "the projector made no progress"
                time.sleep(0.02)
                applied = _checkpoint_total(engine)
            os.kill(worker.pid, signal.SIGKILL)
        finally:
            worker.kill()
            worker.wait()
        with engine.connect() as connection:
            at_kill = _checkpoint_total(engine)
            timeline = connection.scalar(select(func.count()).select_from(IncidentTimelineRow))
        assert 0 < at_kill < len(events), "killed after it had finished: nothing was interrupted"
        assert timeline == at_kill  # rows and checkpoint were committed together, or not at all

        finisher = _projector_process(kafka_settings, url, follow=False)
        assert finisher.wait(timeout=300) == 0
        assert _checkpoint_total(engine) == len(events)
        assert digests(engine, [PROJECTIONS["incidents"]]) == expected


def _checkpoint_total(engine: Engine) -> int:
    with engine.connect() as connection:
        return sum(load_checkpoint(connection, "incidents").values())


_PROJECTOR = """
import sys, threading
from config import load_settings
from projections.database import open_database
from projections.projector import Projector
from projections.read_models import PROJECTIONS
settings = load_settings()
projector = Projector(open_database(settings), settings.bus(), PROJECTIONS["incidents"], batch_size=150)
projector.run(threading.Event()) if sys.argv[1] == "follow" else projector.catch_up()
"""


def _projector_process(settings: Settings, url: str, *, follow: bool) -> subprocess.Popen[Any]:
    environment = {
        **os.environ,
        "DISTRESS_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "DISTRESS_TOPIC_PREFIX": settings.topic_prefix,
        "DISTRESS_DATABASE_URL": url,
        "DISTRESS_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO_ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-c", _PROJECTOR, "follow" if follow else "once"], cwd=REPO_ROOT, env=environment
    )


class TestSqliteProjections(ProjectionSuite):
    @pytest.fixture
    def databases(self, sqlite_databases: NewDatabase) -> NewDatabase:
        return sqlite_databases


class TestPostgresProjections(ProjectionSuite):
    @pytest.fixture
    def databases(self, postgres_databases: NewDatabase) -> NewDatabase:
        return postgres_databases


def test_a_transcript_row_inserted_by_hand_is_reported_by_verify(
    kafka_settings: Settings, sqlite_databases: NewDatabase, engines: OpenEngine
) -> None:
    engine = projected_small_history(kafka_settings, engines(sqlite_databases()))
    with engine.begin() as connection:
        transcripts = Base.metadata.tables["transcripts"]
        row = dict(connection.execute(select(transcripts)).mappings().first() or {})
        connection.execute(insert(transcripts).values({**row, "event_id": "forged"}))
    result = replay(engine, kafka_settings.bus(), PROJECTIONS["transcripts"], verify=True)
    found = [
        (difference.key, difference.problem)
        for comparison in result.comparisons
        for difference in comparison.differences
    ]
    assert found == [(("forged",), "missing in rebuilt")]


class _BrokenTranscripts(TranscriptsProjection):
    """A projection whose rows cannot be written (as when its database refuses them)."""

    name = "broken"

    def write(self, connection: Connection, tables: TableMap, prepared: Any) -> None:
        raise RuntimeError("the database refused the batch")


def test_a_failing_concurrent_rebuild_is_raised_and_leaves_no_shadow_behind(
    kafka_settings: Settings, sqlite_databases: NewDatabase, engines: OpenEngine
) -> None:
    engine = projected_small_history(kafka_settings, engines(sqlite_databases()))
    live = digests(engine)
    healthy = [PROJECTIONS["incidents"], PROJECTIONS["alerts"]]
    with pytest.raises(RuntimeError, match="refused"):
        replay_all(engine, kafka_settings.bus(), [*healthy, _BrokenTranscripts()], batch_size=10)
    assert digests(engine) == live  # each healthy one was swapped in (same rows) or discarded
    with engine.connect() as connection:
        assert not [name for name in inspect(connection).get_table_names() if name.endswith("__shadow")]
        checkpoints = set(connection.execute(select(CHECKPOINTS.c.projection).distinct()).scalars())
        assert checkpoints == set(PROJECTIONS)


class _RecordingTranscripts(TranscriptsProjection):
    """The transcripts projection, noting whether each batch's commit waits for the disk (PostgreSQL)."""

    def __init__(self) -> None:
        self.synchronous: list[str] = []

    def write(self, connection: Connection, tables: TableMap, prepared: Any) -> None:
        self.synchronous.append(str(connection.exec_driver_sql("SHOW synchronous_commit").scalar()))
        super().write(connection, tables, prepared)


def test_only_a_rebuild_commits_without_waiting_for_the_disk(
    kafka_settings: Settings, postgres_databases: NewDatabase, engines: OpenEngine
) -> None:
    kafka_settings.ensure_topics()
    publish(kafka_settings, small_history())
    engine = engines(postgres_databases())
    bus = kafka_settings.bus()
    live, rebuilt = _RecordingTranscripts(), _RecordingTranscripts()
    projector = Projector(engine, bus, live, batch_size=5)
    projector.catch_up()
    projector.close()
    replay(engine, bus, rebuilt, batch_size=5)
    assert set(live.synchronous) == {"on"} and set(rebuilt.synchronous) == {"off"}
    assert len(rebuilt.synchronous) > 1
    with engine.connect() as connection:  # a setting of the transaction alone
        assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


class _Asking(TopicLog):
    """A log that notes, at every read, how many messages it asks for and how many are left to read."""

    asked: list[tuple[int, int]]

    def read(
        self,
        max_messages: int = 2000,
        timeout_s: float = 0.5,
        until: Mapping[Partition, int] | None = None,
        latest_only: frozenset[str] = frozenset(),
    ) -> LogBatch:
        self.asked = [*getattr(self, "asked", []), (max_messages, self.remaining(until or {}))]
        return super().read(max_messages, timeout_s, until, latest_only)


def test_catching_up_asks_for_no_more_messages_than_are_left(
    kafka_settings: Settings, sqlite_databases: NewDatabase, engines: OpenEngine
) -> None:
    kafka_settings.ensure_topics()
    publish(kafka_settings, small_history())
    bus = kafka_settings.bus()
    projection = PROJECTIONS["incidents"]
    projector = Projector(engines(sqlite_databases()), bus, projection, batch_size=25)
    projector.log.close()
    projector.log = asking = _Asking(bus, projection.topics(bus.catalogue))
    # a read asked for more would wait its whole timeout for messages that are not there
    assert projector.catch_up().messages == sum(asking.end_offsets().values()) > 25
    projector.close()
    assert len(asking.asked) > 1 and all(asked <= left for asked, left in asking.asked)
