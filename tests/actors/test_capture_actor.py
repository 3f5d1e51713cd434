"""Capture actors against the real broker: event order, exact sample accounting, failures, pacing, reconnects."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soxr

from actors.capture import (
    CaptureActor,
    CaptureReport,
    FileSource,
    RawPcmSource,
    ReconnectPolicy,
    UrlSource,
    decode_pcm16,
    expected_samples,
)
from config import Settings
from events import Event
from events.catalogue import AudioChunkCaptured, StreamEnded, StreamFailed, StreamStarted
from events.kafka.producer import EventProducer
from tests.support.audio import (
    ServedAudio,
    assert_contiguous,
    captured_events,
    chunks_of,
    http_audio_server,
    only,
    tone,
    write_audio,
)

FAST_RETRY = ReconnectPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.02)


class ChunkSignallingPublisher:
    """Publishes through the real producer and signals when the first chunk went out."""

    def __init__(self, producer: EventProducer) -> None:
        self.producer = producer
        self.first_chunk = threading.Event()

    def publish(self, event: Event) -> None:
        self.producer.publish(event)
        if isinstance(event, AudioChunkCaptured):
            self.first_chunk.set()

    def flush(self, timeout_s: float = 60.0) -> None:
        self.producer.flush(timeout_s)


def test_a_file_becomes_started_chunks_ended_with_exact_accounting(kafka_settings: Settings, tmp_path: Path) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    original = tone(2.5, 44100, (440.0, 660.0))
    path = write_audio(tmp_path / "lobby.wav", original, 44100, subtype="FLOAT")
    with bus.producer() as producer:
        report = CaptureActor(stream_id="lobby", source=FileSource(path), publisher=producer).run()
    received = captured_events(bus)

    started = only(received, StreamStarted, "lobby")
    ended = only(received, StreamEnded, "lobby")
    chunks = chunks_of(received, "lobby")
    total = expected_samples(original.shape[0], 44100)
    assert total == round(2.5 * 16000)
    assert [len(chunk.pcm16) // 2 for chunk in chunks] == [16000, 16000, 8000]
    assert_contiguous(chunks)
    assert ended.event == StreamEnded(
        **started.event.caused(),
        event_id=ended.event.event_id,
        occurred_at=ended.event.occurred_at,
        reason="eof",
        chunks=3,
        samples=total,
    )
    assert started.event == StreamStarted(
        stream_id="lobby",
        event_id=started.event.event_id,
        occurred_at=started.event.occurred_at,
        source=str(path),
        source_kind="file",
        sample_rate=16000,
        chunk_samples=16000,
        source_sample_rate=44100,
        source_channels=2,
        realtime=False,
    )
    assert all(chunk.correlation_id == started.event.event_id for chunk in chunks)
    assert started.topic == bus.catalogue.streams.name
    assert {c.topic for c in received if isinstance(c.event, AudioChunkCaptured)} == {bus.catalogue.audio_chunks.name}
    first_chunk = next(c for c in received if isinstance(c.event, AudioChunkCaptured) and c.event.sequence == 0)
    assert started.timestamp_ms <= first_chunk.timestamp_ms  # StreamStarted was produced first

    published = np.concatenate([decode_pcm16(chunk.pcm16) for chunk in chunks])
    reference = soxr.resample(original.mean(axis=1), 44100, 16000, quality="HQ")
    np.testing.assert_allclose(published, reference, atol=1e-4)
    assert (report.outcome, report.chunks, report.samples, report.source_frames) == ("ended", 3, total, 110250)


def test_non_finite_and_clipped_samples_are_counted_per_chunk(kafka_settings: Settings, tmp_path: Path) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    signal = tone(1.0, 16000, amplitude=0.25)
    signal[[3, 5000], 0] = np.nan
    signal[12000, 0] = -np.inf
    signal[13000:13010, 0] = 1.5  # clipped: beyond full scale
    path = write_audio(tmp_path / "glitchy.wav", signal, 16000, subtype="FLOAT")
    with bus.producer() as producer:
        report = CaptureActor(
            stream_id="glitchy", source=FileSource(path), publisher=producer, chunk_samples=8000
        ).run()
    chunks = chunks_of(captured_events(bus), "glitchy")
    assert [(chunk.nonfinite_samples, chunk.clipped_samples) for chunk in chunks] == [(2, 0), (1, 10)]
    assert (report.nonfinite_samples, report.clipped_samples) == (3, 10)
    published = decode_pcm16(chunks[0].pcm16)
    assert published[3] == 0.0 and published[5000] == 0.0


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda tmp: tmp / "nowhere.flac", "no such file"),
        (lambda tmp: tmp, "is a directory"),
    ],
    ids=["missing", "directory"],
)
def test_an_unusable_source_publishes_only_stream_failed(
    kafka_settings: Settings, tmp_path: Path, make: object, reason: str
) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    path = make(tmp_path)  # type: ignore[operator]
    with bus.producer() as producer:
        report = CaptureActor(stream_id="broken", source=FileSource(path), publisher=producer).run()
    received = captured_events(bus)
    failed = only(received, StreamFailed, "broken").event
    assert isinstance(failed, StreamFailed)
    assert failed.source == str(path) and reason in failed.reason and str(path) in failed.reason
    assert (failed.chunks, failed.samples) == (0, 0)
    assert [type(c.event) for c in received] == [StreamFailed]
    assert report.failed and report.reason == failed.reason


def test_audio_captured_before_a_network_failure_is_published_before_stream_failed(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    payload = write_audio(tmp_path / "a.wav", tone(2.0, 16000), 16000).read_bytes()
    # the first response breaks off half-way, then the server answers 503 until the actor gives up
    served = ServedAudio(
        payload, drop_first=1, drop_after_bytes=len(payload) // 2, error_status=503, error_from_request=2
    )
    with http_audio_server(served) as base, bus.producer() as producer:
        report = CaptureActor(
            stream_id="cam", source=UrlSource(f"{base}/a.wav", reconnect=FAST_RETRY), publisher=producer
        ).run()
    received = captured_events(bus)
    chunks = chunks_of(received, "cam")
    failed = only(received, StreamFailed, "cam").event
    assert isinstance(failed, StreamFailed)
    assert_contiguous(chunks)
    assert failed.chunks == len(chunks) and failed.samples == sum(len(chunk.pcm16) // 2 for chunk in chunks) > 0
    assert f"gave up after {FAST_RETRY.max_attempts} failed attempt(s)" in failed.reason
    assert failed.source.startswith("http://127.0.0.1:") and failed.source in failed.reason
    assert report.failed and report.samples == failed.samples
    assert len(served.requests) == FAST_RETRY.max_attempts  # the broken-off response was the first failure


def test_a_dropped_http_stream_reconnects_and_continues_the_same_stream(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    original = tone(1.5, 22050)
    payload = write_audio(tmp_path / "a.wav", original, 22050).read_bytes()
    served = ServedAudio(payload, drop_first=1, drop_after_bytes=len(payload) // 3)
    with http_audio_server(served) as base, bus.producer() as producer:
        report = CaptureActor(
            stream_id="radio",
            source=UrlSource(f"{base}/live", reconnect=FAST_RETRY),
            publisher=producer,
            chunk_samples=4000,
        ).run()
    received = captured_events(bus)
    chunks = chunks_of(received, "radio")
    ended = only(received, StreamEnded, "radio").event
    assert isinstance(ended, StreamEnded)
    assert_contiguous(chunks)
    assert report.reconnects == 1 and len(served.requests) == 2
    full = expected_samples(original.shape[0], 22050)
    assert full < ended.samples < 2 * full  # part of the first connection, then all of the second
    assert ended.samples == sum(len(chunk.pcm16) // 2 for chunk in chunks) == report.samples


def test_realtime_pacing_stamps_chunks_by_sample_time(kafka_settings: Settings, tmp_path: Path) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    path = write_audio(tmp_path / "short.wav", tone(1.0, 48000), 48000)  # one scoring window: nothing padded
    began = time.monotonic()
    with bus.producer() as producer:
        CaptureActor(
            stream_id="paced", source=FileSource(path), publisher=producer, chunk_samples=4000, realtime=True
        ).run()
    elapsed = time.monotonic() - began
    received = captured_events(bus)
    chunks = chunks_of(received, "paced")
    started = only(received, StreamStarted, "paced").event
    assert isinstance(started, StreamStarted) and started.realtime
    assert len(chunks) == 4
    first = chunks[0].captured_at
    for chunk in chunks:
        assert chunk.captured_at - first == timedelta(microseconds=chunk.sample_offset * 1_000_000 // 16000)
    assert elapsed >= 1.0  # the last chunk cannot be published before its audio has "played"


def test_stopping_a_live_stream_publishes_what_arrived_and_ends_it(kafka_settings: Settings) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    read_fd, write_fd = os.pipe()
    stop = threading.Event()
    with os.fdopen(read_fd, "rb") as reader, bus.producer() as producer:
        publisher = ChunkSignallingPublisher(producer)
        actor = CaptureActor(
            stream_id="pipe", source=RawPcmSource(stream=reader), publisher=publisher, chunk_samples=1600
        )
        results: list[CaptureReport] = []
        runner = threading.Thread(target=lambda: results.append(actor.run(stop)))
        runner.start()
        os.write(write_fd, (tone(0.5, 16000)[:, 0] * 32767).astype("<i2").tobytes())  # 8000 samples
        assert publisher.first_chunk.wait(timeout=30)
        stop.set()  # the writer keeps the pipe open and silent: the stop alone must end the stream
        runner.join(timeout=30)
        assert not runner.is_alive()
        os.close(write_fd)
    report = results[0]
    assert report.samples == 8000
    received = captured_events(bus)
    ended = only(received, StreamEnded, "pipe").event
    assert isinstance(ended, StreamEnded) and ended.reason == "stopped"
    chunks = chunks_of(received, "pipe")
    assert_contiguous(chunks)
    assert ended.samples == report.samples == sum(len(chunk.pcm16) // 2 for chunk in chunks)
