"""SQL read models: every table here but the dashboard's sessions is a projection of Kafka topics and can be rebuilt.

Timestamps are stored as UTC and always read back timezone-aware (SQLite keeps no zone); structured values are
canonical JSON text, so a table's contents hash identically after any rebuild, on SQLite and on PostgreSQL.
``last_offset``-style columns remember which event last changed a row, which makes re-applying an event a no-op.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Float, Integer, MetaData, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"refusing to store a naive datetime: {value!r}")
        moment = value.astimezone(UTC) if value.utcoffset() else value
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={"ix": "ix_%(table_name)s_%(column_0_name)s"})


class IncidentRow(Base):
    """Current state of every incident (folded by ``domain.incidents.fold_incident``)."""

    __tablename__ = "incidents"

    incident_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(64), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    onset_sample: Mapped[int] = mapped_column(BigInteger)
    onset_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(128))
    close_reason: Mapped[str | None] = mapped_column(Text)
    labels_json: Mapped[str] = mapped_column(Text)
    phrases_json: Mapped[str] = mapped_column(Text)
    transcript: Mapped[str] = mapped_column(Text)
    clip_sha256: Mapped[str | None] = mapped_column(String(64))
    clip_duration_s: Mapped[float | None] = mapped_column(Float)
    last_offset: Mapped[int] = mapped_column(BigInteger)


class IncidentTimelineRow(Base):
    """Every incident event, in order: the audit trail as a table."""

    __tablename__ = "incident_timeline"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(160), index=True)
    stream_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str | None] = mapped_column(String(128))
    summary: Mapped[str] = mapped_column(Text)
    payload_json: Mapped[str] = mapped_column(Text)
    kafka_partition: Mapped[int] = mapped_column(Integer)
    kafka_offset: Mapped[int] = mapped_column(BigInteger)


class StreamRow(Base):
    """Status, last activity, sound level and last labels of every stream."""

    __tablename__ = "streams"

    stream_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(Text)
    source_kind: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_reason: Mapped[str | None] = mapped_column(Text)
    chunks: Mapped[int | None] = mapped_column(BigInteger)
    last_activity_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_sequence: Mapped[int | None] = mapped_column(BigInteger)
    last_score: Mapped[float | None] = mapped_column(Float)
    last_is_distress: Mapped[bool | None]
    rms_dbfs: Mapped[float | None] = mapped_column(Float)
    pitch_hz: Mapped[float | None] = mapped_column(Float)
    last_labels_json: Mapped[str] = mapped_column(Text)
    lifecycle_offset: Mapped[int] = mapped_column(BigInteger)
    score_offset: Mapped[int] = mapped_column(BigInteger)


class AlertRow(Base):
    """Delivery status of every alert, one row per incident transition and channel."""

    __tablename__ = "alerts"

    alert_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(160), index=True)
    stream_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(Text)
    transition_event_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str | None] = mapped_column(String(16))
    route: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[str | None] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # requested, deferred, retrying, dispatched, failed
    attempts: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)  # the last failure, or why it was deferred
    requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_offset: Mapped[int] = mapped_column(BigInteger)


class TranscriptRow(Base):
    """Recognised speech per stream and span."""

    __tablename__ = "transcripts"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(64), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(16))
    start_sample: Mapped[int] = mapped_column(BigInteger)
    end_sample: Mapped[int] = mapped_column(BigInteger)
    is_partial: Mapped[bool]
    model_id: Mapped[str] = mapped_column(String(128))
    avg_logprob: Mapped[float] = mapped_column(Float)
    no_speech_prob: Mapped[float] = mapped_column(Float)
    phrases_json: Mapped[str] = mapped_column(Text)
    guard_flags_json: Mapped[str] = mapped_column(Text)


class CheckpointRow(Base):
    """Where each projection stands in each partition; written in the same transaction as its rows."""

    __tablename__ = "projection_checkpoints"

    projection: Mapped[str] = mapped_column(String(96), primary_key=True)
    topic: Mapped[str] = mapped_column(String(249), primary_key=True)
    kafka_partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)


# ------------------------------------------------------------------------- dashboard state, not projections


class DashboardSessionRow(Base):
    """A browser session of the dashboard: the dashboard's own state, which no rebuild touches. Kept here, not
    only in the signed cookie, so that signing out (or ``distress dashboard rotate-key``) outlives a restart."""

    __tablename__ = "dashboard_sessions"

    session_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)  # the cookie's id is not stored
    operator: Mapped[str] = mapped_column(String(128))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SignInLinkRow(Base):
    """A one-time sign-in link made at start when no accounts are configured: used once, or expired, it is dead,
    whatever restarts follow. Only the SHA-256 of the link's token is stored."""

    __tablename__ = "dashboard_sign_in_links"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
