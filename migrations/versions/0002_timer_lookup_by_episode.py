"""Look up an episode's pending timers by episode first.

Cancelling an episode's timers, and checking that none of its earlier timers is held by
another worker, filter on episode, status and due instant. With only single-column indexes
SQLite's planner picked the status index and walked every pending timer of every episode;
one index led by the episode serves all three lookups (and the foreign key).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_due_timer_episode_id_status_due_at", "due_timer", ["episode_id", "status", "due_at"]
    )
    op.drop_index("ix_due_timer_episode_id", table_name="due_timer")


def downgrade() -> None:
    op.create_index("ix_due_timer_episode_id", "due_timer", ["episode_id"])
    op.drop_index("ix_due_timer_episode_id_status_due_at", table_name="due_timer")
