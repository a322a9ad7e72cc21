"""An episode's current due items, and its audit rows in chain order.

A step reads only the episode's current due items: the open ones and the last closed one
of each kind (``engine.due.current_items``). ``task.archived_at`` marks the others, set by
the step that closes a later item of the same kind, and a partial index holds the current
ones. Items already closed are archived here the same way; their ``archived_at`` is their
own last update.

The audit log's index on ``episode_id`` becomes ``(episode_id, seq)``: it serves the same
lookups, and an episode's most recent rows come off it in order (the episode view's
timeline) instead of being sorted from all of them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT = "archived_at IS NULL"
# Closed items other than the last closed of their kind (a key less its number: the kind
# of "periodic_review_3" is "periodic_review", as engine.due.item_kind has it).
ARCHIVE_CLOSED = """
UPDATE task SET archived_at = updated_at WHERE id IN (
    SELECT id FROM (
        SELECT id, ROW_NUMBER() OVER (
            PARTITION BY episode_id, rtrim(key, '0123456789_')
            ORDER BY COALESCE(completed_at, updated_at) DESC, id DESC
        ) AS newer
        FROM task WHERE status IN ('done', 'cancelled')
    ) AS closed WHERE newer > 1
)
"""


def upgrade() -> None:
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(ARCHIVE_CLOSED)
    op.create_index(
        "ix_task_current_by_episode",
        "task",
        ["episode_id"],
        sqlite_where=sa.text(CURRENT),
        postgresql_where=sa.text(CURRENT),
    )
    op.create_index("ix_audit_log_episode_id_seq", "audit_log", ["episode_id", "seq"])
    op.drop_index(op.f("ix_audit_log_episode_id"), table_name="audit_log")


def downgrade() -> None:
    op.create_index(op.f("ix_audit_log_episode_id"), "audit_log", ["episode_id"])
    op.drop_index("ix_audit_log_episode_id_seq", table_name="audit_log")
    op.drop_index("ix_task_current_by_episode", table_name="task")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("archived_at")
