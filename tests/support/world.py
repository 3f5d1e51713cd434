"""Real events for the dashboard tests: published to the test broker, projected by the real projectors."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from actors.clips import ClipStore
from actors.pipeline import default_stages
from config import Settings
from domain.incidents import incident_id_for
from domain.types import Severity
from events import Event
from events.catalogue import (
    AlertFailed,
    AlertRequested,
    DistressScored,
    IncidentOpened,
    LabelScore,
    PhraseHit,
    StreamStarted,
    TranscriptProduced,
    Word,
)
from events.kafka.admin import KafkaProbe, commit_offsets
from events.kafka.connection import BusError
from events.kafka.log import TopicLog
from projections.database import open_database
from projections.projector import Projector
from projections.read_models import PROJECTIONS

RATE = 16_000
ONSET_WINDOW = 5
LEAKY_CHANNEL_ERROR = "POST to json://alice:hunter2@hooks.example.org/secret-path failed: 500"
SECRETS = ("hunter2", "secret-path", "alice:")  # the parts of LEAKY_CHANNEL_ERROR no page may show


def tone_pcm16(seconds: float, frequency_hz: float = 440.0) -> bytes:
    """A sine tone that fades in and out, so its waveform has a recognisable shape."""
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = np.sin(np.pi * t / seconds)
    return (0.6 * envelope * np.sin(2 * math.pi * frequency_hz * t) * 32767).astype("<i2").tobytes()


def wait_for_leaders(settings: Settings, timeout_s: float = 60.0) -> None:
    """Fresh topics on a fresh broker answer 'not leader' for a moment; readers that assign partitions need them.

    Opening a ``TopicLog`` on every topic reads each partition's watermarks from its leader, so it succeeds once
    all have one."""
    bus, names = settings.bus(), [spec.name for spec in settings.topics().all()]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with TopicLog(bus, names, timeout_s=5.0):
                return
        except BusError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass(frozen=True, kw_only=True)
class PublishedIncident:
    incident_id: str
    stream_id: str
    opened: IncidentOpened
    clip_sha256: str | None
    clip_bytes: bytes | None


class World:
    """One test's streams, incidents and alerts, written as events and projected into the test database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bus = settings.bus()
        settings.ensure_topics()
        wait_for_leaders(settings)
        self.engine = open_database(settings)
        self.clips = ClipStore(settings.clips_dir)

    def publish(self, *events: Event) -> None:
        with self.bus.producer() as producer:
            for event in events:
                producer.publish(event)
            producer.flush()

    def project(self) -> None:
        """Apply everything published so far to every read model."""
        for projection in PROJECTIONS.values():
            projector = Projector(self.engine, self.bus, projection)
            try:
                projector.catch_up()
            finally:
                projector.close()

    def finish_pipeline(self) -> None:
        """Commit every stage group at the end of its input, as a pipeline that processed everything and stopped
        leaves them (the dashboard's health then finds the pipeline idle, not stopped with work waiting)."""
        connection = self.settings.kafka_connection()
        probe = KafkaProbe(connection)
        for spec in default_stages(self.settings):
            if spec.backlog is not None:  # keeps its position elsewhere (projections: ``project``)
                continue
            ends = probe.end_offsets(probe.partitions(spec.input_topics(self.settings.topics())))
            commit_offsets(connection, spec.group_id(self.settings), ends)

    def incident(
        self,
        stream_id: str = "hall-1",
        *,
        severity: Severity = "high",
        with_clip: bool = True,
        with_alerts: bool = True,
        onset_at: datetime | None = None,
        opened_after_s: float = 1.0,
    ) -> PublishedIncident:
        """A stream that heard a scream and a call for help: scores, a timed transcript, a clip, an incident
        opened ``opened_after_s`` after the onset and (optionally) one failed alert whose error text contains a
        secret URL."""
        onset = onset_at or datetime.now(UTC) - timedelta(seconds=2)
        start = onset - timedelta(seconds=ONSET_WINDOW)
        scores = [self.score(stream_id, window, start) for window in range(ONSET_WINDOW + 4)]
        help_at = ONSET_WINDOW + 0.5
        phrase = PhraseHit(phrase="help me", matched_text="help me", score=0.93, start_s=help_at, end_s=help_at + 0.7)
        words = (
            Word(text="please", start_s=help_at - 0.5, end_s=help_at - 0.1, probability=0.9),
            Word(text="help", start_s=help_at, end_s=help_at + 0.3, probability=0.95),
            Word(text="me", start_s=help_at + 0.35, end_s=help_at + 0.7, probability=0.95),
        )
        transcript = TranscriptProduced(
            stream_id=stream_id,
            occurred_at=onset + timedelta(seconds=2),
            text="please help me",
            words=words,
            language="en",
            model_id="whisper-test",
            model_version="1",
            word_timestamps="alignment",
            first_sequence=ONSET_WINDOW,
            last_sequence=ONSET_WINDOW + 1,
            start_sample=ONSET_WINDOW * RATE,
            end_sample=(ONSET_WINDOW + 2) * RATE,
            avg_logprob=-0.2,
            no_speech_prob=0.01,
            is_partial=False,
            guard_flags=(),
            phrases=(phrase,),
        )
        stored = self.clips.put_pcm16(tone_pcm16(8.0), RATE) if with_clip else None
        trigger = scores[ONSET_WINDOW + 1]
        incident_id = incident_id_for(stream_id, trigger.event_id)
        opened = IncidentOpened(
            **trigger.caused(),
            occurred_at=onset + timedelta(seconds=opened_after_s),
            incident_id=incident_id,
            severity=severity,
            score=0.94,
            reason="2 of the last 3 windows positive; high: spoken call for help",
            onset_sample=ONSET_WINDOW * RATE,
            onset_at=onset,
            labels=(LabelScore(label="scream", score=0.91), LabelScore(label="shout", score=0.62)),
            phrases=(phrase,),
            transcript="please help me",
            clip_sha256=stored.sha256 if stored else None,
            clip_duration_s=stored.duration_s if stored else None,
        )
        started = StreamStarted(
            stream_id=stream_id,
            occurred_at=start,
            source="file:///recordings/hall.wav",
            source_kind="file",
            sample_rate=RATE,
            chunk_samples=RATE,
            source_sample_rate=RATE,
            source_channels=1,
            realtime=True,
        )
        events: list[Event] = [started, *scores, transcript, opened]
        if with_alerts:
            key = f"{incident_id}/{opened.event_id}/ops-hook"
            requested = AlertRequested(
                **opened.caused(),
                alert_key=key,
                incident_id=incident_id,
                channel="ops-hook",
                transition_event_id=opened.event_id,
                severity=severity,
                title=f"{severity} incident on {stream_id}",
                body="scream",
                kind="notify",
                route="all",
                tier=0,
                clip_sha256=None,
            )
            failed = AlertFailed(
                **requested.caused(),
                alert_key=key,
                incident_id=incident_id,
                channel="ops-hook",
                attempts=1,
                reason=LEAKY_CHANNEL_ERROR,
                final=False,
            )
            events += [requested, failed]
        self.publish(*events)
        return PublishedIncident(
            incident_id=incident_id,
            stream_id=stream_id,
            opened=opened,
            clip_sha256=stored.sha256 if stored else None,
            clip_bytes=self.clips.read(stored.sha256) if stored else None,
        )

    @staticmethod
    def score(stream_id: str, window: int, start: datetime) -> DistressScored:
        """The scorer's verdict on one one-second window from ``start``: distress from window ``ONSET_WINDOW``."""
        positive = window >= ONSET_WINDOW
        score = 0.3 + 0.6 * positive + 0.01 * window
        return DistressScored(
            stream_id=stream_id,
            occurred_at=start + timedelta(seconds=window + 0.3),
            sequence=window,
            sample_offset=window * RATE,
            score=score,
            acoustic_probability=score,
            threshold=0.6,
            is_distress=positive,
            labels=(LabelScore(label="scream", score=score), LabelScore(label="speech", score=0.4)),
            phrases=(),
            rms_dbfs=-14.0 if positive else -42.0,
            pitch_hz=640.0 if positive else 0.0,
            reason="scream" if positive else "",
            model_id="test-model",
            model_version="1",
        )
