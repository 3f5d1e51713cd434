"""A small real pipeline for testing the runtime without the ML stages: a synthetic capture source, a loudness
scorer, an incident opener and an alert dispatcher, all real Stages on real Kafka hosted by real Ray actors.

The toy stages are deterministic per input event (ids derive from the stream and chunk sequence), so a run that
reprocesses a batch after a crash yields the same incidents; they keep no state between events.
"""

from __future__ import annotations

import atexit
import math
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import ray

from actors.capture import EventPublisher
from actors.pipeline import StageSpec
from actors.runtime.driver import connect_ray
from actors.runtime.hosts import CaptureSource
from config import Settings, StreamConfig
from config.settings import RuntimeConfig
from events import Event
from events.catalogue import (
    AlertDispatched,
    AudioChunkCaptured,
    DistressScored,
    IncidentOpened,
    StreamEnded,
    StreamStarted,
)
from events.kafka.consumer import ConsumedEvent
from events.topics import TopicCatalogue

SAMPLE_RATE = 16_000
LOUD_DBFS = -20.0


def local_ray() -> None:
    """One small local Ray for the whole test session (idempotent), shut down when the interpreter exits."""
    if connect_ray(RuntimeConfig(local_num_cpus=2, local_object_store_mb=128), address=None):
        atexit.register(ray.shutdown)


# ---------------------------------------------------------------------------------------------- source


def toy_source(seconds: int, loud_at: Sequence[int]) -> str:
    """A source string for ``ToySource``: ``toy:<seconds>:<loud second>,<loud second>``."""
    return f"toy:{seconds}:{','.join(str(second) for second in loud_at)}"


class ToySource:
    """Publishes ``seconds`` one-second chunks of quiet noise, loud at the given seconds, bracketed by stream events."""

    live = False

    def __init__(self, stream: StreamConfig, settings: Settings, realtime: bool) -> None:
        parts = stream.source.split(":")
        if len(parts) != 3 or parts[0] != "toy":
            raise ValueError(f"not a toy source: {stream.source!r}")
        _, seconds, loud = parts
        self.stream = stream
        self.settings = settings
        self.realtime = realtime
        self.seconds = int(seconds)
        self.loud_at = {int(second) for second in loud.split(",") if second}

    def run(self, stop: threading.Event, publisher: EventPublisher) -> None:
        rng = np.random.default_rng(zlib.crc32(self.stream.id.encode()))
        started = StreamStarted(
            stream_id=self.stream.id,
            source=self.stream.source,
            source_kind="toy",
            sample_rate=SAMPLE_RATE,
            chunk_samples=SAMPLE_RATE,
            source_sample_rate=SAMPLE_RATE,
            source_channels=1,
            realtime=self.realtime,
        )
        begin, wall_begin = datetime.now(UTC), time.monotonic()
        publisher.publish(started)
        sent = 0
        for second in range(self.seconds):
            if stop.is_set():
                break
            if self.realtime:
                stop.wait(max(0.0, wall_begin + second + 1 - time.monotonic()))
            amplitude = 0.5 if second in self.loud_at else 0.001
            pcm = (rng.standard_normal(SAMPLE_RATE) * amplitude * 32767).clip(-32768, 32767).astype("<i2")
            publisher.publish(
                AudioChunkCaptured(
                    **started.caused(),
                    sequence=second,
                    sample_offset=second * SAMPLE_RATE,
                    sample_rate=SAMPLE_RATE,
                    captured_at=begin + timedelta(seconds=second),
                    pcm16=pcm.tobytes(),
                    clipped_samples=0,
                    nonfinite_samples=0,
                    is_last=second == self.seconds - 1,
                )
            )
            sent += 1
        publisher.publish(
            StreamEnded(
                **started.caused(),
                reason="eof" if sent == self.seconds else "stopped",
                chunks=sent,
                samples=sent * SAMPLE_RATE,
            )
        )
        publisher.flush()


