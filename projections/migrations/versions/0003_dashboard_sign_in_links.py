"""One-time sign-in links kept in the database, so that a used link stays used.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dashboard_sign_in_links",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("operator", sa.String(128), nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("used_at", UTC_DATETIME, nullable=True),
    )
    op.create_index("ix_dashboard_sign_in_links_expires_at", "dashboard_sign_in_links", ["expires_at"])


def downgrade() -> None:
    op.drop_table("dashboard_sign_in_links")
