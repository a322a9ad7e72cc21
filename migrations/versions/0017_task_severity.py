"""Each due item keeps how pressing it is, for the coordinator's queue in urgency order.

``task.severity`` is the item's rank in ``engine.episode.SEVERITIES`` (0 emergency,
1 urgent, 2 referral, 3 review, 4 routine), set by the pathway's rule as the item is opened
(CONTRACT.md section 9). Existing items are ranked as the lumbosacral pathway ranks them
(``pathways/lumbosacral_radiculopathy/urgency.py``): a red flag's work-up by the flag's
level, the other items by their rule. An index reads a coordinator's items in that order.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As the pathway ranked them when this revision was written (a migration is history).
BY_KEY = {"ces_emergency": 0, "urgent_workup": 1}
BY_RULE = {
    "RF-CES": 0, "RF-PROG": 1, "RF-SERIOUS": 1, "REF-2W-SEVERE": 2, "REF-2W-DEFICIT": 2,
    "REF-3M": 2, "MED-OPIOID": 3, "FU-ACTIVE": 3, "FU-3M": 3,
}  # fmt: skip
ROUTINE = 4


def upgrade() -> None:
    op.add_column("task", sa.Column("severity", sa.SmallInteger(), nullable=True))
    by_key = " ".join(f"WHEN '{key}' THEN {rank}" for key, rank in BY_KEY.items())
    by_rule = " ".join(f"WHEN '{rule}' THEN {rank}" for rule, rank in BY_RULE.items())
    op.execute(
        f"UPDATE task SET severity = CASE key {by_key} ELSE "
        f"CASE rule {by_rule} ELSE {ROUTINE} END END"
    )
    with op.batch_alter_table("task") as batch:
        batch.alter_column("severity", existing_type=sa.SmallInteger(), nullable=False)
        batch.create_check_constraint("severity", "severity BETWEEN 0 AND 4")
    op.create_index(
        op.f("ix_task_owner_severity_due_at"), "task", ["owner", "severity", "due_at", "id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_task_owner_severity_due_at"), "task")
    with op.batch_alter_table("task") as batch:
        batch.drop_constraint(op.f("ck_task_severity"), type_="check")
        batch.drop_column("severity")
