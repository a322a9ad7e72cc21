"""Drop the clinical_event table's index on episode_id.

Nothing reads the events as received by episode: an episode's history is read from the
audit log, which has its own index on episode_id. The index only cost a page write (SQLite)
and an index insert (PostgreSQL) on every event.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f("ix_clinical_event_episode_id"), table_name="clinical_event")


def downgrade() -> None:
    op.create_index(op.f("ix_clinical_event_episode_id"), "clinical_event", ["episode_id"])
