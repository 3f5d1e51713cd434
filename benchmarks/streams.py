"""How many concurrent real-time 16 kHz streams this machine sustains through the full Kafka + Ray pipeline.

Every trial is a pipeline of its own: fresh topics (a unique prefix, deleted afterwards), a fresh SQLite read
model, and the stage actors (features, scorer, incidents, alerting, projections, metrics, and ASR on the second
path) started exactly as `distress run` starts them, then stopped and killed before the next trial. Alerts go to a
local Apprise ``json://`` sink in this process. N streams play in real time at once, their starts spread over one
second; each plays the same excerpt of the demo recording (ordinary talk in a room, then a scream and a shouted
"Help! Call the police!"). Capture runs as N ``CaptureActor`` threads in this process sharing one producer (what
`distress capture` does for N sources), so that N does not also mean N Python processes on the same cores.

A trial passes when the pipeline caught up after the audio ended, every stream opened its incident, and the p95
latency from a chunk's capture (its hand-over to Kafka) to the IncidentOpened it caused is under 1 s. The search
doubles N (halves it after a first failure) and then bisects the gap between the largest pass and the smallest
failure. Each trial also reports: p50/p95 latency per stage since capture (see ``actors.metrics``), the p95 from
the distress onset in the audio to AlertDispatched (published once Apprise handed the alert to the sink), the
largest backlog of every stage (also in seconds of its input), the CPU seconds each stage's processes used, and
the load average before and after (other jobs on the machine change every number here).

The limiting stage is judged at the smallest failing trial (else the largest trial): the stage furthest behind its
input, with its CPU seconds alongside as evidence.

Run with ``distress bench streams [--json] [--max-streams N] [--quick]``; the broker must be up
(`distress broker up`, or ``kafka_bootstrap`` pointing at a cluster).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import ray
import soundfile

from actors.capture import CaptureActor, FileSource
from actors.demo import ensure_demo_recording, local_alert_sink, with_sink_route
from actors.pipeline import StageSpec, capture_source, default_stages
from actors.runtime import PipelineRuntime, connect_ray
from config import Settings, load_settings
from events.catalogue import AlertDispatched, StreamStarted
from events.kafka.admin import KafkaProbe, MetricsError, delete_topics, reachable
from events.kafka.broker import LocalBroker
from events.kafka.log import EventReader
from events.kafka.producer import EventProducer

LATENCY_LIMIT_S = 1.0
MAX_STREAMS = 256
FIRST_STREAMS = {"acoustic": 8, "with_asr": 1}
LEAD_S = 16.0  # audio before the distress onset: long enough for a backlog to show in the latency
QUICK_LEAD_S = 8.0
TAIL_S = 12.0  # after the onset: the scream, the shouted call for help 4 s later, and its transcript
REFINEMENTS = 2  # bisection steps after the doubling search (none with --quick)
CATCH_UP_TIMEOUT_S = 120.0
GROUPS_TIMEOUT_S = 60.0
TOPICS_TIMEOUT_S = 30.0
BACKLOG_POLL_S = 5.0  # each sample asks the broker for every group's offsets: keep it rare
BROKER_TIMEOUT_S = 5.0
STEADY_INPUT_PER_STREAM_S = 0.8  # fed per chunk: ~0.95 or more (1 s chunks); fed per incident: 0.2-0.6


class BenchmarkError(Exception):
    """The benchmark cannot run here (no broker, bad arguments); the message says what to do."""


@dataclass(frozen=True, kw_only=True)
class Excerpt:
    path: Path
    onset_s: float  # seconds from the excerpt's first sample to the distress onset


@dataclass(frozen=True, kw_only=True)
class Trial:
    path: str  # "acoustic" or "with_asr"
    streams: int
    passed: bool
    verdict: str  # why it passed or failed, in words
    capture_failures: int  # streams whose audio could not be handed to Kafka (an overwhelmed broker)
    streams_with_incident: int
    capture_to_incident_p95_s: float | None
    onset_to_alert_p95_s: float | None
    alerts_dispatched: int
    caught_up_s: float | None  # after the audio ended, until every stage had finished its input; None: never
    start_s: float  # bringing the pipeline up (not part of any latency)
    latency: dict[str, dict[str, float]]  # stage -> p50_s, p95_s, count (cumulative since capture)
    max_backlog: dict[str, int]  # stage -> the most input events it had not finished, sampled during the trial
    seconds_behind: dict[str, float]  # stage -> that backlog in seconds of its input at the trial's rate
    input_per_stream_s: dict[str, float]  # stage -> its input events per stream per second played
    cpu_s: dict[str, float]  # stage (or capture, broker, machine) -> CPU seconds used while the audio played
    wall_s: float  # how long the audio played and the pipeline caught up: cpu_s / wall_s = cores used
    load_average_start: tuple[float, float, float]
    load_average_end: tuple[float, float, float]


# ------------------------------------------------------------------------------------------------ settings


def require_broker(settings: Settings) -> None:
    if not reachable(settings.kafka_connection(), BROKER_TIMEOUT_S, log_level=0):  # quiet: the error says it all
        hint = "start it with `distress broker up`" if settings.uses_local_broker else "check kafka_bootstrap"
        raise BenchmarkError(f"Kafka is not reachable at {settings.bootstrap_servers}: {hint}")


def trial_settings(settings: Settings, path: str, streams: int, folder: Path) -> Settings:
    """Fresh topics and read model per trial, ASR as the path says, and no alert rate limits (every stream's
    incident must be notified at once)."""
    alerting = settings.alerting.model_copy(
        update={
            "rate_limit": settings.alerting.rate_limit.model_copy(update={"per_stream": None, "overall": None}),
        }
    )
    label = f"bench-{path}-{streams}-{uuid.uuid4().hex[:6]}"
    return settings.model_copy(
        update={
            "topic_prefix": f"{label}.",
            "database_url": f"sqlite:///{(folder / f'{label}.db').resolve()}",
            "alerting": alerting,
            "asr": settings.asr.model_copy(update={"enabled": path == "with_asr"}),
            "streams": (),
            "runtime": settings.runtime.model_copy(update={"metrics_port": 0}),
        }
    )


def excerpt(recording: Path, folder: Path, *, lead_s: float) -> Excerpt:
    """``lead_s`` of ordinary talk before the first distress sound of the demo recording, and ``TAIL_S`` after."""
    timeline = json.loads(recording.with_suffix(".json").read_text())
    onset = float(timeline["distress"][0]["at_s"])
    samples, rate = soundfile.read(recording, dtype="float32")
    start = int((onset - lead_s) * rate)
    path = folder / f"excerpt-{lead_s:.0f}s.wav"
    soundfile.write(path, samples[start : start + int((lead_s + TAIL_S) * rate)], rate, subtype="PCM_16")
    return Excerpt(path=path, onset_s=lead_s)


# ------------------------------------------------------------------------------------------ measurements


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
    with EventReader(settings.bus(), [catalogue.streams.name, catalogue.alerts.name], since_ms=since_ms) as reader:
        for consumed in reader.read_to_end():
            event = consumed.event
            if isinstance(event, StreamStarted):
                started.setdefault(event.stream_id, event.occurred_at)
            elif isinstance(event, AlertDispatched):
                alerted.setdefault(event.stream_id, event.occurred_at)
    onset = timedelta(seconds=onset_s)
    return [(alerted[stream] - (started[stream] + onset)).total_seconds() for stream in alerted if stream in started]


def _p95(values: list[float]) -> float | None:
    return round(float(np.percentile(values, 95)), 4) if values else None


# ------------------------------------------------------------------------------------------------ a trial


def play(producer: EventProducer, audio: Path, stream_ids: list[str]) -> list[Exception]:
    """Capture every stream in real time at once, each in its own thread, the starts spread over one second.

    Returns why streams failed (one failure stops the others): a broker that cannot take N streams fails that
    trial, not the whole search."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def capture(stream_id: str, delay_s: float) -> None:
        try:
            if not stop.wait(delay_s):
                CaptureActor(stream_id=stream_id, source=FileSource(audio), publisher=producer, realtime=True).run(stop)
        except BaseException as error:  # re-raised below; one broken stream stops the others
            errors.append(error)
            stop.set()

    spread = np.linspace(0.0, 1.0, num=len(stream_ids), endpoint=False)
    threads = [
        threading.Thread(target=capture, args=(stream_id, float(delay)), name=f"capture-{stream_id}", daemon=True)
        for stream_id, delay in zip(stream_ids, spread, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    interrupted = [error for error in errors if not isinstance(error, Exception)]
    if interrupted:
        raise interrupted[0]
    return [error for error in errors if isinstance(error, Exception)]


def _wait_for_stable_groups(settings: Settings, runtime: PipelineRuntime, timeout_s: float) -> None:
    """Until every consumer-group stage has all its replicas in a stable group (joining takes seconds on a busy
    machine; audio played before that would measure the join, not the pipeline)."""
    probe = KafkaProbe(settings.kafka_connection())
    expected = {
        spec.group_id(settings): len(runtime.stage_hosts[spec.name]) for spec in runtime.stages if spec.backlog is None
    }
    deadline = time.monotonic() + timeout_s
    while expected and time.monotonic() < deadline:
        try:
            for group, members in probe.stable_members(list(expected)).items():
                if members >= expected[group]:
                    expected.pop(group)
        except MetricsError:  # a coordinator still loading: ask again
            pass
        time.sleep(0.5)
    if expected:
        print(f"warning: consumer groups not stable after {timeout_s:.0f} s: {sorted(expected)}", file=sys.stderr)


def _wait_until_caught_up(runtime: PipelineRuntime, timeout_s: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        try:
            if runtime.caught_up(runtime.snapshot()):
                return round(time.monotonic() - began, 2)
        except MetricsError:  # Kafka slow to answer on a loaded machine: ask again
            pass
        time.sleep(0.5)
    return None


def _delete_topics(settings: Settings) -> None:
    """The trial's topics go with it (its audio alone is N x 43 kB a second)."""
    names = [spec.name for spec in settings.topics().all()]
    for failure in delete_topics(settings.kafka_connection(), names):  # a leftover topic costs disk, not correctness
        print(f"warning: could not delete a trial topic: {failure}", file=sys.stderr)


def _create_topics(settings: Settings) -> None:
    """The trial's topics, once the broker's metadata lists them all: a topic created a moment ago may still be
    missing there, and the runtime sizes its stages from that metadata."""
    settings.ensure_topics()
    probe = KafkaProbe(settings.kafka_connection())
    names = [spec.name for spec in settings.topics().all()]
    deadline = time.monotonic() + TOPICS_TIMEOUT_S
    while True:
        try:
            probe.partitions(names)
            return
        except MetricsError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@contextmanager
def trial_pipeline(settings: Settings) -> Iterator[PipelineRuntime]:
    """A pipeline for one trial; stopped, its actors killed and its topics deleted however the trial ends."""
    runtime = PipelineRuntime(
        settings, stages=default_stages(settings), streams=[], source_factory=capture_source, realtime=True
    )  # no runtime sources: the trial captures in this process
    try:
        _create_topics(settings)
        runtime.start(stream_filter=False)
        yield runtime
    finally:
        runtime.stop(drain_s=5.0)
        _delete_topics(settings)


def run_trial(settings: Settings, audio: Excerpt, streams: int, *, path: str, folder: Path) -> Trial:
    """N streams through a pipeline of their own; ``settings`` must route alerts somewhere (the local sink)."""
    if streams < 1:
        raise BenchmarkError(f"a trial needs at least one stream, got {streams}")
    settings = trial_settings(settings, path, streams, folder)
    load_start = os.getloadavg()
    starting = time.monotonic()
    with trial_pipeline(settings) as runtime:
        start_s = round(time.monotonic() - starting, 1)
        _wait_for_stable_groups(settings, runtime, GROUPS_TIMEOUT_S)
        cpu = CpuMeter(runtime, LocalBroker(settings).status().pid if settings.uses_local_broker else None)
        since_ms = int(time.time() * 1000) - 1000
        playing = time.monotonic()
        with BacklogSampler(settings, runtime.stages) as backlog, settings.bus().producer() as producer:
            failures = play(producer, audio.path, [f"{path}-{streams}-{index}" for index in range(streams)])
            played_s = time.monotonic() - playing
            caught_up_s = _wait_until_caught_up(runtime, CATCH_UP_TIMEOUT_S)
        wall_s = round(time.monotonic() - playing, 2)
        cpu_s = cpu.used()
        snapshot = runtime.summary().snapshot
        alerts = onset_to_alert(settings, since_ms, audio.onset_s)
        rates = input_rates(settings, runtime.stages, streams, played_s)
    latency = {
        item.stage: {"p50_s": round(item.p50_s, 4), "p95_s": round(item.p95_s, 4), "count": item.count}
        for item in snapshot.latency
    }
    with_incident = len({incident.stream_id for incident in snapshot.incidents})
    incident_p95 = latency.get("incident", {}).get("p95_s")
    passed, verdict = judge(streams, caught_up_s, with_incident, incident_p95, failures)
    return Trial(
        path=path,
        streams=streams,
        passed=passed,
        verdict=verdict,
        capture_failures=len(failures),
        streams_with_incident=with_incident,
        capture_to_incident_p95_s=incident_p95,
        onset_to_alert_p95_s=_p95(alerts),
        alerts_dispatched=len(alerts),
        caught_up_s=caught_up_s,
        start_s=start_s,
        latency=latency,
        max_backlog=backlog.max_backlog,
        seconds_behind=seconds_behind(backlog.max_backlog, rates, streams),
        input_per_stream_s=rates,
        cpu_s=cpu_s,
        wall_s=wall_s,
        load_average_start=load_start,
        load_average_end=os.getloadavg(),
    )


def judge(
    streams: int,
    caught_up_s: float | None,
    with_incident: int,
    incident_p95_s: float | None,
    capture_failures: Sequence[Exception] = (),
) -> tuple[bool, str]:
    if capture_failures:
        return False, f"{len(capture_failures)} capture(s) could not hand their audio to Kafka: {capture_failures[0]}"
    if caught_up_s is None:
        return False, f"the pipeline had not caught up {CATCH_UP_TIMEOUT_S:.0f} s after the audio ended"
    if with_incident < streams:
        return False, f"only {with_incident} of {streams} streams opened their incident"
    assert incident_p95_s is not None  # every stream opened an incident, so its latency was measured
    if incident_p95_s >= LATENCY_LIMIT_S:
        return False, f"p95 capture->incident {incident_p95_s:.3f} s >= {LATENCY_LIMIT_S} s"
    return True, f"p95 capture->incident {incident_p95_s:.3f} s < {LATENCY_LIMIT_S} s"


# ---------------------------------------------------------------------------------------------- the search


def search(trial: Callable[[int], Trial], *, first: int, max_streams: int, refinements: int) -> list[Trial]:
    """Double N from ``first`` while trials pass (halve it while they fail), then bisect the gap between the
    largest pass and the smallest failure ``refinements`` times."""
    trials: list[Trial] = []

    def run(streams: int) -> bool:
        trials.append(trial(streams))
        report(trials[-1])
        return trials[-1].passed

    streams = min(first, max_streams)
    if run(streams):
        while streams < max_streams and run(min(streams * 2, max_streams)):
            streams = min(streams * 2, max_streams)
    else:
        while streams > 1 and not run(streams // 2):
            streams //= 2
    for _ in range(refinements):
        passing = [t.streams for t in trials if t.passed]
        failing = [t.streams for t in trials if not t.passed]
        low, high = max(passing, default=0), min(failing, default=max_streams + 1)
        if high - low <= 1 or high > max_streams:
            break
        run((low + high) // 2)
    return trials


def limiting_stage(trials: list[Trial]) -> dict[str, Any] | None:
    """At the smallest failing trial (else the largest one): of the stages fed per chunk, the one furthest behind
    its input. Stages fed per incident are left out: every stream here screams within the same second, so their
    backlog is a burst by design (their cost shows in the alert latency)."""
    if not trials:
        return None
    failing = [trial for trial in trials if not trial.passed]
    judged = min(failing, key=lambda t: t.streams) if failing else max(trials, key=lambda t: t.streams)
    steady = [name for name, rate in judged.input_per_stream_s.items() if rate >= STEADY_INPUT_PER_STREAM_S]
    stage = max(steady, key=lambda name: (judged.seconds_behind[name], judged.cpu_s.get(name, 0.0)))
    return {
        "stage": stage,
        "at_streams": judged.streams,
        "seconds_behind": judged.seconds_behind[stage],
        "max_backlog": judged.max_backlog[stage],
        "cpu_s": judged.cpu_s.get(stage),
        "why": (
            f"furthest behind its input at {judged.streams} streams ({judged.seconds_behind[stage]} s of input "
            f"queued; {judged.verdict})"
            if failing
            else f"no trial failed: only a hint, the stage with the most input queued at {judged.streams} streams "
            f"({judged.seconds_behind[stage]} s)"
        ),
    }


def report(trial: Trial) -> None:
    """Progress on stderr while the search runs (stdout carries only the result)."""
    print(
        f"[{trial.path} N={trial.streams}] {'pass' if trial.passed else 'FAIL'}: {trial.verdict}; onset->alert "
        f"p95 {trial.onset_to_alert_p95_s} s; load {trial.load_average_start[0]:.1f}->"
        f"{trial.load_average_end[0]:.1f}",
        file=sys.stderr,
        flush=True,
    )


# ------------------------------------------------------------------------------------------------ the run


def path_result(trials: list[Trial], max_streams: int) -> dict[str, Any]:
    passing = [trial for trial in trials if trial.passed]
    best = max(passing, key=lambda trial: trial.streams) if passing else None
    return {
        "max_streams": best.streams if best else 0,
        "limit_not_reached": best is not None and best.streams == max_streams,  # the machine may sustain more
        "capture_to_incident_p95_s_at_max": best.capture_to_incident_p95_s if best else None,
        "onset_to_alert_p95_s_at_max": best.onset_to_alert_p95_s if best else None,
        "limiting_stage": limiting_stage(trials),
        "trials": [asdict(trial) for trial in trials],
    }


def run(*, max_streams: int | None = None, quick: bool = False) -> dict[str, Any]:
    """Both paths (acoustic only, then with ASR), N up to ``max_streams`` (default ``MAX_STREAMS``); every
    number, the trials included."""
    max_streams = MAX_STREAMS if max_streams is None else max_streams
    if max_streams < 1:
        raise BenchmarkError(f"--max-streams must be at least 1, got {max_streams}")
    settings = load_settings()
    require_broker(settings)
    recording = ensure_demo_recording(settings)
    load_start = os.getloadavg()
    started_ray = connect_ray(settings.runtime, None)
    alerts_received = 0

    def count(_: dict[str, Any]) -> None:
        nonlocal alerts_received
        alerts_received += 1

    paths: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="distress-bench-") as folder, local_alert_sink(count) as sink:
            routed = with_sink_route(settings, sink)
            audio = excerpt(recording, Path(folder), lead_s=QUICK_LEAD_S if quick else LEAD_S)
            for path, first in FIRST_STREAMS.items():
                trial = partial(run_trial, routed, audio, path=path, folder=Path(folder))
                trials = search(trial, first=first, max_streams=max_streams, refinements=0 if quick else REFINEMENTS)
                paths[path] = path_result(trials, max_streams)
    finally:
        if started_ray:
            ray.shutdown()
    return {
        "max_streams_acoustic": paths["acoustic"]["max_streams"],
        "max_streams_with_asr": paths["with_asr"]["max_streams"],
        "onset_to_alert_p95_s": paths["acoustic"]["onset_to_alert_p95_s_at_max"],
        "limiting_stage_acoustic": paths["acoustic"]["limiting_stage"],
        "limiting_stage_with_asr": paths["with_asr"]["limiting_stage"],
        "criterion": f"caught up, every stream's incident opened, p95 capture->incident < {LATENCY_LIMIT_S} s",
        "audio": {"seconds": audio.onset_s + TAIL_S, "onset_s": audio.onset_s, "sample_rate": 16_000},
        "quick": quick,
        "max_streams_tried": max_streams,
        "alerts_received_by_sink": alerts_received,
        "cpus": os.cpu_count(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "acoustic": paths["acoustic"],
        "with_asr": paths["with_asr"],
    }


def render(result: dict[str, Any]) -> str:
    """The result for people: the answers first, then one line per trial."""

    def stage(limit: dict[str, Any] | None) -> str:
        return f"{limit['stage']} ({limit['why']})" if limit else "n/a"

    def streams(path: str) -> str:
        found = result[path]
        return f"{found['max_streams']}{' (the most tried: the limit is higher)' if found['limit_not_reached'] else ''}"

    lines = [
        f"max real-time streams ({result['criterion']}): acoustic {streams('acoustic')}, "
        f"with ASR {streams('with_asr')}",
        f"p95 onset->alert at that load (acoustic): {result['onset_to_alert_p95_s']} s",
        f"limiting stage: acoustic {stage(result['limiting_stage_acoustic'])}",
        f"                with ASR {stage(result['limiting_stage_with_asr'])}",
        f"{result['cpus']} CPUs; load average {result['load_average_start'][0]:.1f} at start, "
        f"{result['load_average_end'][0]:.1f} at end",
    ]
    for path in ("acoustic", "with_asr"):
        for trial in result[path]["trials"]:
            cores = sum(v for k, v in trial["cpu_s"].items() if k != "machine") / max(trial["wall_s"], 1e-9)
            lines.append(
                f"  {path:8} N={trial['streams']:<4} {'pass' if trial['passed'] else 'FAIL'}  {trial['verdict']}; "
                f"onset->alert p95 {trial['onset_to_alert_p95_s']} s; behind {trial['seconds_behind']}; "
                f"pipeline {cores:.2f} cores, machine {trial['cpu_s']['machine'] / max(trial['wall_s'], 1e-9):.2f}; "
                f"load {trial['load_average_start'][0]:.1f}->{trial['load_average_end'][0]:.1f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--max-streams", type=int, default=None, help=f"largest N to try (default {MAX_STREAMS})")
    parser.add_argument("--quick", action="store_true", help="shorter audio and no bisection")
    arguments = parser.parse_args(argv)
    try:
        result = run(max_streams=arguments.max_streams, quick=arguments.quick)
    except BenchmarkError as error:
        raise SystemExit(f"error: {error}") from error
    print(json.dumps(result, indent=2) if arguments.json else render(result))


if __name__ == "__main__":
    main()
