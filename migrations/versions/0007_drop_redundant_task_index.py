"""Drop the task table's index on episode_id alone.

The unique constraint on (episode_id, key) is an index led by episode_id, so it already
finds an episode's items; the second index only cost a page write on every new due item.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_task_episode_id"), table_name="task")


def downgrade() -> None:
    op.create_index(op.f("ix_task_episode_id"), "task", ["episode_id"])
