"""The feature stage: one FeaturesExtracted per chunk, equal to features of the whole stream, robust to redelivery."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from actors.capture import CaptureActor, FileSource, decode_pcm16
from actors.features import FeatureStage, decode_log_mel
from actors.stage import StageRunner
from config import Settings
from events.catalogue import AudioChunkCaptured, FeaturesExtracted
from models.features import FeatureConfig, extract_features, summarize
from tests.support.audio import tone, write_audio
from tests.support.features import CATALOGUE, chunk_events, handle
from tests.support.kafka import drain

CONFIG = FeatureConfig()


def speech_like(seconds: float) -> np.ndarray:
    voiced = tone(seconds, 16000, (220.0,), amplitude=0.3)[:, 0]
    noise = np.random.default_rng(1).normal(0, 0.05, voiced.shape[0])
    return (voiced + noise).astype(np.float32)


def test_features_per_chunk_equal_features_of_the_whole_stream() -> None:
    signal = speech_like(2.3)
    chunks = chunk_events(signal, [16000, 16000, 4800])
    outputs = handle(FeatureStage(CATALOGUE), chunks)
    whole = extract_features(decode_pcm16(b"".join(chunk.pcm16 for chunk in chunks)))

    assert [(o.sequence, o.sample_offset, o.is_last) for o in outputs] == [
        (c.sequence, c.sample_offset, c.is_last) for c in chunks
    ]
    assert [o.first_frame for o in outputs] == [0, outputs[0].frames, outputs[0].frames + outputs[1].frames]
    assert sum(o.frames for o in outputs) == CONFIG.frames_in(signal.shape[0]) == whole.n_frames
    patches = np.concatenate([decode_log_mel(o) for o in outputs])
    np.testing.assert_allclose(patches, whole.log_mel, rtol=1e-3, atol=1e-2)  # float16 on the wire
    for output in outputs:
        frames = slice(output.first_frame, output.first_frame + output.frames)
        assert output.summary.rms_dbfs_mean == pytest.approx(float(whole.dbfs[frames].mean()), abs=1e-3)
        assert output.summary.pitch_hz_median == pytest.approx(220.0, rel=0.03)
    assert all(
        o.correlation_id == "run-1" and o.causation_id == c.event_id for o, c in zip(outputs, chunks, strict=True)
    )


def test_a_chunk_shorter_than_a_frame_yields_an_empty_patch_and_a_silent_summary() -> None:
    outputs = handle(FeatureStage(CATALOGUE), chunk_events(speech_like(0.01), [160]))
    assert outputs[0].frames == 0 and outputs[0].log_mel_f16 == b""
    empty = extract_features(np.zeros(0, dtype=np.float32))
    assert outputs[0].summary == summarize(empty)


def test_redelivered_chunks_are_skipped() -> None:
    chunks = chunk_events(speech_like(2.0), [8000] * 4)
    stage = FeatureStage(CATALOGUE)
    outputs = handle(stage, [chunks[0], chunks[1], chunks[0], chunks[1], chunks[2], chunks[3]])
    assert [o.sequence for o in outputs] == [0, 1, 2, 3]
    assert stage.skipped_duplicates == 2


def test_a_new_run_of_the_same_stream_starts_over_at_frame_zero() -> None:
    signal = speech_like(1.0)
    first_run = chunk_events(signal, [8000, 8000], run_id="run-1")
    second_run = chunk_events(signal, [8000, 8000], run_id="run-2")
    outputs = handle(FeatureStage(CATALOGUE), [first_run[0], second_run[0], second_run[1]])
    assert [o.first_frame for o in outputs] == [0, 0, outputs[1].frames]


def test_after_the_last_chunk_the_stream_state_is_released() -> None:
    chunks = chunk_events(speech_like(1.0), [8000, 8000])
    stage = FeatureStage(CATALOGUE)
    outputs = handle(stage, [chunks[0], chunks[1], chunks[0]])  # a replay after is_last is a fresh start
    assert [o.first_frame for o in outputs] == [0, outputs[0].frames, 0]
    assert stage.skipped_duplicates == 0


@pytest.mark.parametrize("start", [16000, 16080])
def test_joining_mid_stream_aligns_frames_to_the_stream_grid(start: int) -> None:
    signal = speech_like(2.0)
    chunks = chunk_events(signal, [start, signal.shape[0] - start])
    outputs = handle(FeatureStage(CATALOGUE), [chunks[1]])  # a restarted stage sees only the second chunk
    first_frame = -(-start // CONFIG.hop_length)  # the first frame starting at or after the chunk
    assert outputs[0].first_frame == first_frame
    whole = extract_features(decode_pcm16(b"".join(chunk.pcm16 for chunk in chunks)))
    expected = whole.log_mel[first_frame : first_frame + outputs[0].frames]
    np.testing.assert_allclose(decode_log_mel(outputs[0]), expected, rtol=1e-3, atol=1e-2)
    assert first_frame + outputs[0].frames == whole.n_frames


def test_a_gap_restarts_the_extractor_at_the_new_offset() -> None:
    chunks = chunk_events(speech_like(2.0), [8000] * 4)
    stage = FeatureStage(CATALOGUE)
    outputs = handle(stage, [chunks[0], chunks[2], chunks[3]])
    assert stage.gaps == 1
    assert outputs[1].first_frame == 16000 // CONFIG.hop_length


def test_chunks_at_another_sample_rate_are_not_processed() -> None:
    chunk = chunk_events(speech_like(0.5), [8000])[0]
    wrong_rate = AudioChunkCaptured(**{**chunk.payload(), "stream_id": "x", "sample_rate": 8000})
    assert handle(FeatureStage(CATALOGUE), [wrong_rate]) == []


def test_decode_log_mel_checks_the_payload_size() -> None:
    output = handle(FeatureStage(CATALOGUE), chunk_events(speech_like(0.5), [8000]))[0]
    torn = FeaturesExtracted(**{**output.payload(), "stream_id": "x", "log_mel_f16": output.log_mel_f16[:-2]})
    with pytest.raises(ValueError, match="expected"):
        decode_log_mel(torn)


def test_feature_stage_on_kafka_emits_one_event_per_captured_chunk(kafka_settings: Settings, tmp_path: Path) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    path = write_audio(tmp_path / "ward.wav", tone(2.5, 44100, (300.0, 300.0)), 44100)
    with bus.producer() as producer:
        report = CaptureActor(stream_id="ward", source=FileSource(path), publisher=producer).run()
    stage = FeatureStage(bus.catalogue)
    runner = StageRunner(stage, bus, group_id=f"features-{uuid.uuid4()}")
    try:
        while runner.processed < report.chunks:
            runner.run_once()
    finally:
        runner.close()
    with bus.producer() as producer:
        reader = bus.consumer(
            group_id=f"r-{uuid.uuid4()}", topics=[bus.catalogue.audio_features.name], producer=producer
        )
        consumed = drain(reader, report.chunks)
        reader.close()
    features = sorted(
        (c.event for c in consumed if isinstance(c.event, FeaturesExtracted)), key=lambda event: event.sequence
    )
    assert len(consumed) == len(features) == report.chunks
    assert [event.sequence for event in features] == list(range(report.chunks))
    assert sum(event.frames for event in features) == CONFIG.frames_in(report.samples)
    assert [event.is_last for event in features] == [False] * (report.chunks - 1) + [True]
