"""Projectors: apply a projection's topics to its tables with exactly-once effect.

Order of one batch (all but step 0 in ONE database transaction):
  0. prepare what follows from the events alone (``Projection.prepare``), before the transaction;
  1. take the projection's writer lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL advisory lock);
  2. read the stored checkpoint (next offset per topic partition); drop events below it (already applied); if the
     checkpoint is *behind* where the reader stands in any partition (the tables were reset or restored under a
     running projector), roll back and re-read every partition from the checkpoint;
  3. write the rows of the batch;
  4. store the new checkpoint = the reader's position after the batch;
  5. commit.
Kafka offsets are never committed to the broker: on start the reader seeks to the stored checkpoint. A crash
before 5 leaves neither rows nor checkpoint, so the batch is read again; after 5 both are there, so it is not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table, delete, select

from events.kafka.bus import Bus
from events.kafka.connection import Partition
from events.kafka.log import LogBatch, TopicLog
from projections.database import lock, upsert
from projections.read_models import Projection, TableMap
from projections.schema import Base

log = logging.getLogger(__name__)

CHECKPOINTS: Table = Base.metadata.tables["projection_checkpoints"]


def load_checkpoint(connection: Connection, projection: str) -> dict[Partition, int]:
    rows = connection.execute(select(CHECKPOINTS).where(CHECKPOINTS.c.projection == projection)).mappings()
    return {(row["topic"], row["kafka_partition"]): row["next_offset"] for row in rows}


def save_checkpoint(connection: Connection, projection: str, positions: Mapping[Partition, int]) -> None:
    upsert(
        connection,
        CHECKPOINTS,
        [
            {"projection": projection, "topic": topic, "kafka_partition": partition, "next_offset": offset}
            for (topic, partition), offset in sorted(positions.items())
        ],
    )


def delete_checkpoint(connection: Connection, projection: str) -> None:
    connection.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.projection == projection))


@dataclass(kw_only=True)
class ProjectorStats:
    messages: int = 0
    events: int = 0
    undecodable: int = 0
    batches: int = 0
    rewinds: int = 0


class Projector:
    """One projection, its reader and its checkpoint. ``tables``/``checkpoint_name`` point it at shadow tables."""

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        projection: Projection,
        *,
        tables: TableMap | None = None,
        checkpoint_name: str | None = None,
        batch_size: int = 2000,
        durable: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.engine = engine
        self.projection = projection
        self.tables: TableMap = tables or {table.name: table for table in projection.tables}
        self.checkpoint_name = checkpoint_name or projection.name
        self.batch_size = batch_size
        # PostgreSQL: without ``durable`` a commit does not wait for its WAL to reach the disk. A crash may then lose
        # the last batches, but rows and checkpoint together, so they are read and applied again: for a shadow
        # rebuild, which a crash discards anyway (the swap itself is durable).
        self.durable = durable
        self.stats = ProjectorStats()
        with engine.connect() as connection:
            start = load_checkpoint(connection, self.checkpoint_name)
        topics = projection.topics(bus.catalogue)
        self.log = TopicLog(bus, topics, start=start, purpose=f"projection.{self.checkpoint_name}")
        self.latest_only_topics = frozenset(
            spec.name
            for spec in bus.catalogue.all()
            if spec.name in topics
            and spec.event_types
            and {event_type.event_type for event_type in spec.event_types} <= projection.latest_only
        )  # topics that carry nothing but event types of which only the latest per stream matters

    def step(self, timeout_s: float = 0.5, until: Mapping[Partition, int] | None = None) -> int:
        """Read and apply one batch; returns the number of messages it covered."""
        batch = self.log.read(
            max_messages=self.batch_size, timeout_s=timeout_s, until=until, latest_only=self.latest_only_topics
        )
        if batch.messages:
            self._apply(batch)
        return batch.messages

    def catch_up(
        self, until: Mapping[Partition, int] | None = None, progress: Callable[[int], None] | None = None
    ) -> ProjectorStats:
        """Apply everything up to ``until`` (default: the ends of the topics now)."""
        target = dict(until) if until is not None else self.log.end_offsets()
        while (left := self.log.remaining(target)) > 0:
            # One batch at a time, of no more messages than are left: a read waits for as many as it asks for, or
            # for its whole timeout, which the last batch of every rebuild used to spend.
            batches = self.log.read_until(
                target, max_messages=min(self.batch_size, left), latest_only=self.latest_only_topics
            )
            for batch in batches:
                self._apply(batch)
                if progress is not None:
                    progress(batch.messages)
                break
        return self.stats

    def run(self, stop: threading.Event, poll_timeout_s: float = 0.5) -> None:
        """Follow the topics until ``stop`` is set."""
        log.info("projector started", extra={"projection": self.checkpoint_name, "positions": str(self.log.positions)})
        try:
            while not stop.is_set():
                self.step(timeout_s=poll_timeout_s)
        finally:
            self.close()
            log.info("projector stopped", extra={"projection": self.checkpoint_name, "events": self.stats.events})

    def close(self) -> None:
        self.log.close()

    def _apply(self, batch: LogBatch) -> None:
        prepared = self.projection.prepare(self.engine.dialect, batch.events)
        with self.engine.begin() as connection:
            lock(connection, self.checkpoint_name)
            if not self.durable and connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            stored = load_checkpoint(connection, self.checkpoint_name)
            reading_from = {**self.log.positions, **batch.first_offsets}
            expected = {where: max(stored.get(where, 0), self.log.low_watermark(where)) for where in reading_from}
            if any(expected[where] < offset for where, offset in reading_from.items()):
                connection.rollback()
                self.log.seek(expected)
                self.stats.rewinds += 1
                log.info(
                    "checkpoint moved back; re-reading",
                    extra={"projection": self.checkpoint_name, "positions": str(expected)},
                )
                return
            fresh = [
                consumed
                for consumed in batch.events
                if consumed.offset >= stored.get((consumed.topic, consumed.partition), 0)
            ]
            if len(fresh) < len(batch.events):  # another projector applied some of them meanwhile
                prepared = self.projection.prepare(connection.dialect, fresh)
            self.projection.write(connection, self.tables, prepared)
            positions = self.log.positions
            save_checkpoint(
                connection,
                self.checkpoint_name,
                {where: max(offset, stored.get(where, 0)) for where, offset in positions.items()},
            )
        self.stats.messages += batch.messages
        self.stats.events += len(fresh)
        self.stats.undecodable += batch.undecodable
        self.stats.batches += 1