def build_toy_source(stream: StreamConfig, settings: Settings, realtime: bool) -> CaptureSource:
    return ToySource(stream, settings, realtime)


# ---------------------------------------------------------------------------------------------- stages


class LoudnessScorer:
    """One DistressScored per chunk: loud chunks are distress."""

    name = "toy-score"

    def __init__(self, catalogue: TopicCatalogue) -> None:
        self.catalogue = catalogue

    def input_topics(self) -> Sequence[str]:
        return [self.catalogue.audio_chunks.name]

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        chunk = consumed.event
        if not isinstance(chunk, AudioChunkCaptured):
            return
        samples = np.frombuffer(chunk.pcm16, dtype="<i2").astype(np.float64) / 32768
        dbfs = 20 * math.log10(max(float(np.sqrt(np.mean(samples**2))), 1e-9))
        yield DistressScored(
            **chunk.caused(),
            sequence=chunk.sequence,
            sample_offset=chunk.sample_offset,
            score=float(dbfs > LOUD_DBFS),
            acoustic_probability=float(dbfs > LOUD_DBFS),
            threshold=0.5,
            is_distress=dbfs > LOUD_DBFS,
            labels=(),
            phrases=(),
            rms_dbfs=dbfs,
            pitch_hz=0.0,
            reason=f"rms {dbfs:.1f} dBFS",
            model_id="toy",
            model_version="1",
        )

    def tick(self) -> Iterable[Event]:
        return ()


class IncidentPerLoudChunk:
    """Opens one incident per distress score, with an id derived from the chunk, so reprocessing is harmless."""

    name = "toy-incidents"

    def __init__(self, catalogue: TopicCatalogue) -> None:
        self.catalogue = catalogue

    def input_topics(self) -> Sequence[str]:
        return [self.catalogue.scores.name]

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        score = consumed.event
        if isinstance(score, DistressScored) and score.is_distress:
            yield IncidentOpened(
                **score.caused(),
                incident_id=f"{score.stream_id}-{score.sequence}",
                severity="high",
                score=score.score,
                reason=score.reason,
                onset_sample=score.sample_offset,
                onset_at=score.occurred_at,
                labels=(),
                phrases=(),
                transcript="",
                clip_sha256=None,
                clip_duration_s=None,
            )

    def tick(self) -> Iterable[Event]:
        return ()


class AlertPerIncident:
    """Records one dispatched alert per opened incident (no real channel: the runtime is under test here)."""

    name = "toy-alerts"

    def __init__(self, catalogue: TopicCatalogue) -> None:
        self.catalogue = catalogue

    def input_topics(self) -> Sequence[str]:
        return [self.catalogue.incidents.name]

    def handle(self, consumed: ConsumedEvent) -> Iterable[Event]:
        incident = consumed.event
        if isinstance(incident, IncidentOpened):
            yield AlertDispatched(
                **incident.caused(),
                alert_key=incident.incident_id,
                incident_id=incident.incident_id,
                channel="toy",
                attempts=1,
            )

    def tick(self) -> Iterable[Event]:
        return ()


def build_scorer(settings: Settings) -> LoudnessScorer:
    return LoudnessScorer(settings.topics())


def build_incidents(settings: Settings) -> IncidentPerLoudChunk:
    return IncidentPerLoudChunk(settings.topics())


def build_alerts(settings: Settings) -> AlertPerIncident:
    return AlertPerIncident(settings.topics())


def toy_stages() -> tuple[StageSpec, ...]:
    return (
        StageSpec(name=LoudnessScorer.name, build=build_scorer, inputs=("audio_chunks",)),
        StageSpec(name=IncidentPerLoudChunk.name, build=build_incidents, inputs=("scores",)),
        StageSpec(name=AlertPerIncident.name, build=build_alerts, inputs=("incidents",), scale_with_partitions=False),
    )
