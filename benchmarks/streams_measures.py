"""What the streams benchmark measures during a trial besides latency: CPU seconds per stage, the largest backlog
of every stage (also in seconds of its input), and the time from the distress onset in the audio to its alert."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from actors.pipeline import StageSpec
from actors.runtime.driver import PipelineRuntime
from config import Settings
from events.catalogue import AlertDispatched, StreamStarted
from events.kafka.admin import KafkaProbe, MetricsError
from events.kafka.log import read_all

BACKLOG_POLL_S = 5.0  # each sample asks the broker for every group's offsets: keep it rare


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 for one that is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds every core spent on anything but idling, since boot."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds per stage (all its replicas), capture (this process), the local broker and the whole machine."""

    def __init__(self, runtime: PipelineRuntime, broker_pid: int | None) -> None:
        self._pids: dict[str, list[int]] = {
            stage: [status.pid for status in statuses]
            for stage, statuses in runtime.host_statuses().items()
            if statuses
        }
        self._pids["capture"] = [os.getpid()]
        if broker_pid is not None:
            self._pids["broker"] = [broker_pid]
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        used = {role: sum(_process_cpu_s(pid) for pid in pids) for role, pids in self._pids.items()}
        return {**used, "machine": _machine_busy_s()}

    def used(self) -> dict[str, float]:
        now = self._read()
        return {role: round(now[role] - self._start[role], 2) for role in now}


class BacklogSampler:
    """Samples every stage's unfinished input in the background; keeps the maximum per stage."""

    def __init__(self, settings: Settings, specs: tuple[StageSpec, ...]) -> None:
        self._settings = settings
        self._specs = specs
        self._probe = KafkaProbe(settings.kafka_connection())
        self.max_backlog: dict[str, int] = dict.fromkeys((spec.name for spec in specs), 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="backlog", daemon=True)

    def __enter__(self) -> BacklogSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(BACKLOG_POLL_S):
            for spec in self._specs:
                try:
                    backlog = spec.unfinished(self._settings, self._probe)
                except MetricsError:  # e.g. the projections have not created their tables yet
                    continue
                self.max_backlog[spec.name] = max(self.max_backlog[spec.name], backlog)


def input_rates(settings: Settings, specs: tuple[StageSpec, ...], streams: int, played_s: float) -> dict[str, float]:
    """Each stage's input events per stream per second played (the trial's topics hold nothing else): about 1
    for a stage fed per chunk, far less for one fed per incident."""
    probe = KafkaProbe(settings.kafka_connection())
    catalogue = settings.topics()
    return {
        spec.name: round(
            sum(probe.end_offsets(probe.partitions(spec.input_topics(catalogue))).values()) / (streams * played_s), 3
        )
        for spec in specs
    }


def seconds_behind(max_backlog: Mapping[str, int], rates: Mapping[str, float], streams: int) -> dict[str, float]:
    """Each stage's largest backlog in seconds of its own input: stages consume different event rates, so raw
    backlogs are not comparable."""
    return {
        stage: round(backlog / (rates[stage] * streams), 2) if rates[stage] else 0.0
        for stage, backlog in max_backlog.items()
    }


def onset_to_alert(settings: Settings, since_ms: int, onset_s: float) -> list[float]:
    """Per stream: seconds from its distress onset (wall time of its first sample + the onset) to its first
    AlertDispatched. A paced capture anchors its clock right after it creates StreamStarted, so that event's
    time is the first sample's (to a millisecond) and the audio topic need not be read."""
    catalogue = settings.topics()
    started: dict[str, datetime] = {}
    alerted: dict[str, datetime] = {}
    topics = [catalogue.streams.name, catalogue.alerts.name]
    for consumed in read_all(settings.bus(), topics, since_ms=since_ms, within_s=60.0):
        event = consumed.event
        if isinstance(event, StreamStarted):
            started.setdefault(event.stream_id, event.occurred_at)
        elif isinstance(event, AlertDispatched):
            alerted.setdefault(event.stream_id, event.occurred_at)
    onset = timedelta(seconds=onset_s)
    return [(alerted[stream] - (started[stream] + onset)).total_seconds() for stream in alerted if stream in started]


def p95(values: list[float]) -> float | None:
    return round(float(np.percentile(values, 95)), 4) if values else None
