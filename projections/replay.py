"""Rebuilding a projection from offset 0 into shadow tables, then swapping it in atomically or comparing it.

The live tables keep serving (and the live projector keeps running) during a rebuild. The swap is one
transaction under the projection's writer lock: it first makes sure the shadow has read at least as far as the
live checkpoint, then replaces the live rows with the shadow rows and the live checkpoint with the shadow's.
Readers see either the old contents or the new, never a mix. ``verify`` rebuilds to exactly the live checkpoint
and compares row by row instead of swapping.

``replay_all`` rebuilds several projections at once, one thread each. Every rebuild has its own reader, shadow
tables, checkpoint and transactions, so they share nothing but the engine's connection pool; while one waits for
PostgreSQL, or runs SQLite's C code (which releases the GIL), another reads and decodes.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Engine, MetaData, Table, delete, insert, select

from events.kafka.bus import Bus
from events.kafka.connection import Partition
from projections.database import RowKey, lock, table_contents
from projections.projector import Projector, delete_checkpoint, load_checkpoint, save_checkpoint
from projections.read_models import Projection

SHADOW_SUFFIX = "__shadow"
MAX_SWAP_ATTEMPTS = 20
ProgressFactory = Callable[[str, int], Callable[[int], None]]


class ReplayError(Exception):
    """A rebuild could not be completed; the live tables were left as they were."""


@dataclass(frozen=True, kw_only=True)
class RowDifference:
    key: RowKey
    problem: str  # "missing in live", "missing in rebuilt", "changed"
    columns: dict[str, tuple[Any, Any]]  # column -> (live, rebuilt), for changed rows


@dataclass(frozen=True, kw_only=True)
class TableComparison:
    table: str
    live_rows: int
    rebuilt_rows: int
    differences: list[RowDifference]


@dataclass(kw_only=True)
class ReplayResult:
    projection: str
    messages: int
    events: int
    undecodable: int
    seconds: float
    swapped: bool
    comparisons: list[TableComparison] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def differences(self) -> int:
        return sum(len(comparison.differences) for comparison in self.comparisons)


@dataclass(kw_only=True)
class ReplayRun:
    """Several projections rebuilt together; ``seconds`` is the wall-clock time of the whole run."""

    results: list[ReplayResult]
    seconds: float

    @property
    def messages(self) -> int:
        return sum(result.messages for result in self.results)

    @property
    def events_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def differences(self) -> int:
        return sum(result.differences for result in self.results)


def shadow_tables(projection: Projection) -> dict[str, Table]:
    """Same columns and keys as the live tables, under other names and without secondary indexes."""
    metadata = MetaData()
    return {
        table.name: Table(
            f"{table.name}{SHADOW_SUFFIX}",
            metadata,
            *(
                Column(column.name, column.type, primary_key=column.primary_key, nullable=column.nullable)
                for column in table.columns
            ),
        )
        for table in projection.tables
    }


def _reached(positions: Mapping[Partition, int]) -> dict[Partition, int]:
    return {where: offset for where, offset in positions.items() if offset > 0}


class ShadowRebuild:
    """One projection rebuilt from the start of its topics into fresh shadow tables."""

    def __init__(self, engine: Engine, bus: Bus, projection: Projection, *, batch_size: int = 2000) -> None:
        self.engine = engine
        self.projection = projection
        self.live_tables = {table.name: table for table in projection.tables}
        self.tables = shadow_tables(projection)
        self.shadow_name = f"{projection.name}{SHADOW_SUFFIX}"
        with engine.begin() as connection:
            lock(connection, self.shadow_name)
            for table in self.tables.values():
                table.drop(connection, checkfirst=True)
                table.create(connection)
            delete_checkpoint(connection, self.shadow_name)
        self.projector = Projector(
            engine,
            bus,
            projection,
            tables=self.tables,
            checkpoint_name=self.shadow_name,
            batch_size=batch_size,
            durable=False,
        )

    def live_checkpoint(self) -> dict[Partition, int]:
        with self.engine.connect() as connection:
            return load_checkpoint(connection, self.projection.name)

    def target(self) -> dict[Partition, int]:
        """The ends of the topics when the rebuild began, or the live checkpoint where that is further (it cannot
        be, normally). What comes later is for the live projector, or for the swap's catching up to it."""
        ends = self.projector.log.ends_when_opened
        live = self.live_checkpoint()
        return {where: max(end, live.get(where, 0)) for where, end in ends.items()}

    def build(self, until: Mapping[Partition, int], progress: Callable[[int], None] | None = None) -> None:
        self.projector.catch_up(until, progress)

    def swap(self) -> None:
        """Replace the live rows and checkpoint with the shadow's, atomically; then drop the shadow."""
        for _ in range(MAX_SWAP_ATTEMPTS):
            with self.engine.begin() as connection:
                lock(connection, self.projection.name)
                live = load_checkpoint(connection, self.projection.name)
                shadow = load_checkpoint(connection, self.shadow_name)
                lagging = {where: offset for where, offset in live.items() if offset > shadow.get(where, 0)}
                if not lagging:
                    for name, shadow_table in self.tables.items():
                        live_table = self.live_tables[name]
                        connection.execute(delete(live_table))
                        connection.execute(
                            insert(live_table).from_select(
                                [column.name for column in live_table.columns],
                                select(*(shadow_table.c[column.name] for column in live_table.columns)),
                            )
                        )
                    delete_checkpoint(connection, self.projection.name)
                    save_checkpoint(connection, self.projection.name, shadow)
                    self._drop(connection)
                    return
            self.build({**shadow, **lagging})  # the live projector moved on meanwhile: catch up, then retry
        raise ReplayError(f"{self.projection.name}: the live projector kept moving ahead; swap not done")

    def compare(self) -> list[TableComparison]:
        """Row-by-row differences between the live tables and a shadow rebuilt to the same checkpoint."""
        for _ in range(MAX_SWAP_ATTEMPTS):
            with self.engine.begin() as connection:
                lock(connection, self.projection.name)  # hold the live projector still while comparing
                live = load_checkpoint(connection, self.projection.name)
                shadow = load_checkpoint(connection, self.shadow_name)
                if _reached(live) == _reached(shadow):
                    return [
                        _compare(
                            name,
                            table_contents(connection, self.live_tables[name]),
                            table_contents(connection, shadow_table),
                        )
                        for name, shadow_table in self.tables.items()
                    ]
            if any(offset > live.get(where, 0) for where, offset in _reached(shadow).items()):
                raise ReplayError(
                    f"{self.projection.name}: the live checkpoint moved backwards during verify "
                    "(is another replay running?)"
                )
            self.build(live)
        raise ReplayError(f"{self.projection.name}: the live projector kept moving ahead; nothing compared")

    def discard(self) -> None:
        with self.engine.begin() as connection:
            lock(connection, self.shadow_name)
            self._drop(connection)

    def close(self) -> None:
        self.projector.close()

    def _drop(self, connection: Any) -> None:
        for table in self.tables.values():
            table.drop(connection, checkfirst=True)
        delete_checkpoint(connection, self.shadow_name)


