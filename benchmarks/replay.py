"""Replay benchmark: events/s rebuilding every projection from Kafka into SQLite and into PostgreSQL.

A private single-node broker is started on free ports; a deterministic synthetic history (streams with scores,
transcripts, incident lifecycles with operator decisions, and alert deliveries) is published once, then
``distress replay --projection all`` is timed against each database: read from offset 0, decode, apply in batches
(one transaction per batch, checkpoints included), swap the shadow tables in; the projections are rebuilt
concurrently, as the command does. PostgreSQL comes from ``DISTRESS_BENCH_POSTGRES_URL`` or
``DISTRESS_TEST_POSTGRES_URL`` (a throwaway schema is used and dropped).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from config import load_settings
from domain.incidents import incident_id_for
from events import Event, default_codec
from events.catalogue import (
    AlertDispatched,
    AlertFailed,
    AlertRequested,
    AudioChunkCaptured,
    DistressScored,
    IncidentAcknowledged,
    IncidentEscalated,
    IncidentMarkedFalseAlarm,
    IncidentNoteAdded,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    LabelScore,
    PhraseHit,
    StreamEnded,
    StreamStarted,
    TranscriptProduced,
)
from events.kafka.broker import LocalBroker
from projections.database import open_database
from projections.read_models import PROJECTIONS
from projections.replay import replay_all

REPO_ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 1, 5, 20, 0, 0, tzinfo=UTC)
HELP = PhraseHit(phrase="help me", matched_text="help me", score=0.93, start_s=0.2, end_s=0.7)


def synthetic_history(
    *, streams: int, incidents_per_stream: int, windows_per_incident: int, seed: int = 1
) -> list[Event]:
    """A reproducible event history (ids included) in the shape the pipeline produces, stream by stream."""
    rng = random.Random(seed)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    events: list[Event] = []
    for number in range(streams):
        stream_id = f"cam-{number:03d}"
        clock = START + timedelta(seconds=rng.uniform(0, 30))
        session = new_id()
        events.append(
            StreamStarted(
                stream_id=stream_id,
                event_id=session,
                occurred_at=clock,
                source=f"rtsp://***@10.1.{number}.7:554/***",
                source_kind="url",
                sample_rate=16_000,
                chunk_samples=16_000,
                source_sample_rate=48_000,
                source_channels=2,
                realtime=True,
            )
        )
        window = 0
        for _ in range(incidents_per_stream):
            trigger: DistressScored | None = None
            for step in range(windows_per_incident):
                window += 1
                clock += timedelta(seconds=1)
                distress = step >= windows_per_incident - 2
                score = rng.uniform(0.8, 0.99) if distress else rng.uniform(0.0, 0.3)
                label = rng.choice(("scream", "shout", "glass", "speech", "music"))
                trigger = DistressScored(
                    stream_id=stream_id,
                    event_id=new_id(),
                    occurred_at=clock,
                    correlation_id=session,
                    sequence=window,
                    sample_offset=window * 16_000,
                    score=round(score, 4),
                    acoustic_probability=round(score, 4),
                    threshold=0.6,
                    is_distress=distress,
                    labels=(
                        LabelScore(label=label, score=round(score, 4)),
                        LabelScore(label="speech", score=round(rng.random(), 4)),
                    ),
                    phrases=(),
                    rms_dbfs=round(rng.uniform(-60, -3), 2),
                    pitch_hz=round(rng.uniform(0, 900), 1),
                    reason=f"{label} {score:.2f}" if distress else "",
                    model_id="distress-cnn",
                    model_version="1.0.0",
                )
                events.append(trigger)
            assert trigger is not None
            events += _incident_lifecycle(rng, new_id, trigger, clock)
            clock += timedelta(seconds=90)
            window += 90
        events.append(
            StreamEnded(
                stream_id=stream_id,
                event_id=new_id(),
                occurred_at=clock,
                correlation_id=session,
                reason="eof",
                chunks=window,
                samples=window * 16_000,
            )
        )
    return events


def _incident_lifecycle(rng: random.Random, new_id: Any, trigger: DistressScored, clock: datetime) -> list[Event]:
    incident_id = incident_id_for(trigger.stream_id, trigger.event_id)
    envelope: dict[str, Any] = {"stream_id": trigger.stream_id, "correlation_id": trigger.correlation_id}
    labels = trigger.labels
    opened = IncidentOpened(
        **envelope,
        event_id=new_id(),
        occurred_at=clock,
        causation_id=trigger.event_id,
        incident_id=incident_id,
        severity="high",
        score=trigger.score,
        reason=trigger.reason,
        onset_sample=trigger.sample_offset - 16_000,
        onset_at=clock - timedelta(seconds=1),
        labels=labels,
        phrases=(),
        transcript="",
        clip_sha256=None,
        clip_duration_s=None,
    )
    clock += timedelta(seconds=3)
    transcript = TranscriptProduced(
        **envelope,
        event_id=new_id(),
        occurred_at=clock,
        text="help me please",
        words=(),
        language="en",
        model_id="faster-whisper-tiny.en",
        model_version="ct2-int8",
        word_timestamps="whisper",
        first_sequence=trigger.sequence - 1,
        last_sequence=trigger.sequence,
        start_sample=trigger.sample_offset,
        end_sample=trigger.sample_offset + 32_000,
        avg_logprob=-0.3,
        no_speech_prob=0.02,
        is_partial=False,
        guard_flags=(),
        phrases=(HELP,),
    )
    updated = IncidentUpdated(
        **envelope,
        event_id=new_id(),
        occurred_at=clock,
        causation_id=transcript.event_id,
        incident_id=incident_id,
        score=trigger.score,
        reason="scream; said 'help me'",
        labels=labels,
        phrases=(HELP,),
        transcript=transcript.text,
        clip_sha256=f"{rng.getrandbits(256):064x}",
        clip_duration_s=12.0,
    )
    escalated = IncidentEscalated(
        **envelope,
        event_id=new_id(),
        occurred_at=clock,
        causation_id=updated.event_id,
        incident_id=incident_id,
        from_severity="high",
        to_severity="critical",
        reason="'help me' said + scream",
    )
    events: list[Event] = [opened, transcript, updated, escalated]
    for channel in ("mailto://***@ops", "ntfy://***"):
        key = f"{incident_id}:{opened.event_id}:{channel[:6]}"
        common = {**envelope, "alert_key": key, "incident_id": incident_id, "channel": channel}
        events.append(
            AlertRequested(
                **common,
                event_id=new_id(),
                occurred_at=clock,
                transition_event_id=opened.event_id,
                severity="high",
                title="Distress",
                body=opened.reason,
                kind="notify",
                route="default",
                tier=0,
                clip_sha256=None,
            )
        )
        if rng.random() < 0.2:
            events.append(
                AlertFailed(**common, event_id=new_id(), occurred_at=clock, attempts=1, reason="HTTP 503", final=False)
            )
        events.append(AlertDispatched(**common, event_id=new_id(), occurred_at=clock, attempts=2))
    clock += timedelta(seconds=20)
    operator = f"operator:{rng.choice(('ana', 'ben', 'chi'))}"
    events.append(
        IncidentAcknowledged(
            **envelope, event_id=new_id(), occurred_at=clock, incident_id=incident_id, actor=operator, note="on my way"
        )
    )
    events.append(
        IncidentNoteAdded(
            **envelope,
            event_id=new_id(),
            occurred_at=clock,
            incident_id=incident_id,
            actor=operator,
            note="residents checked",
        )
    )
    clock += timedelta(seconds=60)
    if rng.random() < 0.25:
        events.append(
            IncidentMarkedFalseAlarm(
                **envelope,
                event_id=new_id(),
                occurred_at=clock,
                incident_id=incident_id,
                actor=operator,
                note="television",
            )
        )
    else:
        events.append(
            IncidentResolved(
                **envelope,
                event_id=new_id(),
                occurred_at=clock,
                incident_id=incident_id,
                actor=operator,
                reason="resolved by operator",
                note="all fine",
            )
        )
    return events


def codec_costs(history: list[Event]) -> dict[str, Any]:
    """The codec alone, without Kafka or a database: how much of a rebuild's CPU time decoding takes, and the size
    on ``audio.chunks`` of one second of audio (16 kHz PCM16 in one AudioChunkCaptured, as capture publishes it)."""
    codec = default_codec()
    started = time.process_time()
    messages = [codec.encode(event) for event in history]
    encode_s = time.process_time() - started
    decode_s = math.inf
    for _ in range(3):  # the best of three: the least disturbed by other work on the machine
        started = time.process_time()
        for message in messages:
            codec.decode(message)
        decode_s = min(decode_s, time.process_time() - started)
    second = AudioChunkCaptured(
        stream_id="cam-000",
        occurred_at=START,
        correlation_id=str(uuid.UUID(int=1, version=4)),
        sequence=1,
        sample_offset=16_000,
        sample_rate=16_000,
        captured_at=START,
        pcm16=random.Random(1).randbytes(32_000),
        clipped_samples=0,
        nonfinite_samples=0,
        is_last=False,
    )
    return {
        "encode_us_per_event": round(encode_s / len(messages) * 1e6, 2),
        "decode_us_per_event": round(decode_s / len(messages) * 1e6, 2),
        "mean_message_bytes": round(sum(map(len, messages)) / len(messages), 1),
        "audio_chunk_bytes_per_audio_second": len(codec.encode(second)),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _postgres_schema_url(base: str, schema: str) -> str:
    return (
        make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    )


def _rebuild_rate(settings: Any) -> dict[str, Any]:
    """Wall-clock events/s of ``replay --projection all`` (the projections rebuilt concurrently, as the command
    does), and this process's CPU time: on a shared machine the wall clock also measures the other tenants, the
    CPU time only this work (the database server and the broker excluded)."""
    engine = open_database(settings)
    cpu_started = time.process_time()
    try:
        rebuilt = replay_all(engine, settings.bus(), list(PROJECTIONS.values()))
    finally:
        engine.dispose()
    cpu_seconds = time.process_time() - cpu_started
    return {
        "events": rebuilt.messages,
        "seconds": round(rebuilt.seconds, 3),
        "events_per_s": round(rebuilt.events_per_s, 1),
        "cpu_s": round(cpu_seconds, 3),
        "events_per_cpu_s": round(rebuilt.messages / cpu_seconds, 1),
        "per_projection": {
            result.projection: {"events": result.messages, "seconds": round(result.seconds, 3)}
            for result in rebuilt.results
        },
    }


def run(*, streams: int = 40, incidents_per_stream: int = 150, windows_per_incident: int = 6) -> dict[str, Any]:
    """Publish the synthetic history once, then time a full rebuild into SQLite and PostgreSQL."""
    history = synthetic_history(
        streams=streams, incidents_per_stream=incidents_per_stream, windows_per_incident=windows_per_incident
    )
    postgres_base = os.environ.get("DISTRESS_BENCH_POSTGRES_URL") or os.environ.get("DISTRESS_TEST_POSTGRES_URL")
    with tempfile.TemporaryDirectory(prefix="distress-bench-replay-") as scratch:
        settings = load_settings(
            data_dir=Path(scratch),
            kafka_bootstrap=None,
            kafka_home=REPO_ROOT / ".local" / "kafka",
            kafka_port=_free_port(),
            kafka_controller_port=_free_port(),
            topic_prefix="bench.",
        )
        broker = LocalBroker(settings)
        broker.up()
        try:
            settings.ensure_topics()
            published_at = time.perf_counter()
            with settings.bus().producer() as producer:
                for event in history:
                    producer.publish(event)
                producer.flush()
            publish_s = time.perf_counter() - published_at
            result: dict[str, Any] = {
                "events_published": len(history),
                "publish_s": round(publish_s, 2),
                "cpus": os.cpu_count(),
                "load_average_1m_before": round(os.getloadavg()[0], 2),
                "codec": codec_costs(history),
            }
            sqlite = _rebuild_rate(settings)
            result["events_per_s_sqlite"] = sqlite["events_per_s"]
            result["events_per_cpu_s_sqlite"] = sqlite["events_per_cpu_s"]
            result["sqlite"] = sqlite
            if postgres_base is None:
                result["events_per_s_postgresql"] = None
                result["events_per_cpu_s_postgresql"] = None
                result["postgresql"] = "skipped: set DISTRESS_BENCH_POSTGRES_URL or DISTRESS_TEST_POSTGRES_URL"
            else:
                schema = f"bench_{uuid.uuid4().hex[:10]}"
                admin = create_engine(postgres_base)
                with admin.begin() as connection:
                    connection.execute(text(f'CREATE SCHEMA "{schema}"'))
                try:
                    postgres = _rebuild_rate(
                        settings.model_copy(update={"database_url": _postgres_schema_url(postgres_base, schema)})
                    )
                finally:
                    with admin.begin() as connection:
                        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                    admin.dispose()
                result["events_per_s_postgresql"] = postgres["events_per_s"]
                result["events_per_cpu_s_postgresql"] = postgres["events_per_cpu_s"]
                result["postgresql"] = postgres
            result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
        finally:
            broker.down()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--incidents-per-stream", type=int, default=150)
    parser.add_argument("--windows-per-incident", type=int, default=6)
    parser.add_argument("--codec-only", action="store_true", help="only the codec's costs: no broker, no database")
    arguments = parser.parse_args()
    shape = {
        "streams": arguments.streams,
        "incidents_per_stream": arguments.incidents_per_stream,
        "windows_per_incident": arguments.windows_per_incident,
    }
    print(json.dumps(codec_costs(synthetic_history(**shape)) if arguments.codec_only else run(**shape), indent=2))


if __name__ == "__main__":
    main()
