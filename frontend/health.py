"""Whether what the dashboard shows can be trusted now: event log (Kafka), database and pipeline stages.

Asked by ``/api/health`` and by a background task that pushes every change to the open pages (the live
indicator), so a broker that went down or a stage that stopped is visible within seconds instead of silent.
Every Kafka question has a short timeout, one probe runs at a time and its answer is reused for a few seconds,
so any number of pages and load-balancer checks cost one probe per few seconds, and a dead broker costs
``PROBE_TIMEOUT_S``, not the client library's default waits. Lag comes from the same code `distress status`
uses (``KafkaProbe`` and each ``StageSpec``'s own measure), so the two never disagree.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from actors.pipeline import StageSpec, default_stages
from config import Settings
from config.redaction import redact_text
from events.kafka.admin import KafkaProbe, MetricsError
from frontend.schemas import BrokerHealth, Health, ProjectorHealth, StageHealthOut, StageState
from frontend.sse import Broadcaster, LiveUpdate
from projections.pool import ProjectorPool

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
MAX_AGE_S = 5.0  # a probe answers every health request for this long
WATCH_INTERVAL_S = 3.0  # how often the pages' indicator is brought up to date
# A stage owing more input than this is "behind": at one event per second and stream (chunks, features, scores),
# a hundred seconds of ten streams. A running stage commits every batch (at most a few hundred events).
BEHIND_AFTER_EVENTS = 1000


def _error_text(error: Exception) -> str:
    return redact_text(f"{type(error).__name__}: {error}")


def stage_health(spec: StageSpec, settings: Settings, probe: KafkaProbe) -> StageHealthOut:
    """One stage's consumers and lag, and what they mean for an operator."""
    group_id = spec.group_id(settings) if spec.backlog is None else None
    consumers = probe.group_members(group_id) if group_id is not None else None
    lag = spec.unfinished(settings, probe)
    state: StageState
    if lag > BEHIND_AFTER_EVENTS:
        state = "behind"
    elif consumers == 0:
        state = "stopped" if lag else "idle"
    else:
        state = "ok"
    return StageHealthOut(stage=spec.name, group_id=group_id, consumers=consumers, lag=lag, state=state)


class HealthMonitor:
    """Probes the broker, the database and the stage groups; ``report`` adds the in-process parts."""

    def __init__(
        self,
        settings: Settings,
        ping_database: Callable[[], None],
        projectors: ProjectorPool | None,
        live_clients: Callable[[], int],
        *,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self._settings = settings
        self._stages = default_stages(settings)
        self._ping_database = ping_database
        self._projectors = projectors
        self._live_clients = live_clients
        self._kafka = KafkaProbe(settings.kafka_connection(), timeout_s=timeout_s)
        self._lock = threading.Lock()
        self._last: Health | None = None
        self._last_at = 0.0

    def report(self, max_age_s: float = MAX_AGE_S) -> Health:
        """Health from a probe at most ``max_age_s`` old (one probe at a time: a caller may wait for another's)."""
        with self._lock:
            if self._last is None or time.monotonic() - self._last_at > max_age_s:
                self._last = self._probe()
                self._last_at = time.monotonic()
            probed = self._last
        projectors = (
            {}
            if self._projectors is None
            else {
                name: ProjectorHealth(running=status.running, events=status.events, error=status.error)
                for name, status in self._projectors.statuses.items()
            }
        )
        reasons = [
            *probed.reasons,
            *(f"projector {name} stopped" for name, item in projectors.items() if not item.running),
        ]
        return probed.model_copy(
            update={
                "status": "degraded" if reasons else "ok",
                "reasons": reasons,
                "projectors": projectors,
                "live_clients": self._live_clients(),
            }
        )

    def _probe(self) -> Health:
        database_error: str | None = None
        try:
            self._ping_database()
        except Exception as error:  # any driver error means "not ready"
            database_error = _error_text(error)
        broker_error = self._broker_error()
        stages: list[StageHealthOut] = []
        unknown: dict[str, str] = {}  # stage → why it could not be measured
        if broker_error is None:
            # Stage by stage: one whose measure needs something else that is down (the projections keep their
            # position in the database) must not hide the lag of all the others.
            for spec in self._stages:
                try:
                    stages.append(stage_health(spec, self._settings, self._kafka))
                except MetricsError as error:
                    broker_error = self._broker_error()
                    if broker_error is not None:  # the broker went away meanwhile: say that, and stop asking it
                        stages, unknown = [], {}
                        break
                    unknown[spec.name] = redact_text(str(error))
        pipeline_error = "; ".join(f"stage {name}: {error}" for name, error in unknown.items()) or None
        reasons = [
            *(["event log (Kafka) unreachable"] if broker_error else []),
            *(["database unavailable"] if database_error else []),
            *(
                ["pipeline state unknown"]
                if unknown and not stages
                else (f"stage {name} state unknown" for name in unknown)
            ),
            *(
                f"stage {stage.stage} not running, {stage.lag} events waiting"
                for stage in stages
                if stage.state == "stopped"
            ),
            *(f"stage {stage.stage} behind, {stage.lag} events waiting" for stage in stages if stage.state == "behind"),
        ]
        return Health(
            status="degraded" if reasons else "ok",
            reasons=reasons,
            checked_at=datetime.now(UTC),
            broker=BrokerHealth(reachable=broker_error is None, error=broker_error),
            database=database_error is None,
            database_error=database_error,
            pipeline=stages,
            pipeline_error=pipeline_error,
            projectors={},
            live_clients=0,
        )

    def _broker_error(self) -> str | None:
        try:
            self._kafka.ping()
        except MetricsError as error:
            return redact_text(str(error))
        return None


async def watch_health(monitor: HealthMonitor, broadcaster: Broadcaster, interval_s: float) -> None:
    """Probe every ``interval_s`` (until cancelled) and tell the pages whenever status or reasons change."""
    told: dict[str, object] | None = None
    while True:
        try:
            health = await asyncio.to_thread(monitor.report, 0.0)
            summary: dict[str, object] = {"status": health.status, "reasons": health.reasons}
            if summary != told:
                broadcaster.publish_state(LiveUpdate(kind="health", data=summary))
                told = summary
        except Exception as error:  # a probe that crashed is retried on the next round
            log.warning("health probe failed", extra={"error": _error_text(error)})
        await asyncio.sleep(interval_s)
