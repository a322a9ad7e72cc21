"""Incidents: steps that could not be done for one episode, kept with their error.

A timer whose step fails, an episode whose stored record cannot be read, a delivery that
keeps failing: each is an ``incident`` row with its error, attempts and next retry, and
the rest of the batch goes on. Open incidents hold back only their own episode's timers.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("episode_id", sa.String(36), nullable=False),
        sa.Column("timer_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", _instant(), nullable=False),
        sa.Column("last_seen_at", _instant(), nullable=False),
        sa.Column("next_retry_at", _instant(), nullable=False),
        sa.Column("resolved_at", _instant(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "\"kind\" IN ('timer', 'delivery', 'episode')", name=op.f("ck_incident_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident")),
    )
    op.create_index(
        op.f("ix_incident_episode_id_resolved_at"), "incident", ["episode_id", "resolved_at"]
    )
    op.create_index(op.f("ix_incident_resolved_at_id"), "incident", ["resolved_at", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_incident_resolved_at_id"), table_name="incident")
    op.drop_index(op.f("ix_incident_episode_id_resolved_at"), table_name="incident")
    op.drop_table("incident")
