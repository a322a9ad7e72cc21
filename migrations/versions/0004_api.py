"""The HTTP API: bearer tokens, and where each episode stands as indexed columns.

The API lists episodes by phase, management step, referral state and red flag; those live
in the stored configuration (JSON), so every write now copies them into columns of their
own. Existing episodes are filled in here from their configuration and history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The chart's state ids in each region, as of pathway 1.0.0.
PHASES = ("acute", "subacute", "chronic")
MANAGEMENT = (
    "conservative", "review", "imaging", "interventional", "specialist", "rehabilitation",
    "shared_care",
)  # fmt: skip
REFERRAL = ("not_indicated", "due", "overdue", "referred", "seen")
RED_FLAG = ("red_flag", "urgent", "emergency")
COLUMNS = ("phase", "management", "referral")


def _first(ids: list[str], region: tuple[str, ...]) -> str | None:
    return next((i for i in ids if i in region), None)


def _where(configuration: list[str], history: dict[str, list[str]]) -> dict[str, Any]:
    remembered = [i for values in history.values() for i in values]
    return {
        "phase": _first(configuration, PHASES),
        # Under a red flag routine care is paused: where it will resume.
        "management": _first(configuration, MANAGEMENT) or _first(remembered, MANAGEMENT),
        "referral": _first(configuration, REFERRAL) or _first(remembered, REFERRAL),
        "red_flag": any(i in RED_FLAG for i in configuration),
    }


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    with op.batch_alter_table("episode") as batch:
        batch.add_column(sa.Column("phase", sa.String(16), nullable=True))
        batch.add_column(sa.Column("management", sa.String(32), nullable=True))
        batch.add_column(sa.Column("referral", sa.String(16), nullable=True))
        batch.add_column(
            sa.Column("red_flag", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
    for name in (*COLUMNS, "red_flag"):
        op.create_index(op.f(f"ix_episode_{name}"), "episode", [name])
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, configuration, history FROM episode")).all()
    for episode_id, configuration, history in rows:
        values = _where(_json(configuration) or [], _json(history) or {})
        connection.execute(
            sa.text(
                "UPDATE episode SET phase = :phase, management = :management, "
                "referral = :referral, red_flag = :red_flag WHERE id = :id"
            ),
            {**values, "id": episode_id},
        )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "\"role\" IN ('coordinator', 'service', 'auditor', 'admin')",
            name=op.f("ck_api_token_role"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("api_token")
    for name in (*COLUMNS, "red_flag"):
        op.drop_index(op.f(f"ix_episode_{name}"), table_name="episode")
    with op.batch_alter_table("episode") as batch:
        for name in ("red_flag", *reversed(COLUMNS)):
            batch.drop_column(name)
