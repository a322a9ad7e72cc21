"""What coordinators do on a due item, with who and when: contact attempts, and what came of
an item marked done.

``task_action`` rows are only added: a contact attempt's outcome (``reached``,
``no_answer``, ``left_message``, ``wrong_number``) and note, or a done item's outcome in
words and note, by whom and when, shown on the item (CONTRACT.md section 9).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = ("reached", "no_answer", "left_message", "wrong_number")


def _one_of(column: str, values: Sequence[str]) -> str:
    return f'"{column}" IN (' + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "task_action",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(200), nullable=False),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.CheckConstraint(_one_of("kind", ["contact", "done"]), name=op.f("ck_task_action_kind")),
        sa.CheckConstraint(
            f"kind <> 'contact' OR {_one_of('outcome', OUTCOMES)}",
            name=op.f("ck_task_action_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_task_action_task_id_task")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_action")),
    )
    op.create_index(op.f("ix_task_action_task_id_at"), "task_action", ["task_id", "at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_task_action_task_id_at"), table_name="task_action")
    op.drop_table("task_action")
