"""Pipeline metrics derived from the events themselves: per-stage latency along the causation chain, consumer
lag per stage group, and the run bookkeeping (streams, incidents, alerts) that `distress run --until-eof` and
`distress status` report.

Everything is computed from Kafka, the system of record, so a restarted metrics actor or a `distress status` on
another machine reconstructs the same numbers; no stage has to report anything.

Latency of a stage = Kafka timestamp of the stage's output event - Kafka timestamp of the audio chunk it
ultimately derives from (found by following ``causation_id`` links: chunk → features → score → incident → alert).
A chunk's timestamp is when capture handed it to Kafka, i.e. after its audio was complete, so the figures are
pipeline latency and exclude the chunk length itself. The alert figure uses AlertDispatched, which is published
right after Apprise accepted the notification.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from events import Event
from events.catalogue import (
    AlertDispatched,
    AlertFailed,
    AudioChunkCaptured,
    IncidentEscalated,
    IncidentOpened,
    StreamEnded,
    StreamFailed,
    StreamStarted,
)
from events.kafka.admin import MetricsError
from events.kafka.bus import Bus
from events.kafka.connection import BusError
from events.kafka.consumer import ConsumedEvent
from events.kafka.log import TopicLog

log = logging.getLogger(__name__)

# Output event type → the pipeline stage whose latency it measures, in data-flow order.
LATENCY_STAGES: Mapping[str, str] = {
    "FeaturesExtracted": "features",
    "TranscriptProduced": "asr",
    "DistressScored": "score",
    "IncidentOpened": "incident",
    "AlertDispatched": "alert",
}
STAGE_ORDER = tuple(dict.fromkeys(LATENCY_STAGES.values()))
LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


# ------------------------------------------------------------------------------------------------- latency


@dataclass(frozen=True, kw_only=True)
class StageLatency:
    stage: str
    count: int
    p50_s: float
    p95_s: float


class LatencyTracker:
    """Resolves each event's originating chunk through causation links and records per-stage latency.

    Events from several topics arrive in no guaranteed order, so an event whose cause has not been seen yet waits
    (at most ``pending_s`` of event time) until it is. Memory is bounded: the id → origin map keeps the most recent
    ``max_ids`` entries and each stage keeps its last ``max_samples`` latencies for the percentiles.
    """

    def __init__(self, *, max_ids: int = 200_000, max_samples: int = 20_000, pending_s: float = 60.0) -> None:
        self._origins: OrderedDict[str, int] = OrderedDict()
        self._pending: dict[str, list[tuple[Event, int]]] = {}
        self._pending_order: deque[tuple[int, str]] = deque()
        self._samples: dict[str, deque[float]] = {stage: deque(maxlen=max_samples) for stage in STAGE_ORDER}
        self._counts: dict[str, int] = dict.fromkeys(STAGE_ORDER, 0)
        self._max_ids = max_ids
        self._pending_ms = int(pending_s * 1000)

    def observe(self, event: Event, timestamp_ms: int) -> list[tuple[str, float]]:
        """Record one event; returns the (stage, latency seconds) samples this resolved, possibly of earlier events."""
        resolved: list[tuple[str, float]] = []
        if isinstance(event, AudioChunkCaptured):
            self._resolve(event, timestamp_ms, timestamp_ms, resolved)
        elif event.causation_id is not None:
            origin = self._origins.get(event.causation_id)
            if origin is None:
                self._pending.setdefault(event.causation_id, []).append((event, timestamp_ms))
                self._pending_order.append((timestamp_ms, event.causation_id))
            else:
                self._resolve(event, timestamp_ms, origin, resolved)
        self._expire(timestamp_ms)
        return resolved

    def latencies(self) -> list[StageLatency]:
        """p50/p95 per stage that has produced at least one measured event, in data-flow order."""
        summary = []
        for stage in STAGE_ORDER:
            samples = self._samples[stage]
            if samples:
                p50, p95 = np.percentile(np.fromiter(samples, dtype=np.float64), [50, 95])
                summary.append(StageLatency(stage=stage, count=self._counts[stage], p50_s=float(p50), p95_s=float(p95)))
        return summary

    def _resolve(self, event: Event, timestamp_ms: int, origin_ms: int, resolved: list[tuple[str, float]]) -> None:
        work = [(event, timestamp_ms, origin_ms)]
        while work:
            current, current_ms, current_origin = work.pop()
            self._remember(current.event_id, current_origin)
            stage = LATENCY_STAGES.get(current.event_type)
            if stage is not None:
                latency_s = max(0.0, (current_ms - current_origin) / 1000)
                self._samples[stage].append(latency_s)
                self._counts[stage] += 1
                resolved.append((stage, latency_s))
            for waiting, waiting_ms in self._pending.pop(current.event_id, ()):
                work.append((waiting, waiting_ms, current_origin))

    def _remember(self, event_id: str, origin_ms: int) -> None:
        self._origins[event_id] = origin_ms
        if len(self._origins) > self._max_ids:
            self._origins.popitem(last=False)

    def _expire(self, now_ms: int) -> None:
        while self._pending_order and self._pending_order[0][0] < now_ms - self._pending_ms:
            _, cause = self._pending_order.popleft()
            self._pending.pop(cause, None)


# -------------------------------------------------------------------------------------------- the observer


@dataclass(kw_only=True)
class StreamProgress:
    stream_id: str
    source: str = ""
    sample_rate: int = 16_000
    state: str = "unseen"  # unseen → running → ended | failed
    reason: str = ""
    sequences: set[int] = field(default_factory=set)

    @property
    def finished(self) -> bool:
        return self.state in ("ended", "failed")


@dataclass(frozen=True, kw_only=True)
class IncidentSummary:
    id: str
    stream_id: str
    onset_s: float  # seconds from the start of that stream's audio
    reason: str  # why it was opened
    severity: str  # the latest: evidence arriving after the opening may have escalated it


@dataclass(frozen=True, kw_only=True)
class StreamSummary:
    id: str
    source: str
    state: str
    reason: str
    chunks: int


@dataclass(frozen=True, kw_only=True)
class ObserverSnapshot:
    streams: tuple[StreamSummary, ...]
    incidents: tuple[IncidentSummary, ...]
    alerts_sent: int
    alerts_failed: int
    alerts_sent_twice: int  # AlertDispatched repeated for one alert key: must stay 0
    latency: tuple[StageLatency, ...]
    events: int

    @property
    def chunks(self) -> int:
        return sum(stream.chunks for stream in self.streams)

    def finished(self, stream_ids: Iterable[str]) -> bool:
        states = {stream.id: stream.state for stream in self.streams}
        return all(states.get(stream_id) in ("ended", "failed") for stream_id in stream_ids)


EMPTY_SNAPSHOT = ObserverSnapshot(
    streams=(), incidents=(), alerts_sent=0, alerts_failed=0, alerts_sent_twice=0, latency=(), events=0
)


class PipelineObserver:
    """Follows every pipeline topic from a point in time and keeps what a run summary or a status view needs.

    ``stream_ids`` restricts the bookkeeping to some streams (one `--until-eof` run); ``on_latency`` receives each
    latency sample as it is resolved (the Prometheus exporter). It reads outside any consumer group, so it never
    disturbs the stages' groups; undecodable messages are skipped (the stages dead-letter them). Kafka failing to
    answer is a ``MetricsError``.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        since_ms: int,
        stream_ids: Iterable[str] | None = None,
        on_latency: Callable[[str, float], None] | None = None,
    ) -> None:
        catalogue = bus.catalogue
        topics = [spec.name for spec in catalogue.all() if spec.name != catalogue.dead_letters.name]
        try:
            self._log = TopicLog(bus, topics, since_ms=since_ms, purpose="observer")
        except BusError as error:
            raise MetricsError(str(error)) from error
        self._wanted = set(stream_ids) if stream_ids is not None else None
        self._on_latency = on_latency
        self._tracker = LatencyTracker()
        self._streams: dict[str, StreamProgress] = {}
        self._incidents: dict[str, IncidentOpened] = {}
        self._severities: dict[str, str] = {}
        self._dispatched: dict[str, int] = {}
        self._failed_keys: set[str] = set()
        self.events = 0

    def poll(self, max_messages: int = 1000, timeout_s: float = 0.2) -> int:
        events = self._log.read(max_messages, timeout_s).events
        for consumed in events:
            self._observe(consumed)
        return len(events)

    def read_to_end(self, timeout_s: float = 60.0) -> None:
        """Consume until every partition is read up to the end offsets of the moment this was called."""
        try:
            for batch in self._log.read_until(self._log.end_offsets(), within_s=timeout_s):
                for consumed in batch.events:
                    self._observe(consumed)
        except BusError as error:
            raise MetricsError(str(error)) from error

    def caught_up_with(self, ends: Mapping[tuple[str, int], int]) -> bool:
        return self._log.remaining(ends) == 0

    def _summary(self, opened: IncidentOpened) -> IncidentSummary:
        """Onset in seconds, from the stream's sample rate as known now (its StreamStarted may be read later)."""
        rate = (self._streams.get(opened.stream_id) or StreamProgress(stream_id=opened.stream_id)).sample_rate
        return IncidentSummary(
            id=opened.incident_id,
            stream_id=opened.stream_id,
            onset_s=opened.onset_sample / rate,
            reason=opened.reason,
            severity=self._severities.get(opened.incident_id, opened.severity),
        )

    def snapshot(self) -> ObserverSnapshot:
        streams = tuple(
            StreamSummary(
                id=progress.stream_id,
                source=progress.source,
                state=progress.state,
                reason=progress.reason,
                chunks=len(progress.sequences),
            )
            for progress in sorted(self._streams.values(), key=lambda item: item.stream_id)
        )
        return ObserverSnapshot(
            streams=streams,
            incidents=tuple(
                sorted(
                    (self._summary(opened) for opened in self._incidents.values()),
                    key=lambda item: (item.stream_id, item.onset_s),
                )
            ),
            alerts_sent=len(self._dispatched),
            alerts_failed=len(self._failed_keys - set(self._dispatched)),
            alerts_sent_twice=sum(count - 1 for count in self._dispatched.values()),
            latency=tuple(self._tracker.latencies()),
            events=self.events,
        )

    def close(self) -> None:
        self._log.close()

    def _observe(self, consumed: ConsumedEvent) -> None:
        event = consumed.event
        if self._wanted is not None and event.stream_id not in self._wanted:
            return
        self.events += 1
        for stage, latency_s in self._tracker.observe(event, consumed.timestamp_ms):
            if self._on_latency is not None:
                self._on_latency(stage, latency_s)
        progress = self._streams.setdefault(event.stream_id, StreamProgress(stream_id=event.stream_id))
        if isinstance(event, StreamStarted):
            progress.source, progress.sample_rate = event.source, event.sample_rate
            if not progress.finished:
                progress.state = "running"
        elif isinstance(event, StreamEnded):
            progress.state, progress.reason = "ended", event.reason
        elif isinstance(event, StreamFailed):
            progress.state, progress.reason = "failed", event.reason
        elif isinstance(event, AudioChunkCaptured):
            progress.sequences.add(event.sequence)
        elif isinstance(event, IncidentOpened) and event.incident_id not in self._incidents:
            self._incidents[event.incident_id] = event
        elif isinstance(event, IncidentEscalated):
            self._severities[event.incident_id] = event.to_severity
        elif isinstance(event, AlertDispatched):
            self._dispatched[event.alert_key] = self._dispatched.get(event.alert_key, 0) + 1
        elif isinstance(event, AlertFailed) and event.final:
            self._failed_keys.add(event.alert_key)


# ------------------------------------------------------------------------------------------- prometheus


class PrometheusExporter:
    """Per-stage latency histograms, consumer lag and event counts in the Prometheus text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._latency = Histogram(
            "distress_stage_latency_seconds",
            "Time from chunk capture to the stage's output event",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._lag = Gauge(
            "distress_consumer_lag_messages",
            "Messages a stage group has not committed yet",
            ["group"],
            registry=self.registry,
        )
        self._streams = Gauge("distress_streams", "Streams by state", ["state"], registry=self.registry)
        self._incidents = Counter("distress_incidents_opened", "Incidents opened", registry=self.registry)
        self._incidents_seen = 0

    def observe_latency(self, stage: str, latency_s: float) -> None:
        self._latency.labels(stage=stage).observe(latency_s)

    def set_lag(self, group_id: str, lag: int) -> None:
        self._lag.labels(group=group_id).set(lag)

    def update(self, snapshot: ObserverSnapshot) -> None:
        for state in ("running", "ended", "failed"):
            self._streams.labels(state=state).set(sum(1 for stream in snapshot.streams if stream.state == state))
        self._incidents.inc(len(snapshot.incidents) - self._incidents_seen)
        self._incidents_seen = len(snapshot.incidents)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
