"""Pipeline metrics: latency along causation links, consumer lag and the observer's bookkeeping, on a real broker;
the Prometheus endpoint over real HTTP."""

from __future__ import annotations

import urllib.request
import uuid
from datetime import UTC, datetime

import pytest

from actors.metrics import LatencyTracker, PipelineObserver, PrometheusExporter
from config import Settings
from events import Event
from events.catalogue import (
    AlertDispatched,
    AudioChunkCaptured,
    DistressScored,
    FeaturesExtracted,
    FeatureSummary,
    IncidentEscalated,
    IncidentOpened,
    StreamEnded,
    StreamStarted,
)
from events.kafka.admin import KafkaProbe, MetricsError
from tests.conftest import free_port

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def chunk(stream_id: str = "s", sequence: int = 0) -> AudioChunkCaptured:
    return AudioChunkCaptured(
        stream_id=stream_id,
        sequence=sequence,
        sample_offset=sequence * 8000,
        sample_rate=8000,
        captured_at=NOW,
        pcm16=b"\0\0" * 4,
        clipped_samples=0,
        nonfinite_samples=0,
        is_last=False,
    )


def features(cause: Event) -> FeaturesExtracted:
    summary = FeatureSummary(
        rms_dbfs_mean=-30.0,
        rms_dbfs_max=-20.0,
        zcr_mean=0.1,
        centroid_hz_mean=1000.0,
        rolloff_hz_mean=3000.0,
        flux_mean=0.1,
        flatness_mean=0.2,
        pitch_hz_median=0.0,
        voiced_fraction=0.0,
    )
    return FeaturesExtracted(
        **cause.caused(),
        sequence=0,
        sample_offset=0,
        first_frame=0,
        frames=0,
        n_mels=64,
        log_mel="power",
        log_mel_f16=b"",
        summary=summary,
        is_last=False,
    )


def score(cause: Event, sample_offset: int = 0) -> DistressScored:
    return DistressScored(
        **cause.caused(),
        sequence=0,
        sample_offset=sample_offset,
        score=0.9,
        acoustic_probability=0.9,
        threshold=0.5,
        is_distress=True,
        labels=(),
        phrases=(),
        rms_dbfs=-10.0,
        pitch_hz=0.0,
        reason="scream",
        model_id="m",
        model_version="1",
    )


def opened(cause: Event, incident_id: str = "i-1", onset_sample: int = 0) -> IncidentOpened:
    return IncidentOpened(
        **cause.caused(),
        incident_id=incident_id,
        severity="high",
        score=0.9,
        reason="scream",
        onset_sample=onset_sample,
        onset_at=NOW,
        labels=(),
        phrases=(),
        transcript="",
        clip_sha256=None,
        clip_duration_s=None,
    )


def dispatched(cause: IncidentOpened, key: str = "k-1") -> AlertDispatched:
    return AlertDispatched(**cause.caused(), alert_key=key, incident_id=cause.incident_id, channel="json", attempts=1)


def test_latency_follows_the_causation_chain_back_to_the_chunk() -> None:
    tracker = LatencyTracker()
    audio = chunk()
    feats = features(audio)
    scored = score(feats)
    incident = opened(scored)
    alert = dispatched(incident)
    assert tracker.observe(audio, 1_000) == []
    assert tracker.observe(feats, 1_040) == [("features", 0.04)]
    assert tracker.observe(scored, 1_100) == [("score", 0.1)]
    assert tracker.observe(incident, 1_250) == [("incident", 0.25)]
    assert tracker.observe(alert, 2_000) == [("alert", 1.0)]
    assert [(item.stage, item.count, item.p50_s) for item in tracker.latencies()] == [
        ("features", 1, 0.04),
        ("score", 1, 0.1),
        ("incident", 1, 0.25),
        ("alert", 1, 1.0),
    ]


def test_events_seen_before_their_causes_are_resolved_when_the_causes_arrive() -> None:
    tracker = LatencyTracker()
    audio = chunk()
    feats = features(audio)
    scored = score(feats)
    assert tracker.observe(scored, 1_300) == []  # cause unknown yet
    assert tracker.observe(feats, 1_200) == []
    assert sorted(tracker.observe(audio, 1_000)) == [("features", 0.2), ("score", 0.3)]


def test_events_whose_cause_never_arrives_are_forgotten_after_the_pending_window() -> None:
    tracker = LatencyTracker(pending_s=1.0)
    audio = chunk()
    feats = features(audio)
    tracker.observe(score(feats), 1_000)  # waits for its features
    tracker.observe(chunk(sequence=1), 5_000)  # four seconds later the orphan has expired
    tracker.observe(audio, 5_100)
    assert tracker.observe(feats, 5_200) == [("features", 0.1)]  # the expired score is not resolved any more
    assert [item.stage for item in tracker.latencies()] == ["features"]


