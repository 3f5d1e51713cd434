"""The catalogue of every event the pipeline records, grouped by the topic that carries it.

Payload fields use only codec-supported types: str, string ``Literal``s (the domain's words, e.g. ``Severity``), int,
float, bool, bytes, datetime, None unions, tuples and the small frozen value types below, so every event survives a
byte-exact round trip through Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.types import Severity
from events.base import Event

# ---------------------------------------------------------------------------------------------- value types


@dataclass(frozen=True, kw_only=True)
class LabelScore:
    """One sound label with its probability, e.g. ("scream", 0.93)."""

    label: str
    score: float


@dataclass(frozen=True, kw_only=True)
class Word:
    """One recognised word with its time span in seconds and its probability.

    In events the times count from the start of the stream; the ASR model produces them from the start of the
    transcribed segment and the speech recogniser shifts them (one type serves both, so nothing is copied).
    """

    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True, kw_only=True)
class PhraseHit:
    """A distress phrase the spotter found in a transcript, with where it was said."""

    phrase: str
    matched_text: str
    score: float
    start_s: float
    end_s: float


@dataclass(frozen=True, kw_only=True)
class FeatureSummary:
    """Per-chunk summary statistics of the acoustic features (what a person would read on a meter)."""

    rms_dbfs_mean: float
    rms_dbfs_max: float
    zcr_mean: float
    centroid_hz_mean: float
    rolloff_hz_mean: float
    flux_mean: float
    flatness_mean: float
    pitch_hz_median: float
    voiced_fraction: float


# ---------------------------------------------------------------------------------------- stream lifecycle


class StreamStarted(Event):
    """A capture actor opened a source and is about to publish its chunks.

    v2 added ``source_kind`` (file, url, microphone, stdin) so read models need not parse the source string.
    """

    event_type = "StreamStarted"
    schema_version = 2

    source: str  # redacted: credentials in URLs are never recorded
    source_kind: str
    sample_rate: int
    chunk_samples: int
    source_sample_rate: int
    source_channels: int
    realtime: bool


class StreamEnded(Event):
    """A stream finished normally (end of file, or the capture was stopped)."""

    event_type = "StreamEnded"

    reason: str
    chunks: int
    samples: int


class StreamFailed(Event):
    """A stream could not be opened or broke; other streams carry on."""

    event_type = "StreamFailed"

    source: str
    reason: str
    chunks: int
    samples: int


# ---------------------------------------------------------------------------------------------------- audio


class AudioChunkCaptured(Event):
    """A fixed window of normalised audio: 16 kHz mono, little-endian PCM16.

    Chunks of one capture run are caused by its StreamStarted (their correlation id is its event id).
    """

    event_type = "AudioChunkCaptured"

    sequence: int  # 0, 1, 2, ... within the run
    sample_offset: int  # stream sample of pcm16's first sample; offsets are contiguous across the run
    sample_rate: int
    # Wall-clock time of the first sample: paced (--realtime) = start + offset / rate; live sources = estimated
    # from arrival; files read as fast as possible = publish time.
    captured_at: datetime
    pcm16: bytes  # round(clip(x, -1, 1) * 32767) as little-endian int16
    clipped_samples: int  # samples at or beyond 16-bit full scale
    nonfinite_samples: int  # source frames in this window that held NaN/inf (replaced by silence)
    is_last: bool  # the run's final chunk: it holds the remainder (1 to chunk_samples samples)


class FeaturesExtracted(Event):
    """Acoustic features of one chunk: the float16 log-mel frames completed by it plus summary stats.

    v2 added ``log_mel``, the kind of log-mel in ``log_mel_f16`` (the acoustic model's front end): ``"power"``,
    ``ln`` of mel-band power (distress-cnn), ``"yamnet"``, ``ln(mel of magnitude + 0.001)`` (YAMNet), or
    ``"yamnet+power"``, both side by side in each frame (``n_mels`` 128, YAMNet's bands first; distress-fused). A
    scorer never scores frames of another kind than its model reads.
    """

    event_type = "FeaturesExtracted"
    schema_version = 2

    sequence: int
    sample_offset: int
    first_frame: int
    frames: int
    n_mels: int
    log_mel: str
    log_mel_f16: bytes
    summary: FeatureSummary
    is_last: bool


class TranscriptProduced(Event):
    """Speech recognised in a span of one stream, already checked by the hallucination guard."""

    event_type = "TranscriptProduced"

    text: str
    words: tuple[Word, ...]
    language: str
    model_id: str
    model_version: str
    word_timestamps: str  # "alignment" or "whisper"
    first_sequence: int
    last_sequence: int
    start_sample: int
    end_sample: int
    avg_logprob: float
    no_speech_prob: float
    is_partial: bool
    guard_flags: tuple[str, ...]
    phrases: tuple[PhraseHit, ...]


class DistressScored(Event):
    """The fused distress decision for one chunk of one stream, with the evidence behind it."""

    event_type = "DistressScored"

    sequence: int
    sample_offset: int
    score: float
    acoustic_probability: float
    threshold: float
    is_distress: bool
    labels: tuple[LabelScore, ...]
    phrases: tuple[PhraseHit, ...]
    rms_dbfs: float
    pitch_hz: float
    reason: str
    model_id: str
    model_version: str


# ------------------------------------------------------------------------------------------------ incidents


class IncidentEvent(Event):
    """Common shape of every incident transition (abstract)."""

    incident_id: str


class IncidentOpened(IncidentEvent):
    event_type = "IncidentOpened"

    severity: Severity
    score: float
    reason: str
    onset_sample: int
    onset_at: datetime
    labels: tuple[LabelScore, ...]
    phrases: tuple[PhraseHit, ...]
    transcript: str
    clip_sha256: str | None
    clip_duration_s: float | None


class IncidentUpdated(IncidentEvent):
    event_type = "IncidentUpdated"

    score: float
    reason: str
    labels: tuple[LabelScore, ...]
    phrases: tuple[PhraseHit, ...]
    transcript: str
    clip_sha256: str | None
    clip_duration_s: float | None


class IncidentEscalated(IncidentEvent):
    event_type = "IncidentEscalated"

    from_severity: Severity
    to_severity: Severity
    reason: str


class IncidentAcknowledged(IncidentEvent):
    event_type = "IncidentAcknowledged"

    actor: str
    note: str


class IncidentResolved(IncidentEvent):
    event_type = "IncidentResolved"

    actor: str  # "system" for auto-resolution after a quiet period
    reason: str
    note: str


class IncidentMarkedFalseAlarm(IncidentEvent):
    event_type = "IncidentMarkedFalseAlarm"

    actor: str
    note: str


class IncidentNoteAdded(IncidentEvent):
    event_type = "IncidentNoteAdded"

    actor: str
    note: str


# --------------------------------------------------------------------------------------------------- alerts


class AlertEvent(Event):
    """Common shape of alert delivery facts (abstract). ``alert_key`` is unique per transition and channel.

    The alerts topic is the alerting actor's ledger: it reads it back before sending, so nothing is sent twice.
    """

    alert_key: str
    incident_id: str  # empty for a digest: its AlertDeferred events name the incidents it covers
    channel: str  # redacted channel identity: never a full Apprise URL


class AlertRequested(AlertEvent):
    """A notification decided and recorded before it is sent; ``kind`` is notify, escalation or digest."""

    event_type = "AlertRequested"

    transition_event_id: str  # the incident event reported (an escalation: the one that started it; digest: "")
    severity: str
    title: str
    body: str
    kind: str
    route: str
    tier: int  # 0 for a first notification, n for the n-th escalation tier
    clip_sha256: str | None  # evidence clip to attach where the channel supports attachments


class AlertDeferred(AlertEvent):
    """A transition folded into a later digest (a digest route, or a rate limit was reached) instead of sent now."""

    event_type = "AlertDeferred"

    transition_event_id: str
    severity: str
    route: str
    reason: str
    digest_key: str  # the alert key of the digest that will carry it
    digest_due_at: datetime
    summary: str  # the transition's line in the digest, so the digest renders from the ledger alone


class AlertDispatched(AlertEvent):
    event_type = "AlertDispatched"

    attempts: int


class AlertFailed(AlertEvent):
    event_type = "AlertFailed"

    attempts: int
    reason: str
    final: bool


ALL_EVENT_TYPES: tuple[type[Event], ...] = (
    StreamStarted,
    StreamEnded,
    StreamFailed,
    AudioChunkCaptured,
    FeaturesExtracted,
    TranscriptProduced,
    DistressScored,
    IncidentOpened,
    IncidentUpdated,
    IncidentEscalated,
    IncidentAcknowledged,
    IncidentResolved,
    IncidentMarkedFalseAlarm,
    IncidentNoteAdded,
    AlertRequested,
    AlertDeferred,
    AlertDispatched,
    AlertFailed,
)
