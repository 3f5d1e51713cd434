"""The Ray runtime on a real broker and a real local Ray: until-EOF completion, supervision after kill -9,
recovery from a broker restart, graceful stop and start-up failures with the toy pipeline; and the registered
stages surviving SIGKILL of every actor in turn and a broker restart with the same incidents as an undisturbed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray
import soundfile

from actors.capture import EventPublisher
from actors.demo import DEMO_SCRIPT, local_alert_sink, with_sink_route
from actors.pipeline import StageSpec, capture_source, default_stages
from actors.runtime.driver import PipelineRuntime, RunSummary, RuntimeStartError, connect_ray
from actors.runtime.resume import ResumingPublisher, locate_stream_run, recent_input
from actors.stage import Stage
from config import Settings, StreamConfig
from events import Event
from events.catalogue import AudioChunkCaptured, DistressScored, StreamEnded, StreamStarted
from events.kafka.admin import KafkaProbe, commit_offsets
from events.kafka.broker import LocalBroker
from events.kafka.bus import Bus
from events.kafka.log import read_all
from tests.conftest import broker_settings
from tests.support.toy_pipeline import ToySource, build_scorer, build_toy_source, local_ray, toy_source, toy_stages


@pytest.fixture(scope="module")
def ray_cluster() -> None:
    local_ray()


def runtime_settings(settings: Settings, partitions: int = 1) -> Settings:
    return settings.model_copy(
        update={
            "topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
            "topic_partitions": partitions,
            "log_json": False,
            "runtime": settings.runtime.model_copy(update={"metrics_port": 0, "caught_up_poll_s": 0.5}),
        }
    )


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return runtime_settings(kafka_settings)


@pytest.fixture
def started(kafka_settings: Settings, ray_cluster: None, request: pytest.FixtureRequest) -> Iterator[PipelineRuntime]:
    streams, realtime, partitions = request.param
    runtime = PipelineRuntime(
        runtime_settings(kafka_settings, partitions),
        stages=toy_stages(),
        streams=streams,
        source_factory=build_toy_source,
        realtime=realtime,
    )
    runtime.start(stream_filter=True)
    yield runtime
    runtime.stop()


def incident_onsets(summary: RunSummary) -> set[tuple[str, float]]:
    return {(incident.stream_id, incident.onset_s) for incident in summary.snapshot.incidents}


FAST_STREAMS = [
    StreamConfig(id="a", source=toy_source(6, [2])),
    StreamConfig(id="b", source=toy_source(5, [1, 3])),
    StreamConfig(id="broken", source="no-such-kind"),
]


@pytest.mark.parametrize("started", [(FAST_STREAMS, False, 2)], indirect=True)
def test_until_eof_summary_has_every_stream_incident_alert_and_stage_latency(started: PipelineRuntime) -> None:
    summary = started.wait_until_caught_up(threading.Event(), timeout_s=120)
    states = {stream.id: (stream.state, stream.chunks) for stream in summary.snapshot.streams}
    assert states["a"] == ("ended", 6) and states["b"] == ("ended", 5)
    assert states["broken"][0] == "failed"
    assert "no-such-kind" in next(s.reason for s in summary.snapshot.streams if s.id == "broken")
    assert incident_onsets(summary) == {("a", 2.0), ("b", 1.0), ("b", 3.0)}
    assert summary.snapshot.alerts_sent == 3 and summary.snapshot.alerts_sent_twice == 0
    latency = {item.stage: item for item in summary.snapshot.latency}
    assert set(latency) == {"score", "incident", "alert"}
    assert latency["score"].count == 11 and latency["incident"].count == 3
    # Each stage's percentiles are over its own chunks (the causation order is test_metrics.py's): the chunks
    # scored while the stages were still starting can outweigh the three alerted ones, so no order across stages.
    assert all(0 <= item.p50_s <= item.p95_s for item in latency.values())
    assert latency["alert"].p50_s > 0  # an alert leaves after its chunk was captured, never at the same instant
    # Replicas follow the partitions of the input topic (2 here), except a stage that asked for one.
    assert summary.stages == {"toy-score": 2, "toy-incidents": 2, "toy-alerts": 1}
    as_json = summary.as_json()
    assert as_json["chunks"] == 11
    assert {incident["id"] for incident in as_json["incidents"]} == {"a-2", "b-1", "b-3"}
    assert set(as_json["incidents"][0]) >= {"id", "stream_id", "onset_s", "reason"}


REALTIME_STREAMS = [
    StreamConfig(id="r1", source=toy_source(14, [3, 11])),
    StreamConfig(id="r2", source=toy_source(14, [5])),
]


@pytest.mark.parametrize("started", [(REALTIME_STREAMS, True, 1)], indirect=True)
def test_stage_actors_killed_with_sigkill_restart_and_the_run_loses_nothing(started: PipelineRuntime) -> None:
    before = started.host_statuses()
    victims = {name: [status.pid for status in statuses] for name, statuses in before.items() if name != "capture"}
    for pids in victims.values():  # one stage after the other
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        time.sleep(1.0)
    after = started.host_statuses()  # answered by the restarted actors
    for name, pids in victims.items():
        assert {status.pid for status in after[name]}.isdisjoint(pids), f"{name} was not restarted"
    summary = started.wait_until_caught_up(threading.Event(), timeout_s=180)
    assert incident_onsets(summary) == {("r1", 3.0), ("r1", 11.0), ("r2", 5.0)}
    assert [(stream.id, stream.state, stream.chunks) for stream in summary.snapshot.streams] == [
        ("r1", "ended", 14),
        ("r2", "ended", 14),
    ]
    latency = {item.stage: item.count for item in summary.snapshot.latency}
    assert latency["score"] >= 28  # every chunk scored (a replayed batch may score some twice)


@pytest.mark.parametrize("started", [([StreamConfig(id="cam", source=toy_source(12, [2, 9]))], True, 1)], indirect=True)
def test_a_killed_capture_actor_continues_its_stream_without_repeating_a_chunk(started: PipelineRuntime) -> None:
    while sum(item.count for item in started.snapshot().latency if item.stage == "score") < 4:
        time.sleep(0.2)
    (capture,) = started.host_statuses()["capture"]
    os.kill(capture.pid, signal.SIGKILL)
    summary = started.wait_until_caught_up(threading.Event(), timeout_s=120)
    assert incident_onsets(summary) == {("cam", 2.0), ("cam", 9.0)}
    (restarted,) = started.host_statuses()["capture"]
    assert restarted.pid != capture.pid and restarted.restarts == 1
    topics = [started.settings.topics().streams.name, started.settings.topics().audio_chunks.name]
    events = [consumed.event for consumed in read_all(started.settings.bus(), topics, since_ms=0)]
    (stream_started,) = [event for event in events if isinstance(event, StreamStarted)]
    chunks = [event for event in events if isinstance(event, AudioChunkCaptured)]
    assert sorted(chunk.sequence for chunk in chunks) == list(range(12))  # none lost, none published twice
    assert {chunk.correlation_id for chunk in chunks} == {stream_started.event_id}  # one run, not two
    (ended,) = [event for event in events if isinstance(event, StreamEnded)]
    assert ended.correlation_id == stream_started.event_id and ended.reason == "eof"


class KilledAfter:
    """Passes on what a capture process killed after its first ``chunks`` chunks had published: no StreamEnded."""

    def __init__(self, producer: EventPublisher, chunks: int) -> None:
        self.producer = producer
        self.chunks = chunks

    def publish(self, event: Event) -> None:
        if isinstance(event, StreamStarted) or (isinstance(event, AudioChunkCaptured) and event.sequence < self.chunks):
            self.producer.publish(event)

    def flush(self, timeout_s: float = 60.0) -> None:
        self.producer.flush(timeout_s)


@pytest.mark.parametrize(("live", "sequences"), [(False, range(4)), (True, range(6))])
def test_a_restarted_capture_continues_the_run_it_finds_on_the_topics(
    settings: Settings, live: bool, sequences: range
) -> None:
    """A recording resumes after its last published chunk; a live source's new audio is numbered after it."""
    settings.ensure_topics()
    bus, since_ms = settings.bus(), int(time.time() * 1000) - 1000
    stream = StreamConfig(id="cam", source=toy_source(4, []))
    with bus.producer() as producer:
        ToySource(stream, settings, False).run(threading.Event(), KilledAfter(producer, chunks=2))
    run = locate_stream_run(bus, "cam", since_ms=since_ms)
    assert run.started is not None and not run.finished
    assert (run.next_sequence, run.next_sample_offset) == (2, 2 * 16_000)
    with bus.producer() as producer:
        ToySource(stream, settings, False).run(
            threading.Event(), ResumingPublisher(producer, run, live=live, paced=False, stop=threading.Event())
        )
    topics = [settings.topics().streams.name, settings.topics().audio_chunks.name]
    events = [consumed.event for consumed in read_all(bus, topics, since_ms=since_ms)]
    chunks = [event for event in events if isinstance(event, AudioChunkCaptured)]
    assert [(chunk.sequence, chunk.sample_offset) for chunk in chunks] == [(n, n * 16_000) for n in sequences]
    assert {chunk.correlation_id for chunk in chunks} == {run.started.event_id}
    (ended,) = [event for event in events if isinstance(event, StreamEnded)]
    assert (ended.correlation_id, ended.chunks) == (run.started.event_id, len(sequences))
    assert locate_stream_run(bus, "cam", since_ms=since_ms).finished


