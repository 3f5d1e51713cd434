"""Keeping the read models fresh from inside any process that hosts them (the pipeline, the dashboard).

Projectors apply each batch exactly once under a per-projection lock with the checkpoint in the same transaction
(see ``projections.projector``), so the dashboard and ``distress run`` may each host a pool on one database: the
second finds the work done. A projector that fails (broker down, topics not created yet) is rebuilt with
backoff; its last error is reported by ``/api/health``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import Engine

from config.redaction import redact_text
from events.kafka.bus import Bus
from projections.projector import Projector
from projections.read_models import PROJECTIONS, Projection

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


@dataclass(kw_only=True)
class ProjectorStatus:
    running: bool = False
    events: int = 0
    error: str | None = None


class ProjectorPool:
    """One thread per projection, following its topics until ``stop``."""

    def __init__(
        self,
        engine: Engine,
        bus: Bus,
        projections: tuple[Projection, ...] = tuple(PROJECTIONS.values()),
        *,
        poll_timeout_s: float = 0.2,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.projections = projections
        self.poll_timeout_s = poll_timeout_s
        self.statuses = {projection.name: ProjectorStatus() for projection in projections}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for projection in self.projections:
            thread = threading.Thread(
                target=self._follow, args=(projection,), name=f"projector-{projection.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()

    def _follow(self, projection: Projection) -> None:
        status = self.statuses[projection.name]
        delay = 0.5
        while not self._stop.is_set():
            projector: Projector | None = None
            try:
                projector = Projector(self.engine, self.bus, projection)
                status.running, status.error, delay = True, None, 0.5
                earlier = status.events
                while not self._stop.is_set():
                    projector.step(timeout_s=self.poll_timeout_s)
                    status.events = earlier + projector.stats.events
            except Exception as error:  # reported by /api/health, retried with backoff
                status.running, status.error = False, redact_text(f"{type(error).__name__}: {error}")
                log.warning(
                    "projector failed; retrying",
                    extra={"projection": projection.name, "error": status.error, "retry_in_s": delay},
                )
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
            finally:
                if projector is not None:
                    projector.close()
        status.running = False
