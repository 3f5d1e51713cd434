"""The Ray runtime on a real broker and a real local Ray: until-EOF completion, supervision after kill -9,
recovery from a broker restart, graceful stop and start-up failures. The stages are the toy pipeline."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from actors.metrics import EventReader
from actors.pipeline import StageSpec
from actors.runtime import PipelineRuntime, RunSummary, RuntimeStartError, connect_ray
from actors.stage import Stage
from cli.broker import LocalBroker
from config import Settings, StreamConfig
from events.catalogue import DistressScored
from tests.actors.toy_pipeline import build_scorer, build_toy_source, local_ray, toy_source, toy_stages
from tests.conftest import broker_settings


@pytest.fixture(scope="module")
def ray_cluster() -> None:
    local_ray()


def runtime_settings(settings: Settings, partitions: int = 1) -> Settings:
    return settings.model_copy(update={
        "topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
        "topic_partitions": partitions,
        "log_json": False,
        "runtime": settings.runtime.model_copy(update={"metrics_port": 0, "caught_up_poll_s": 0.5}),
    })


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return runtime_settings(kafka_settings)


@pytest.fixture
def started(kafka_settings: Settings, ray_cluster: None, request: pytest.FixtureRequest) -> Iterator[PipelineRuntime]:
    streams, realtime, partitions = request.param
    runtime = PipelineRuntime(runtime_settings(kafka_settings, partitions), stages=toy_stages(), streams=streams,
                              source_factory=build_toy_source, realtime=realtime)
    runtime.start(stream_filter=True)
    yield runtime
    runtime.stop()


def incident_onsets(summary: RunSummary) -> set[tuple[str, float]]:
    return {(incident.stream_id, incident.onset_s) for incident in summary.snapshot.incidents}


FAST_STREAMS = [StreamConfig(id="a", source=toy_source(6, [2])), StreamConfig(id="b", source=toy_source(5, [1, 3])),
                StreamConfig(id="broken", source="no-such-kind")]


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
    assert 0 <= latency["score"].p50_s <= latency["score"].p95_s
    assert latency["score"].p50_s <= latency["alert"].p95_s  # an alert comes after its chunk was scored
    # Replicas follow the partitions of the input topic (2 here), except a stage that asked for one.
    assert summary.stages == {"toy-score": 2, "toy-incidents": 2, "toy-alerts": 1}
    as_json = summary.as_json()
    assert as_json["chunks"] == 11
    assert {incident["id"] for incident in as_json["incidents"]} == {"a-2", "b-1", "b-3"}
    assert set(as_json["incidents"][0]) >= {"id", "stream_id", "onset_s", "reason"}


REALTIME_STREAMS = [StreamConfig(id="r1", source=toy_source(14, [3, 11])),
                    StreamConfig(id="r2", source=toy_source(14, [5]))]


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
        ("r1", "ended", 14), ("r2", "ended", 14)]
    latency = {item.stage: item.count for item in summary.snapshot.latency}
    assert latency["score"] >= 28  # every chunk scored (a replayed batch may score some twice)


def scored_sequences(settings: Settings) -> list[tuple[str, int]]:
    """Every (stream, sequence) on the scores topic, repeats included."""
    reader = EventReader(settings.bus(), [settings.topics().scores.name], since_ms=0)
    try:
        ends = reader.end_offsets()
        scored: list[tuple[str, int]] = []
        while not reader.caught_up_with(ends):
            scored += [(c.event.stream_id, c.event.sequence) for c in reader.poll()
                       if isinstance(c.event, DistressScored)]
        return scored
    finally:
        reader.close()


def test_graceful_stop_commits_so_a_restart_neither_repeats_nor_loses_work(settings: Settings,
                                                                             ray_cluster: None) -> None:
    streams = [StreamConfig(id="long", source=toy_source(60, []))]
    first = PipelineRuntime(settings, stages=toy_stages(), streams=streams, source_factory=build_toy_source,
                            realtime=True)
    try:
        first.start(stream_filter=True)
        while sum(item.count for item in first.snapshot().latency if item.stage == "score") < 3:
            time.sleep(0.2)
    finally:
        first.stop()  # the source ends the stream ("stopped"); stages commit what they processed
    second = PipelineRuntime(settings, stages=toy_stages(), streams=[], source_factory=build_toy_source,
                             realtime=False)
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
    runtime = PipelineRuntime(settings, stages=[*toy_stages()[:1], broken], streams=[],
                              source_factory=build_toy_source, realtime=False)
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
        streams = [StreamConfig(id="k1", source=toy_source(16, [2, 12])),
                   StreamConfig(id="k2", source=toy_source(16, [8]))]
        runtime = PipelineRuntime(settings, stages=toy_stages(), streams=streams, source_factory=build_toy_source,
                                  realtime=True)
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
            ("k1", "ended", 16), ("k2", "ended", 16)]
    finally:
        broker.down()


def test_connect_ray_joins_the_running_ray_instead_of_starting_one(ray_cluster: None) -> None:
    nodes = ray.get_runtime_context().get_node_id(), ray.cluster_resources()  # type: ignore[no-untyped-call]
    assert connect_ray(Settings().runtime, None) is False
    assert (ray.get_runtime_context().get_node_id(), ray.cluster_resources()) == nodes  # type: ignore[no-untyped-call]