def _compare(name: str, live: dict[RowKey, dict[str, Any]], rebuilt: dict[RowKey, dict[str, Any]]) -> TableComparison:
    differences: list[RowDifference] = []
    for key in sorted(live.keys() | rebuilt.keys(), key=repr):
        if key not in live:
            differences.append(RowDifference(key=key, problem="missing in live", columns={}))
        elif key not in rebuilt:
            differences.append(RowDifference(key=key, problem="missing in rebuilt", columns={}))
        else:
            changed = {
                column: (value, rebuilt[key][column])
                for column, value in live[key].items()
                if rebuilt[key][column] != value
            }
            if changed:
                differences.append(RowDifference(key=key, problem="changed", columns=changed))
    return TableComparison(table=name, live_rows=len(live), rebuilt_rows=len(rebuilt), differences=differences)


def replay(
    engine: Engine,
    bus: Bus,
    projection: Projection,
    *,
    verify: bool = False,
    progress: ProgressFactory | None = None,
    batch_size: int = 2000,
) -> ReplayResult:
    """Rebuild one projection from offset 0; swap it in, or (``verify``) compare it with the live tables."""
    started = time.perf_counter()
    rebuild = ShadowRebuild(engine, bus, projection, batch_size=batch_size)
    try:
        until = rebuild.live_checkpoint() if verify else rebuild.target()
        advance = progress(projection.name, rebuild.projector.log.remaining(until)) if progress else None
        rebuild.build(until, advance)
        comparisons: list[TableComparison] = []
        if verify:
            comparisons = rebuild.compare()
            rebuild.discard()
        else:
            rebuild.swap()
    except BaseException:
        rebuild.discard()
        raise
    finally:
        rebuild.close()
    stats = rebuild.projector.stats
    return ReplayResult(
        projection=projection.name,
        messages=stats.messages,
        events=stats.events,
        undecodable=stats.undecodable,
        seconds=time.perf_counter() - started,
        swapped=not verify,
        comparisons=comparisons,
    )


