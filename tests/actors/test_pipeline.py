"""The stage registry: declarations are validated, replicas follow partitions, registry and code cannot drift."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile

from actors.pipeline import (
    PipelineError,
    StageSpec,
    build_projections,
    capture_source,
    check_unique,
    default_stages,
)
from config import Settings, StreamConfig
from events.catalogue import AudioChunkCaptured, StreamEnded, StreamStarted
from events.kafka.admin import KafkaProbe
from tests.support.kafka import drain
from tests.support.toy_pipeline import build_scorer


def scorer_spec(**overrides: object) -> StageSpec:
    fields: dict[str, object] = {"name": "toy-score", "build": build_scorer, "inputs": ("audio_chunks",)}
    return StageSpec(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "bad name!"}, "letters, digits"),
        ({"inputs": ()}, "non-empty subset"),
        ({"inputs": ("dead_letters",)}, "non-empty subset"),
        ({"inputs": ("audio_chunks", "no_such_topic")}, "no_such_topic"),
        ({"max_batch": 0}, "max_batch"),
        ({"build": None}, "exactly one of build"),
        ({"serve": build_projections}, "exactly one of build"),
    ],
)
def test_bad_declarations_are_refused_with_the_reason(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        scorer_spec(**overrides)


def test_replicas_follow_partitions_within_the_cap() -> None:
    spec = scorer_spec()
    assert spec.replicas(partitions=4, max_replicas=8) == 4
    assert spec.replicas(partitions=4, max_replicas=2) == 2
    assert scorer_spec(scale_with_partitions=False).replicas(partitions=4, max_replicas=8) == 1


def test_group_and_topics_carry_the_deployment_prefix() -> None:
    settings = Settings(topic_prefix="site1.")
    spec = scorer_spec()
    assert spec.group_id(settings) == "site1.distress.toy-score"
    assert spec.input_topics(settings.topics()) == ("site1.audio.chunks",)


def test_registry_and_stage_code_must_agree() -> None:
    settings = Settings()
    stage = build_scorer(settings)
    scorer_spec().check_stage(stage, settings.topics())
    with pytest.raises(PipelineError, match=r"consumes .*audio.chunks.* registry says .*distress.scores"):
        scorer_spec(inputs=("scores",)).check_stage(stage, settings.topics())


def test_stage_names_must_be_unique() -> None:
    with pytest.raises(PipelineError, match="toy-score"):
        check_unique([scorer_spec(), scorer_spec()])


def test_every_registered_stage_builds_and_consumes_what_it_declares(kafka_settings: Settings) -> None:
    kafka_settings.ensure_topics()  # stages that rebuild state from history read it while being built
    stages = default_stages(kafka_settings)
    assert [spec.name for spec in stages] == ["features", "asr", "scorer", "incidents", "alerting", "projections"]
    for spec in stages:
        if spec.build is not None:
            spec.check_stage(spec.build(kafka_settings), kafka_settings.topics())
        else:
            assert spec.serve is not None
            assert callable(spec.serve(kafka_settings).run)
    without_asr = kafka_settings.model_copy(update={"asr": kafka_settings.asr.model_copy(update={"enabled": False})})
    assert "asr" not in [spec.name for spec in default_stages(without_asr)]


def test_backlog_is_group_lag_or_the_stage_s_own_measure(kafka_settings: Settings) -> None:
    kafka_settings.ensure_topics()
    with kafka_settings.bus().producer() as producer:
        producer.publish(StreamEnded(stream_id="s", reason="eof", chunks=0, samples=0))
    probe = KafkaProbe(kafka_settings.kafka_connection())
    stages = {spec.name: spec for spec in default_stages(kafka_settings)}
    assert stages["features"].unfinished(kafka_settings, probe) == 0  # nothing on audio.chunks
    assert stages["projections"].unfinished(kafka_settings, probe) == 1  # the stream event is not projected yet


def test_capture_source_publishes_a_recording_as_one_stream(kafka_settings: Settings, tmp_path: Path) -> None:
    recording = tmp_path / "two-and-a-half-seconds.wav"
    soundfile.write(recording, np.zeros(40_000, dtype=np.float32), 16_000)
    bus = kafka_settings.bus()
    bus.ensure_topics()
    with bus.producer() as producer:
        capture_source(StreamConfig(id="rec", source=str(recording)), kafka_settings, False).run(
            threading.Event(), producer
        )
    with bus.producer() as producer:
        reader = bus.consumer(
            group_id="check", topics=[bus.catalogue.streams.name, bus.catalogue.audio_chunks.name], producer=producer
        )
        events = [consumed.event for consumed in drain(reader, 5)]
        reader.close()
    assert [type(event) for event in events if not isinstance(event, AudioChunkCaptured)] == [
        StreamStarted,
        StreamEnded,
    ]
    chunks = sorted((e.sequence, len(e.pcm16) // 2) for e in events if isinstance(e, AudioChunkCaptured))
    assert chunks == [(0, 16_000), (1, 16_000), (2, 8_000)]
