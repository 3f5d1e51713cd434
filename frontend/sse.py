"""Live updates: what changed in the read models, pushed to every open page as server-sent events.

The feed watches the projection checkpoints (one small query per poll); only when a projection moved does it
look closer. New incident-timeline rows are found by their Kafka position, so every incident transition is
announced exactly once per page, in order. Pages react by re-fetching the fragments they show, so the HTML is
rendered in one place (the templates) whether it arrives with the page or with an update.

SSE rather than WebSocket: one-way, plain HTTP, automatic reconnection in the browser (the page re-syncs
everything on reconnect, so an update missed while disconnected is never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from frontend.queries import timeline_after, timeline_ends
from projections.projector import CHECKPOINTS
from projections.schema import IncidentRow

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
QUEUE_SIZE = 256
RECONNECT_MS = 2000


@dataclass(frozen=True, kw_only=True)
class LiveUpdate:
    """One server-sent event: ``kind`` is ``incidents``, ``streams``, ``alerts``, ``health`` or ``resync``."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return f"event: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n".encode()


class ChangeFeed:
    """Turns projection progress into ``LiveUpdate``s; ``poll`` is synchronous (run it in a worker thread)."""

    WATCHED = ("incidents", "streams", "alerts", "transcripts")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._positions: dict[str, tuple[tuple[str, int, int], ...]] | None = None
        self._timeline_cursor: dict[int, int] = {}

    def poll(self) -> list[LiveUpdate]:
        positions = self._checkpoints()
        if self._positions is None:  # first look: start from now, announce nothing old
            self._positions = positions
            self._timeline_cursor = timeline_ends(self.engine)
            return []
        moved = {name for name in self.WATCHED if positions.get(name) != self._positions.get(name)}
        self._positions = positions
        updates: list[LiveUpdate] = []
        if "incidents" in moved:
            changed = self._incident_changes()
            if changed:
                updates.append(LiveUpdate(kind="incidents", data={"incidents": changed}))
        if moved & {"streams", "transcripts", "incidents"}:
            updates.append(LiveUpdate(kind="streams"))
        if "alerts" in moved:
            updates.append(LiveUpdate(kind="alerts"))
        return updates

    def _checkpoints(self) -> dict[str, tuple[tuple[str, int, int], ...]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(CHECKPOINTS).where(CHECKPOINTS.c.projection.in_(self.WATCHED))).all()
        positions: dict[str, list[tuple[str, int, int]]] = {}
        for projection, topic, partition, offset in rows:
            positions.setdefault(projection, []).append((topic, partition, offset))
        return {name: tuple(sorted(items)) for name, items in positions.items()}

    def _incident_changes(self) -> list[dict[str, Any]]:
        rows = timeline_after(self.engine, self._timeline_cursor)
        for row in rows:
            partition = row["kafka_partition"]
            self._timeline_cursor[partition] = max(row["kafka_offset"], self._timeline_cursor.get(partition, -1))
        latest = {row["incident_id"]: row["event_type"] for row in rows}
        if not latest:
            return []
        table = IncidentRow.__table__
        with self.engine.connect() as connection:
            incidents = (
                connection.execute(
                    select(
                        table.c.incident_id, table.c.stream_id, table.c.status, table.c.severity, table.c.clip_sha256
                    ).where(table.c.incident_id.in_(list(latest)))
                )
                .mappings()
                .all()
            )
        return [
            {
                "incident_id": row["incident_id"],
                "stream_id": row["stream_id"],
                "status": row["status"],
                "severity": row["severity"],
                "has_clip": row["clip_sha256"] is not None,
                "event_type": latest[row["incident_id"]],
            }
            for row in incidents
        ]


class Broadcaster:
    """Fan-out to subscribers' bounded queues; a subscriber that falls behind is told to re-sync instead.

    A *state* (``publish_state``) is also remembered, latest per kind, and told to every page that connects later:
    a page opened while the broker is down must not show "live" until the next change.
    """

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[LiveUpdate | None]] = set()
        self._states: dict[str, LiveUpdate] = {}

    @property
    def clients(self) -> int:
        return len(self._queues)

    def subscribe(self) -> asyncio.Queue[LiveUpdate | None]:
        queue: asyncio.Queue[LiveUpdate | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[LiveUpdate | None]) -> None:
        self._queues.discard(queue)

    def publish(self, update: LiveUpdate) -> None:
        for queue in self._queues:
            try:
                queue.put_nowait(update)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(LiveUpdate(kind="resync"))

    def publish_state(self, update: LiveUpdate) -> None:
        self._states[update.kind] = update
        self.publish(update)

    @property
    def states(self) -> list[LiveUpdate]:
        return list(self._states.values())

    def close(self) -> None:
        """Ends every open stream (a ``None`` tells its generator to return)."""
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)


async def follow(feed: ChangeFeed, broadcaster: Broadcaster, interval_s: float) -> None:
    """Poll the feed forever (until cancelled) and broadcast what it finds; database hiccups are retried."""
    while True:
        try:
            for update in await asyncio.to_thread(feed.poll):
                broadcaster.publish(update)
        except Exception as error:  # e.g. SQLite busy during a replay swap: the next poll catches up
            log.warning("live update poll failed", extra={"error": f"{type(error).__name__}: {error}"})
        await asyncio.sleep(interval_s)


async def event_stream(broadcaster: Broadcaster, hello: dict[str, Any]) -> AsyncIterator[bytes]:
    """The body of one ``text/event-stream`` response: a greeting and the current states, then updates, with
    keep-alive comments."""
    queue = broadcaster.subscribe()
    try:
        yield b"".join(
            [
                f"retry: {RECONNECT_MS}\n".encode(),
                LiveUpdate(kind="hello", data=hello).encode(),
                *(state.encode() for state in broadcaster.states),
            ]
        )
        while True:
            try:
                update = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if update is None:
                return
            yield update.encode()
    finally:
        broadcaster.unsubscribe(queue)