def commit_offset(bus: Bus, group: str, topic: str, offset: int) -> None:
    """Commit ``group``'s offset on partition 0 as a stage that finished everything before it would have."""
    commit_offsets(bus.connection, group, {(topic, 0): offset})


def test_a_restarted_stage_is_given_what_its_group_finished_just_before_the_committed_offset(
    settings: Settings,
) -> None:
    settings.ensure_topics()
    bus, topic = settings.bus(), settings.topics().audio_chunks.name
    with bus.producer() as producer:
        ToySource(StreamConfig(id="cam", source=toy_source(6, [])), settings, False).run(threading.Event(), producer)
    group = f"{settings.topic_prefix}replayed"
    commit_offset(bus, group, topic, 4)
    replayed = recent_input(bus, group, [topic], [(topic, 0)], window_s=30.0)
    assert [(c.offset, c.event.sequence) for c in replayed if isinstance(c.event, AudioChunkCaptured)] == [
        (n, n) for n in range(4)
    ]  # finished before the crash, oldest first; offset 4 on is consumed as usual
    assert recent_input(bus, f"{settings.topic_prefix}never-committed", [topic], [(topic, 0)], window_s=30.0) == []


def test_a_stage_that_took_long_to_come_back_is_still_given_its_recent_input(settings: Settings) -> None:
    """The window ends at the last finished event, not at the restart: chunks produced ten minutes ago still count."""
    settings.ensure_topics()
    bus, topic = settings.bus(), settings.topics().audio_chunks.name
    captured: list[Event] = []

    class Collect:
        def publish(self, event: Event) -> None:
            captured.append(event)

        def flush(self, timeout_s: float = 60.0) -> None:
            """Nothing is buffered."""

    ToySource(StreamConfig(id="cam", source=toy_source(6, [])), settings, False).run(threading.Event(), Collect())
    chunks = [event for event in captured if isinstance(event, AudioChunkCaptured)]
    long_ago_ms = int(time.time() * 1000) - 600_000
    with bus.producer() as producer:
        for chunk in chunks:
            producer.produce_raw(
                topic,
                key=chunk.stream_id.encode(),
                value=bus.codec.encode(chunk),
                headers=bus.codec.headers(chunk),
                timestamp_ms=long_ago_ms + 1000 * chunk.sequence,
            )
        producer.flush(30)  # raises unless every message was acknowledged
    group = f"{settings.topic_prefix}slow-to-return"
    commit_offset(bus, group, topic, 5)
    replayed = recent_input(bus, group, [topic], [(topic, 0)], window_s=2.5)
    assert [consumed.offset for consumed in replayed] == [2, 3, 4]  # 2.5 s before offset 4, the last finished


