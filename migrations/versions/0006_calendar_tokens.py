"""Calendar feed tokens: a role that opens one coordinator's feed and nothing else.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _roles(*roles: str) -> str:
    return '"role" IN (' + ", ".join(f"'{r}'" for r in roles) + ")"


BEFORE = ("coordinator", "service", "auditor", "admin")


def upgrade() -> None:
    with op.batch_alter_table("api_token") as batch:
        batch.drop_constraint(op.f("ck_api_token_role"), type_="check")
        batch.create_check_constraint(op.f("ck_api_token_role"), _roles(*BEFORE, "calendar"))


def downgrade() -> None:
    op.execute("DELETE FROM api_token WHERE role = 'calendar'")
    with op.batch_alter_table("api_token") as batch:
        batch.drop_constraint(op.f("ck_api_token_role"), type_="check")
        batch.create_check_constraint(op.f("ck_api_token_role"), _roles(*BEFORE))