def replay_all(
    engine: Engine,
    bus: Bus,
    projections: Sequence[Projection],
    *,
    verify: bool = False,
    progress: ProgressFactory | None = None,
    batch_size: int = 2000,
) -> ReplayRun:
    """``replay`` for each projection, concurrently; each swaps (or compares) on its own as soon as it is done.

    On the first failure, or Ctrl-C, the others stop after their current batch and are discarded like any failed
    rebuild (one that has already swapped stays swapped); the failure is raised once all of them have ended.
    """
    started = time.perf_counter()
    stop = threading.Event()

    def stoppable(name: str, total: int) -> Callable[[int], None]:
        advance = progress(name, total) if progress else None

        def step(messages: int) -> None:
            if stop.is_set():
                raise ReplayError(f"{name}: interrupted; the live tables were left as they were")
            if advance is not None:
                advance(messages)

        return step

    workers = ThreadPoolExecutor(max_workers=max(1, len(projections)), thread_name_prefix="replay")
    with _fewer_collections(), workers as pool:
        futures = [
            pool.submit(replay, engine, bus, projection, verify=verify, progress=stoppable, batch_size=batch_size)
            for projection in projections
        ]
        try:
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            stop.set()
            raise
        failure = next((error for future in finished if (error := future.exception()) is not None), None)
        if failure is not None:
            stop.set()
            raise failure
    return ReplayRun(results=[future.result() for future in futures], seconds=time.perf_counter() - started)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Rebuilding allocates an object or ten per event, and with the collector's default thresholds (a young
    collection every 700 allocations, older ones after 10 of those) collecting took a third of a rebuild's CPU,
    most of it going over objects that were there before it began and stay. So those are frozen out of the
    collector's sight for the rebuild, and young collections run every 50,000 allocations: the few cycles a
    rebuild leaves (SQLAlchemy's) are still collected, only later."""
    with _COLLECTIONS:
        if not _REBUILDS:
            _REBUILDS.append(gc.get_threshold())
            gc.freeze()
            gc.set_threshold(max(_REBUILDS[0][0], 50_000), *_REBUILDS[0][1:])
        _REBUILDS.append(None)
    try:
        yield
    finally:
        with _COLLECTIONS:
            _REBUILDS.pop()
            if len(_REBUILDS) == 1:  # the last rebuild running in this process: as it was before
                gc.set_threshold(*_REBUILDS.pop())
                gc.unfreeze()


_COLLECTIONS = threading.Lock()
_REBUILDS: list[Any] = []  # the thresholds before the first of the rebuilds now running, then one entry for each
