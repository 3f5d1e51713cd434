"""One realistic instance of every event type, shared by the codec and Kafka round-trip tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from events import ALL_EVENT_TYPES, Event
from events.catalogue import (
    AlertDeferred,
    AlertDispatched,
    AlertFailed,
    AlertRequested,
    AudioChunkCaptured,
    DistressScored,
    FeaturesExtracted,
    FeatureSummary,
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
    StreamFailed,
    StreamStarted,
    TranscriptProduced,
    Word,
)

STREAM = "lobby-cam-1"
WHEN = datetime(2026, 11, 26, 21, 4, 5, 123456, tzinfo=UTC)
LABELS = (LabelScore(label="scream", score=0.93), LabelScore(label="speech", score=0.41))
PHRASES = (PhraseHit(phrase="help me", matched_text="help me", score=0.97, start_s=12.4, end_s=12.9),)


def sample_events() -> list[Event]:
    common: dict[str, Any] = {"stream_id": STREAM, "correlation_id": "corr-1", "causation_id": None}
    events: list[Event] = [
        StreamStarted(**common, source="rtsp://***@10.0.0.5:554/***", source_kind="url", sample_rate=16000,
                      chunk_samples=16000, source_sample_rate=44100, source_channels=2, realtime=True),
        StreamEnded(**common, reason="eof", chunks=12, samples=190_000),
        StreamFailed(**common, source="/srv/missing.wav", reason="no such file", chunks=0, samples=0),
        AudioChunkCaptured(**common, sequence=7, sample_offset=112_000, sample_rate=16000,
                           captured_at=WHEN.astimezone(timezone(timedelta(hours=2))),
                           pcm16=bytes(range(256)) * 125, clipped_samples=3, nonfinite_samples=1, is_last=False),
        FeaturesExtracted(**common, sequence=7, sample_offset=112_000, first_frame=698, frames=100, n_mels=64,
                          log_mel_f16=b"\x00\x3c" * 6400,
                          summary=FeatureSummary(rms_dbfs_mean=-23.5, rms_dbfs_max=-3.25, zcr_mean=0.08,
                                                 centroid_hz_mean=1830.0, rolloff_hz_mean=4100.5, flux_mean=0.7,
                                                 flatness_mean=0.02, pitch_hz_median=612.0, voiced_fraction=0.81),
                          is_last=False),
        TranscriptProduced(**common, text="Help me! Somebody help.",
                           words=(Word(text="Help", start_s=12.4, end_s=12.6, probability=0.91),
                                  Word(text="me!", start_s=12.6, end_s=12.9, probability=0.88)),
                           language="en", model_id="faster-whisper-tiny.en", model_version="ct2-int8",
                           word_timestamps="whisper", first_sequence=11, last_sequence=13, start_sample=176_000,
                           end_sample=224_000, avg_logprob=-0.31, no_speech_prob=0.02, is_partial=False,
                           guard_flags=(), phrases=PHRASES),
        DistressScored(**common, sequence=12, sample_offset=192_000, score=0.96, acoustic_probability=0.93,
                       threshold=0.6, is_distress=True, labels=LABELS, phrases=PHRASES, rms_dbfs=-6.5,
                       pitch_hz=880.0, reason="scream 0.93 + 'help me' at 12.4 s", model_id="distress-cnn",
                       model_version="1.0.0"),
        IncidentOpened(**common, incident_id="inc-1", severity="high", score=0.96, reason="scream 0.93",
                       onset_sample=192_000, onset_at=WHEN, labels=LABELS, phrases=PHRASES,
                       transcript="Help me!", clip_sha256="ab" * 32, clip_duration_s=15.0),
        IncidentUpdated(**common, incident_id="inc-1", score=0.98, reason="scream 0.95 + 'help me'",
                        labels=LABELS, phrases=PHRASES, transcript="Help me! Somebody help.", clip_sha256=None,
                        clip_duration_s=None),
        IncidentEscalated(**common, incident_id="inc-1", from_severity="high", to_severity="critical",
                          reason="not acknowledged within 2 min"),
        IncidentAcknowledged(**common, incident_id="inc-1", actor="operator:ana", note="on my way"),
        IncidentResolved(**common, incident_id="inc-1", actor="system", reason="quiet for 120 s", note=""),
        IncidentMarkedFalseAlarm(**common, incident_id="inc-2", actor="operator:ben", note="tv was loud"),
        IncidentNoteAdded(**common, incident_id="inc-1", actor="operator:ana", note="résident fine ✓"),
        AlertRequested(**common, alert_key="inc-1:evt-9:mailto-1", incident_id="inc-1", channel="mailto://***@host",
                       transition_event_id="evt-9", severity="high", title="Scream in lobby", body="scream 0.93",
                       kind="escalation", route="night-staff", tier=1, clip_sha256="ab" * 32),
        AlertDeferred(**common, alert_key="inc-3:evt-11:mailto-1", incident_id="inc-3", channel="mailto://***@host",
                      transition_event_id="evt-11", severity="low", route="daytime", reason="digest",
                      digest_key="digest/daytime/lobby-cam-1/20261126T2100Z/mailto-1",
                      digest_due_at=WHEN + timedelta(hours=1), summary="22:04 LOW bang 0.62"),
        AlertDispatched(**common, alert_key="inc-1:evt-9:mailto-1", incident_id="inc-1",
                        channel="mailto://***@host", attempts=2),
        AlertFailed(**common, alert_key="inc-1:evt-9:slack-1", incident_id="inc-1", channel="slack://***",
                    attempts=5, reason="HTTP 503", final=True),
    ]
    assert {type(event) for event in events} == set(ALL_EVENT_TYPES), "a catalogue type has no sample"
    return events
