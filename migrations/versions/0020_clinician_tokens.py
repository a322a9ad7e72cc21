"""Clinician tokens: the role that makes orders, overrides and red-flag decisions.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("coordinator", "service", "auditor", "admin", "calendar")


def _roles(*roles: str) -> str:
    return '"role" IN (' + ", ".join(f"'{r}'" for r in roles) + ")"


def upgrade() -> None:
    with op.batch_alter_table("api_token") as batch:
        batch.drop_constraint(op.f("ck_api_token_role"), type_="check")
        batch.create_check_constraint(op.f("ck_api_token_role"), _roles(*BEFORE, "clinician"))


def downgrade() -> None:
    clinicians = "SELECT id FROM api_token WHERE role = 'clinician'"
    for table in ("sign_in_link", "web_session"):
        op.execute(f"DELETE FROM {table} WHERE token_id IN ({clinicians})")
    op.execute("DELETE FROM api_token WHERE role = 'clinician'")
    with op.batch_alter_table("api_token") as batch:
        batch.drop_constraint(op.f("ck_api_token_role"), type_="check")
        batch.create_check_constraint(op.f("ck_api_token_role"), _roles(*BEFORE))
