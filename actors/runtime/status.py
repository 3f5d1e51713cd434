"""What `distress status` shows: per-stage consumers and lag, and recent latency and activity, all read from Kafka.

It needs no running pipeline and imports no Ray (``tests/cli/test_status_imports.py`` checks): the command is a
quick look at the topics and consumer groups.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from actors.metrics import ObserverSnapshot, PipelineObserver
from actors.pipeline import StageSpec
from config import Settings
from events.kafka.admin import KafkaProbe


@dataclass(frozen=True, kw_only=True)
class StageHealth:
    stage: str
    group_id: str | None  # None: the stage keeps its position elsewhere (projections: in the database)
    consumers: int | None  # live members of the stage's consumer group: 0 means the stage is not running
    lag: int  # input events not finished yet


@dataclass(frozen=True, kw_only=True)
class PipelineStatus:
    """What `distress status` shows: per-stage consumers and lag now, latency and activity over a recent window."""

    window_s: float
    stages: tuple[StageHealth, ...]
    recent: ObserverSnapshot

    def as_json(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "stages": [asdict(stage) for stage in self.stages],
            "latency": {
                item.stage: {"p50_s": item.p50_s, "p95_s": item.p95_s, "count": item.count}
                for item in self.recent.latency
            },
            "streams": [asdict(stream) for stream in self.recent.streams],
            "incidents": [asdict(incident) for incident in self.recent.incidents],
            "alerts_sent": self.recent.alerts_sent,
            "alerts_failed": self.recent.alerts_failed,
        }


def pipeline_status(settings: Settings, stages: Sequence[StageSpec], *, window_s: float) -> PipelineStatus:
    """Lag and consumers from the stage groups, latency from the last ``window_s`` of events: all from Kafka."""
    probe = KafkaProbe(settings.kafka_connection())
    grouped = {spec.name: spec.backlog is None for spec in stages}
    health = tuple(
        StageHealth(
            stage=spec.name,
            group_id=spec.group_id(settings) if grouped[spec.name] else None,
            consumers=probe.group_members(spec.group_id(settings)) if grouped[spec.name] else None,
            lag=spec.unfinished(settings, probe),
        )
        for spec in stages
    )
    observer = PipelineObserver(settings.bus(), since_ms=int((time.time() - window_s) * 1000))
    try:
        observer.read_to_end()
        recent = observer.snapshot()
    finally:
        observer.close()
    return PipelineStatus(window_s=window_s, stages=health, recent=recent)
