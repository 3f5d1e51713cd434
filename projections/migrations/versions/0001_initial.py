"""Initial projection schema: incidents, incident timeline, streams, alerts, transcripts, checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-01-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("incident_id", sa.String(160), primary_key=True),
        sa.Column("stream_id", sa.String(64), nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("onset_sample", sa.BigInteger(), nullable=False),
        sa.Column("onset_at", UTC_DATETIME, nullable=False),
        sa.Column("opened_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("acknowledged_at", UTC_DATETIME, nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("closed_at", UTC_DATETIME, nullable=True),
        sa.Column("closed_by", sa.String(128), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("labels_json", sa.Text(), nullable=False),
        sa.Column("phrases_json", sa.Text(), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=False),
        sa.Column("clip_sha256", sa.String(64), nullable=True),
        sa.Column("clip_duration_s", sa.Float(), nullable=True),
        sa.Column("last_offset", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_incidents_stream_id", "incidents", ["stream_id"])
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.create_index("ix_incidents_onset_at", "incidents", ["onset_at"])

    op.create_table(
        "incident_timeline",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("incident_id", sa.String(160), nullable=False),
        sa.Column("stream_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("occurred_at", UTC_DATETIME, nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("payload_json", sa.Text(), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_incident_timeline_incident_id", "incident_timeline", ["incident_id"])

    op.create_table(
        "streams",
        sa.Column("stream_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("source_kind", sa.String(32), nullable=True),
        sa.Column("started_at", UTC_DATETIME, nullable=True),
        sa.Column("ended_at", UTC_DATETIME, nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("chunks", sa.BigInteger(), nullable=True),
        sa.Column("last_activity_at", UTC_DATETIME, nullable=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=True),
        sa.Column("last_score", sa.Float(), nullable=True),
        sa.Column("last_is_distress", sa.Boolean(), nullable=True),
        sa.Column("rms_dbfs", sa.Float(), nullable=True),
        sa.Column("pitch_hz", sa.Float(), nullable=True),
        sa.Column("last_labels_json", sa.Text(), nullable=False),
        sa.Column("lifecycle_offset", sa.BigInteger(), nullable=False),
        sa.Column("score_offset", sa.BigInteger(), nullable=False),
    )

    op.create_table(
        "alerts",
        sa.Column("alert_key", sa.String(255), primary_key=True),
        sa.Column("incident_id", sa.String(160), nullable=False),
        sa.Column("stream_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("transition_event_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("route", sa.String(64), nullable=True),
        sa.Column("severity", sa.String(16), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("requested_at", UTC_DATETIME, nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("last_offset", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_alerts_incident_id", "alerts", ["incident_id"])

    op.create_table(
        "transcripts",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("stream_id", sa.String(64), nullable=False),
        sa.Column("occurred_at", UTC_DATETIME, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("start_sample", sa.BigInteger(), nullable=False),
        sa.Column("end_sample", sa.BigInteger(), nullable=False),
        sa.Column("is_partial", sa.Boolean(), nullable=False),
        sa.Column("model_id", sa.String(128), nullable=False),
        sa.Column("avg_logprob", sa.Float(), nullable=False),
        sa.Column("no_speech_prob", sa.Float(), nullable=False),
        sa.Column("phrases_json", sa.Text(), nullable=False),
        sa.Column("guard_flags_json", sa.Text(), nullable=False),
    )
    op.create_index("ix_transcripts_stream_id", "transcripts", ["stream_id"])

    op.create_table(
        "projection_checkpoints",
        sa.Column("projection", sa.String(96), primary_key=True),
        sa.Column("topic", sa.String(249), primary_key=True),
        sa.Column("kafka_partition", sa.Integer(), primary_key=True),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    for table in ("projection_checkpoints", "transcripts", "alerts", "streams", "incident_timeline", "incidents"):
        op.drop_table(table)
