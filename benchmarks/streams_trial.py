"""One trial of the streams benchmark: N streams of the demo excerpt in real time through a pipeline of its own
(fresh topics and read model, deleted or left behind with it), and its verdict."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from actors.capture import CaptureActor, FileSource
from actors.pipeline import capture_source, default_stages
from actors.runtime.driver import PipelineRuntime
from benchmarks.streams_measures import BacklogSampler, CpuMeter, input_rates, onset_to_alert, p95, seconds_behind
from config import Settings
from events.kafka.admin import KafkaProbe, MetricsError, delete_topics
from events.kafka.broker import LocalBroker
from events.kafka.producer import EventProducer

LATENCY_LIMIT_S = 1.0
TAIL_S = 12.0  # after the onset: the scream, the shouted call for help 4 s later, and its transcript
CATCH_UP_TIMEOUT_S = 120.0
GROUPS_TIMEOUT_S = 60.0
TOPICS_TIMEOUT_S = 30.0


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
        onset_to_alert_p95_s=p95(alerts),
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
