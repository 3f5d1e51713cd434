"""The HTTP API's shapes (they become the OpenAPI document) - also what the HTML templates render.

Identifiers are validated where they enter: a stream id follows the settings' rule, an incident id is
``<stream id>:<12 hex digits>`` (see ``domain.incidents.incident_id_for``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.types import IncidentStatus, Severity

STREAM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
INCIDENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}:[0-9a-f]{12}$"


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class LabelScoreOut(_Out):
    label: str
    score: float


class PhraseOut(_Out):
    phrase: str
    matched_text: str
    score: float
    start_s: float = Field(description="seconds from the start of the stream")
    end_s: float


class IncidentSummary(_Out):
    incident_id: str
    stream_id: str
    stream_name: str
    status: IncidentStatus
    severity: Severity
    score: float
    reason: str
    onset_at: datetime
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None
    labels: list[LabelScoreOut]
    phrases: list[PhraseOut]
    transcript: str
    has_clip: bool
    clip_duration_s: float | None


class IncidentPage(_Out):
    items: list[IncidentSummary]
    total: int = Field(description="incidents matching the filters, over all pages")
    limit: int
    offset: int


class TimelineEntry(_Out):
    event_id: str
    event_type: str
    occurred_at: datetime
    actor: str | None = Field(description="who did it: an operator, 'system', or null for pipeline transitions")
    summary: str


class AlertDelivery(_Out):
    alert_key: str
    channel: str = Field(description="the channel's name or redacted identity, never a full Apprise URL")
    kind: str | None = Field(description="notify, escalation, digest, or deferred (folded into a digest)")
    route: str | None
    status: Literal["requested", "deferred", "dispatched", "retrying", "failed"]
    severity: str | None
    title: str | None
    attempts: int
    detail: str | None = Field(description="the last delivery failure, or why it was deferred")
    requested_at: datetime | None
    updated_at: datetime


class AllowedActions(_Out):
    acknowledge: bool
    resolve: bool
    false_alarm: bool
    note: bool


class IncidentDetail(_Out):
    incident: IncidentSummary
    timeline: list[TimelineEntry]
    alerts: list[AlertDelivery]
    allowed: AllowedActions


class StreamTile(_Out):
    stream_id: str
    name: str
    status: Literal["running", "silent", "ended", "failed", "not started"]
    source_kind: str | None
    started_at: datetime | None
    last_activity_at: datetime | None
    end_reason: str | None
    rms_dbfs: float | None
    level: float = Field(description="rms_dbfs mapped to 0..1 over -60..0 dBFS, for a meter")
    last_score: float | None
    last_is_distress: bool | None
    labels: list[LabelScoreOut] = Field(description="the latest window's top sound labels")
    last_transcript: str | None
    active_incidents: int


class TranscriptToken(_Out):
    text: str
    start_s: float | None = Field(description="seconds into the evidence clip; null when unknown")
    end_s: float | None
    phrase: bool = Field(description="part of a spoken distress phrase")


class TranscriptLine(_Out):
    start_s: float = Field(description="seconds into the evidence clip (negative: before it)")
    end_s: float
    text: str
    tokens: list[TranscriptToken]
    timed: bool = Field(description="whether tokens carry word times")


class ScorePoint(_Out):
    t_s: float = Field(description="seconds from the incident's onset")
    score: float
    is_distress: bool
    labels: dict[str, float]


class Evidence(_Out):
    clip_url: str | None
    clip_start_s: float = Field(description="stream time of the clip's first sample, in seconds")
    clip_duration_s: float | None
    onset_in_clip_s: float
    scores: list[ScorePoint]
    top_labels: list[str]
    transcripts: list[TranscriptLine]
    problem: str | None = Field(description="why score history or word times are missing, if they are")


class Waveform(_Out):
    duration_s: float
    sample_rate: int
    peaks: list[tuple[float, float]] = Field(description="(min, max) per bucket, in -1..1")


class CommandBody(BaseModel):
    """An operator command's optional free-text note."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=4000)


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=4000)


class CommandResult(_Out):
    incident_id: str
    event_id: str
    event_type: str
    actor: str
    occurred_at: datetime


class LoginBody(BaseModel):
    """Either a user name and password, or a token."""

    model_config = ConfigDict(extra="forbid")

    username: str | None = Field(default=None, min_length=1, max_length=64)
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    token: str | None = Field(default=None, min_length=1, max_length=512)

    @model_validator(mode="after")
    def _one_method(self) -> LoginBody:
        with_password = self.username is not None or self.password is not None
        if with_password == (self.token is not None):
            raise ValueError("give either username and password, or token")
        if with_password and (self.username is None or self.password is None):
            raise ValueError("username and password go together")
        return self


class SessionOut(_Out):
    operator: str
    via: str
    expires_at: datetime | None
    csrf_token: str | None = Field(description="send as X-CSRF-Token on commands made with the session cookie")


class ProjectorHealth(_Out):
    running: bool
    events: int
    error: str | None


class BrokerHealth(_Out):
    reachable: bool
    error: str | None = Field(description="why the event log (Kafka) did not answer, if it did not")


StageState = Literal["ok", "idle", "stopped", "behind"]


class StageHealthOut(_Out):
    stage: str
    group_id: str | None = Field(description="the stage's consumer group; null: it keeps its position elsewhere")
    consumers: int | None = Field(description="live members of the group (0: the stage is not running)")
    lag: int = Field(description="input events the stage has not finished yet")
    state: StageState = Field(
        description="idle: not running with nothing to do; stopped: not running while input waits; behind: "
        "more input waiting than it should be"
    )


class Health(_Out):
    status: Literal["ok", "degraded"]
    reasons: list[str] = Field(description="what is wrong, one line each, for people; empty when ok")
    checked_at: datetime = Field(description="when the broker, database and pipeline were last probed")
    broker: BrokerHealth
    database: bool
    database_error: str | None
    pipeline: list[StageHealthOut] = Field(description="per stage, in data-flow order; empty when unknown")
    pipeline_error: str | None = Field(description="why the pipeline's state is unknown, if it is")
    projectors: dict[str, ProjectorHealth]
    live_clients: int
