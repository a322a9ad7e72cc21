"""Reminders to coordinators, and their delivery through each channel.

A ``reminder`` row is written with the due item's change of status, in the same transaction;
a ``reminder_delivery`` row per channel records attempts, the last error and when to try
again, so a failed delivery is retried and visible, never dropped.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reminder",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("episode_id", sa.String(36), nullable=False),
        sa.Column("patient_ref", sa.String(128), nullable=False),
        sa.Column("task_key", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("task_status", sa.String(16), nullable=False),
        sa.Column("due_at", _instant(), nullable=False),
        sa.Column("escalate_at", _instant(), nullable=True),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("created_at", _instant(), nullable=False),
        sa.ForeignKeyConstraint(
            ["episode_id"], ["episode.id"], name=op.f("fk_reminder_episode_id_episode")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_reminder_idempotency_key")),
    )
    op.create_index(op.f("ix_reminder_episode_id"), "reminder", ["episode_id"])
    op.create_table(
        "reminder_delivery",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reminder_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", _instant(), nullable=False),
        sa.Column("sent_at", _instant(), nullable=True),
        sa.Column("created_at", _instant(), nullable=False),
        sa.CheckConstraint(
            "\"status\" IN ('pending', 'retrying', 'sent')",
            name=op.f("ck_reminder_delivery_status"),
        ),
        sa.ForeignKeyConstraint(
            ["reminder_id"],
            ["reminder.id"],
            name=op.f("fk_reminder_delivery_reminder_id_reminder"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_delivery")),
        sa.UniqueConstraint(
            "reminder_id", "channel", name=op.f("uq_reminder_delivery_reminder_id_channel")
        ),
    )
    op.create_index(
        "ix_reminder_delivery_status_next_attempt_at",
        "reminder_delivery",
        ["status", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_reminder_delivery_status_next_attempt_at", table_name="reminder_delivery")
    op.drop_table("reminder_delivery")
    op.drop_index(op.f("ix_reminder_episode_id"), table_name="reminder")
    op.drop_table("reminder")