def test_an_undecodable_last_finished_message_does_not_hold_up_the_replay(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The message before the committed offset cannot be decoded (the stage dead-lettered it), so its timestamp is
    never found: the replay must not wait for it. With the allowance this long, waiting would outlast the test."""
    monkeypatch.setattr("actors.runtime.resume.RESTART_ALLOWANCE_S", 3600.0)
    settings.ensure_topics()
    bus, topic = settings.bus(), settings.topics().audio_chunks.name
    with bus.producer() as producer:
        ToySource(StreamConfig(id="cam", source=toy_source(3, [])), settings, False).run(threading.Event(), producer)
    with bus.producer() as raw:
        raw.produce_raw(topic, key=b"cam", value=b"not an event", headers=[])
        raw.flush(30)
    probe = KafkaProbe(bus.connection)
    end = probe.end_offsets(probe.partitions([topic]))[(topic, 0)]
    group = f"{settings.topic_prefix}after-poison"
    commit_offset(bus, group, topic, end)
    replayed = recent_input(bus, group, [topic], [(topic, 0)], window_s=30.0)
    assert [consumed.offset for consumed in replayed] == list(range(end - 1))  # every event; the poison skipped


def scored_sequences(settings: Settings) -> list[tuple[str, int]]:
    """Every (stream, sequence) on the scores topic, repeats included."""
    return [
        (c.event.stream_id, c.event.sequence)
        for c in read_all(settings.bus(), [settings.topics().scores.name])
        if isinstance(c.event, DistressScored)
    ]


def test_graceful_stop_commits_so_a_restart_neither_repeats_nor_loses_work(
    settings: Settings, ray_cluster: None
) -> None:
    streams = [StreamConfig(id="long", source=toy_source(60, []))]
    first = PipelineRuntime(
        settings, stages=toy_stages(), streams=streams, source_factory=build_toy_source, realtime=True
    )
    try:
        first.start(stream_filter=True)
        while sum(item.count for item in first.snapshot().latency if item.stage == "score") < 3:
            time.sleep(0.2)
    finally:
        first.stop()  # the source ends the stream ("stopped"); stages commit what they processed
    second = PipelineRuntime(settings, stages=toy_stages(), streams=[], source_factory=build_toy_source, realtime=False)
    try:
        second.start()
        second.wait_until_caught_up(threading.Event(), timeout_s=120)
    finally:
        second.stop()
    scored = scored_sequences(settings)
    assert len(scored) >= 3
    assert sorted(scored) == [("long", sequence) for sequence in range(len(scored))]  # each chunk exactly once


def test_a_stage_that_cannot_be_built_stops_the_start_with_its_name(settings: Settings, ray_cluster: None) -> None:
    broken = StageSpec(name="broken", build=build_with_wrong_topics, inputs=("scores",))
    runtime = PipelineRuntime(
        settings, stages=[*toy_stages()[:1], broken], streams=[], source_factory=build_toy_source, realtime=False
    )
    try:
        with pytest.raises(RuntimeStartError, match=r"broken\[0\].*consumes .*audio.chunks.* registry says .*scores"):
            runtime.start()
    finally:
        runtime.stop()


def build_with_wrong_topics(settings: Settings) -> Stage:
    """A stage whose code consumes audio chunks while its registry entry says scores."""
    return build_scorer(settings)


def test_duplicate_stream_ids_are_refused(settings: Settings) -> None:
    streams = [StreamConfig(id="same", source=toy_source(1, [])), StreamConfig(id="same", source=toy_source(2, []))]
    with pytest.raises(RuntimeStartError, match="unique"):
        PipelineRuntime(settings, stages=toy_stages(), streams=streams, source_factory=build_toy_source, realtime=False)


def test_pipeline_recovers_by_itself_from_a_broker_restart(tmp_path: Path, ray_cluster: None) -> None:
    broker = LocalBroker(broker_settings(tmp_path / "kafka"))
    broker.up()
    try:
        settings = runtime_settings(broker.settings)
        streams = [
            StreamConfig(id="k1", source=toy_source(16, [2, 12])),
            StreamConfig(id="k2", source=toy_source(16, [8])),
        ]
        runtime = PipelineRuntime(
            settings, stages=toy_stages(), streams=streams, source_factory=build_toy_source, realtime=True
        )
        runtime.start(stream_filter=True)
        try:
            time.sleep(4.0)
            broker.down()
            time.sleep(3.0)
            broker.up()
            summary = runtime.wait_until_caught_up(threading.Event(), timeout_s=240)
        finally:
            runtime.stop()
        assert incident_onsets(summary) == {("k1", 2.0), ("k1", 12.0), ("k2", 8.0)}
        assert [(s.id, s.state, s.chunks) for s in summary.snapshot.streams] == [
            ("k1", "ended", 16),
            ("k2", "ended", 16),
        ]
    finally:
        broker.down()


def test_connect_ray_joins_the_running_ray_instead_of_starting_one(ray_cluster: None) -> None:
    nodes = ray.get_runtime_context().get_node_id(), ray.cluster_resources()  # type: ignore[no-untyped-call]
    assert connect_ray(Settings().runtime, None) is False
    assert (ray.get_runtime_context().get_node_id(), ray.cluster_resources()) == nodes  # type: ignore[no-untyped-call]


# ------------------------------------------------------------------------------------ the real pipeline


@dataclass(frozen=True)
class RealRun:
    summary: RunSummary
    delivered: list[str]  # the alert key of every notification the sink received, repeats included


def alert_ref(alert: dict[str, Any]) -> str:
    """The alert key (``<incident>/<id>/<channel>``) the alerting actor writes last ("Ref: ...") in a notification."""
    return str(alert.get("message", "")).rsplit("Ref:", 1)[-1].strip()


def run_registered_stages(
    settings: Settings, recording: Path, stream_id: str, disturb: Callable[[PipelineRuntime], None] | None = None
) -> RealRun:
    """The registered stages on ``recording`` in real time, alerting into a local sink; ``disturb`` is called
    once audio has reached the features stage."""
    delivered: list[str] = []
    with local_alert_sink(lambda alert: delivered.append(alert_ref(alert))) as sink_url:
        routed = with_sink_route(settings, sink_url)
        runtime = PipelineRuntime(
            routed,
            stages=default_stages(routed),
            source_factory=capture_source,
            streams=[StreamConfig(id=stream_id, source=str(recording))],
            realtime=True,
        )
        try:
            runtime.start(stream_filter=True)
            if disturb is not None:
                while not any(item.stage == "features" for item in runtime.snapshot().latency):
                    time.sleep(0.2)
                disturb(runtime)
            summary = runtime.wait_until_caught_up(threading.Event(), timeout_s=300)
        finally:
            runtime.stop()
    return RealRun(summary=summary, delivered=delivered)


@pytest.fixture(scope="module")
def call_for_help(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s of the demo recording: talk, a scream, "Help! Call the police!"."""
    folder = tmp_path_factory.mktemp("call-for-help")
    subprocess.run([sys.executable, str(DEMO_SCRIPT), str(folder / "demo.wav")], check=True, capture_output=True)
    samples, rate = soundfile.read(folder / "demo.wav", dtype="float32")
    soundfile.write(folder / "excerpt.wav", samples[80 * rate : 110 * rate], rate)
    return folder / "excerpt.wav"


@pytest.fixture(scope="module")
def undisturbed(
    kafka_broker: LocalBroker[Settings],
    call_for_help: Path,
    tmp_path_factory: pytest.TempPathFactory,
    ray_cluster: None,
) -> RealRun:
    settings = runtime_settings(kafka_broker.settings).model_copy(
        update={"data_dir": tmp_path_factory.mktemp("undisturbed")}
    )
    run = run_registered_stages(settings, call_for_help, "calm")
    assert run.summary.snapshot.incidents, "the call for help was not detected at all"
    return run


def assert_same_outcome(disturbed: RealRun, undisturbed: RealRun) -> None:
    """Same incidents, every chunk, every incident alerted and no alert delivered twice."""
    calm = [(incident.onset_s, incident.severity) for incident in undisturbed.summary.snapshot.incidents]
    stormy = [(incident.onset_s, incident.severity) for incident in disturbed.summary.snapshot.incidents]
    # A restarted ASR segments the speech from where it resumed, so the word times (the onset of a spoken call for
    # help) may move by a few milliseconds; the incidents are otherwise the same.
    assert [severity for _, severity in stormy] == [severity for _, severity in calm], (calm, stormy)
    assert all(abs(a - b) < 0.25 for (a, _), (b, _) in zip(calm, stormy, strict=True)), (calm, stormy)
    assert [(s.state, s.chunks) for s in disturbed.summary.snapshot.streams] == [("ended", 30)]
    assert disturbed.summary.snapshot.alerts_sent_twice == 0
    assert len(disturbed.delivered) == len(set(disturbed.delivered)), f"an alert arrived twice: {disturbed.delivered}"
    assert disturbed.summary.snapshot.alerts_sent == len(disturbed.delivered)
    # Every incident reached the sink. (Its number of alerts may differ: evidence held up by the disturbance can
    # arrive at once, and an incident that opened as "high" and escalated undisturbed then opens as "critical".)
    alerted = {key.split("/")[0] for key in disturbed.delivered}
    assert alerted == {incident.id for incident in disturbed.summary.snapshot.incidents}


def kill_every_actor_in_turn(runtime: PipelineRuntime) -> None:
    """SIGKILL each actor (every stage, the capture, the metrics), each once its predecessor is back."""
    for role, statuses in runtime.host_statuses().items():
        for status in statuses:
            os.kill(status.pid, signal.SIGKILL)
            restarted_pid = next(s.pid for s in runtime.host_statuses()[role] if s.name == status.name)
            assert restarted_pid != status.pid, f"{status.name} was not restarted"


@pytest.mark.slow
def test_killing_each_actor_in_turn_keeps_the_incidents_and_sends_no_alert_twice(
    kafka_settings: Settings,
    call_for_help: Path,
    undisturbed: RealRun,
    tmp_path: Path,
) -> None:
    settings = runtime_settings(kafka_settings).model_copy(update={"data_dir": tmp_path})
    assert_same_outcome(run_registered_stages(settings, call_for_help, "stormy", kill_every_actor_in_turn), undisturbed)


@pytest.mark.slow
def test_the_registered_stages_recover_by_themselves_from_a_broker_restart(
    call_for_help: Path,
    undisturbed: RealRun,
    tmp_path: Path,
) -> None:
    broker = LocalBroker(broker_settings(tmp_path / "kafka"))
    broker.up()

    def restart_broker(runtime: PipelineRuntime) -> None:
        broker.down()
        time.sleep(3.0)
        broker.up()

    try:
        settings = runtime_settings(broker.settings).model_copy(update={"data_dir": tmp_path})
        assert_same_outcome(run_registered_stages(settings, call_for_help, "restarted", restart_broker), undisturbed)
    finally:
        broker.down()
