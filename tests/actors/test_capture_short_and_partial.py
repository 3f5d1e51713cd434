"""Short and partly read inputs through a capture actor against the real broker.

Every stream that ends on its own with 0.1 s or more is padded with a noise floor to one scoring window (so the live
pipeline and `distress detect` score it); shorter input fails naming its length; a file cut off mid-way ends its
stream normally, with what was never heard in the StreamEnded reason, which `distress run` shows per stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actors.capture import CaptureActor, CaptureReport, FileSource, decode_pcm16
from actors.capture.actor import MIN_SCORED_SAMPLES, PADDING_NOISE_RMS, PADDING_SEED, SCORING_WINDOW_SAMPLES
from config import Settings
from events.catalogue import StreamEnded, StreamFailed
from events.kafka.consumer import ConsumedEvent
from models.classifier import PATCH_FRAMES
from models.features import FeatureConfig
from tests.support.audio import assert_contiguous, captured_events, chunks_of, only, tone, write_audio


def capture(settings: Settings, stream_id: str, path: Path) -> tuple[CaptureReport, list[ConsumedEvent]]:
    bus = settings.bus()
    bus.ensure_topics()
    with bus.producer() as producer:
        report = CaptureActor(
            stream_id=stream_id, source=FileSource(path), publisher=producer, chunk_samples=4000
        ).run()
    return report, captured_events(bus)


def test_the_scoring_window_holds_a_whole_classifier_patch() -> None:
    features = FeatureConfig()
    assert (PATCH_FRAMES - 1) * features.hop_length + features.win_length <= SCORING_WINDOW_SAMPLES
    assert MIN_SCORED_SAMPLES == 1600  # 0.1 s at 16 kHz


def test_a_short_recording_is_padded_with_a_noise_floor_after_it_to_one_scoring_window(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    path = write_audio(tmp_path / "clip.wav", tone(0.3, 44100), 44100)
    report, received = capture(kafka_settings, "clip", path)
    chunks = chunks_of(received, "clip")
    assert_contiguous(chunks)
    ended = only(received, StreamEnded, "clip").event
    assert isinstance(ended, StreamEnded) and ended.reason == "eof"
    assert ended.samples == report.samples == SCORING_WINDOW_SAMPLES
    assert report.padded_samples == SCORING_WINDOW_SAMPLES - 4800 and report.heard_seconds == 0.3
    published = np.concatenate([decode_pcm16(chunk.pcm16) for chunk in chunks])
    assert np.abs(published[:4800]).max() > 0.4  # the tone first, at its own times
    floor = published[4800:]  # then the noise floor, the same every time
    assert np.sqrt(np.mean(np.square(floor))) == pytest.approx(PADDING_NOISE_RMS, rel=0.1)
    np.testing.assert_allclose(
        floor, np.random.default_rng(PADDING_SEED).standard_normal(floor.size) * PADDING_NOISE_RMS, atol=1 / 32767
    )  # PCM16 quantisation


def test_input_shorter_than_a_tenth_of_a_second_fails_naming_its_length(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    path = write_audio(tmp_path / "click.wav", tone(0.05, 16000), 16000)
    report, received = capture(kafka_settings, "click", path)
    failed = only(received, StreamFailed, "click").event
    assert isinstance(failed, StreamFailed)
    assert "too short to score: 0.050 s of audio, at least 0.1 s is needed" in failed.reason
    assert report.failed and report.padded_samples == 0 and report.samples == 800
    assert [chunk.is_last for chunk in chunks_of(received, "click")] == [True]  # downstream state is released


def test_a_cut_off_file_ends_its_stream_with_what_was_never_heard(kafka_settings: Settings, tmp_path: Path) -> None:
    full = write_audio(tmp_path / "full.wav", tone(20.0, 16000, amplitude=0.1), 16000, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: data.index(b"data") + 8 + 5 * 16000 * 2])  # header: 20 s; data: 5 s
    report, received = capture(kafka_settings, "cut", cut)
    ended = only(received, StreamEnded, "cut").event
    assert isinstance(ended, StreamEnded)
    assert ended.reason.startswith("eof; input only partly read: only 5.0 s of the 20.0 s the file declares")
    assert report.outcome == "ended" and report.reason == ended.reason
    assert (report.heard_seconds, report.declared_seconds, len(report.warnings)) == (5.0, 20.0, 1)