def test_percentiles_over_many_samples() -> None:
    tracker = LatencyTracker(max_samples=100)
    for index in range(200):
        audio = chunk(sequence=index)
        tracker.observe(audio, 0)
        tracker.observe(features(audio), index * 10)  # 0 .. 1990 ms
    (features_latency,) = tracker.latencies()
    assert features_latency.count == 200  # all counted, percentiles over the latest 100 (1000 .. 1990 ms)
    assert features_latency.p50_s == pytest.approx(1.495)
    assert features_latency.p95_s == pytest.approx(1.9405)


def test_group_lag_counts_what_a_group_has_not_committed(kafka_settings: Settings) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    topic = bus.catalogue.streams.name
    with bus.producer() as producer:
        for index in range(5):
            producer.publish(StreamEnded(stream_id=f"s{index}", reason="eof", chunks=0, samples=0))
    probe = KafkaProbe(kafka_settings.kafka_connection())
    group = f"g-{uuid.uuid4().hex}"
    assert sum(probe.group_lag(group, [topic]).values()) == 5  # never committed: owes everything
    with bus.producer() as producer:
        consumer = bus.consumer(group_id=group, topics=[topic], producer=producer)
        seen = 0
        while seen < 3:
            for consumed in consumer.consume(max_messages=3 - seen, timeout_s=1.0):
                consumer.mark_processed(consumed)
                seen += 1
        consumer.commit()
        assert sum(probe.group_lag(group, [topic]).values()) == 2
        assert probe.group_members(group) == 1
        consumer.close()
    assert probe.group_members(group) == 0


def test_observer_summarises_streams_incidents_and_alerts(kafka_settings: Settings) -> None:
    bus = kafka_settings.bus()
    bus.ensure_topics()
    started = StreamStarted(
        stream_id="cam",
        source="cam.wav",
        source_kind="file",
        sample_rate=8000,
        chunk_samples=8000,
        source_sample_rate=8000,
        source_channels=1,
        realtime=False,
    )
    audio = chunk("cam", 3)
    incident = opened(score(audio, sample_offset=24_000), incident_id="cam-i", onset_sample=24_000)
    alert = dispatched(incident)
    with bus.producer() as producer:
        escalated = IncidentEscalated(
            **incident.caused(),
            incident_id="cam-i",
            from_severity="high",
            to_severity="critical",
            reason="a call for help followed",
        )
        for event in (
            started,
            audio,
            incident,
            escalated,
            alert,
            alert,
            chunk("other"),
            StreamEnded(**started.caused(), reason="eof", chunks=1, samples=8000),
        ):
            producer.publish(event)
    observer = PipelineObserver(bus, since_ms=0, stream_ids=["cam"])
    try:
        observer.read_to_end()
        snapshot = observer.snapshot()
    finally:
        observer.close()
    assert [(s.id, s.state, s.chunks, s.source) for s in snapshot.streams] == [("cam", "ended", 1, "cam.wav")]
    assert [(i.id, i.onset_s, i.reason, i.severity) for i in snapshot.incidents] == [
        ("cam-i", 3.0, "scream", "critical")
    ]  # the reason it opened for, the severity it has now
    assert (snapshot.alerts_sent, snapshot.alerts_sent_twice) == (1, 1)  # the same alert key dispatched twice
    assert snapshot.finished(["cam"]) and not snapshot.finished(["cam", "other"])


def test_prometheus_endpoint_serves_latency_lag_and_streams() -> None:
    exporter = PrometheusExporter()
    port = free_port()
    exporter.serve("127.0.0.1", port)
    exporter.observe_latency("score", 0.3)
    exporter.set_lag("distress.features", 7)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'distress_stage_latency_seconds_bucket{le="0.5",stage="score"} 1.0' in text
    assert 'distress_stage_latency_seconds_bucket{le="0.25",stage="score"} 0.0' in text
    assert 'distress_consumer_lag_messages{group="distress.features"} 7.0' in text


def test_an_observer_of_topics_that_do_not_exist_says_so_as_a_metrics_error(kafka_settings: Settings) -> None:
    """The metrics actor retries on a MetricsError (Kafka not ready yet), and `distress status` reports it."""
    with pytest.raises(MetricsError, match="does not exist"):
        PipelineObserver(kafka_settings.bus(), since_ms=0)  # this test's topics were never created
