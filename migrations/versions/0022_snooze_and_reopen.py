"""Snoozing and reopening a due item.

A snoozed item leaves the worklist until ``task.snoozed_until``, and only while it stays in
the status it was snoozed in (``snoozed_status``): an item that falls due, overdue or
escalated meanwhile comes back at once. ``task_action`` keeps each snooze (its reason and
until when) and each reopening of an item marked done, with who and when.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _one_of(column: str, values: Sequence[str]) -> str:
    return f'"{column}" IN (' + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.add_column("task", sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("task", sa.Column("snoozed_status", sa.String(16), nullable=True))
    with op.batch_alter_table("task_action") as batch:
        batch.add_column(sa.Column("until", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint(op.f("ck_task_action_kind"), type_="check")
        batch.create_check_constraint(
            "kind", _one_of("kind", ["contact", "done", "snooze", "reopen"])
        )


def downgrade() -> None:
    with op.batch_alter_table("task_action") as batch:
        batch.drop_constraint(op.f("ck_task_action_kind"), type_="check")
        batch.create_check_constraint("kind", _one_of("kind", ["contact", "done"]))
        batch.drop_column("until")
    op.drop_column("task", "snoozed_status")
    op.drop_column("task", "snoozed_until")
