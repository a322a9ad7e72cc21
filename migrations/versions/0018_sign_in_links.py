"""One-time sign-in links: a person signs in to the coordinator page by a link, once.

``carepath token create --role coordinator --sign-in-link`` makes one; only the SHA-256 of
its code is kept, with its token, when it was made, when it expires and when it was used.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_link",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"], ["api_token.id"], name=op.f("fk_sign_in_link_token_id_api_token")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_link")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_sign_in_link_code_hash")),
    )
    op.create_index(op.f("ix_sign_in_link_token_id"), "sign_in_link", ["token_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sign_in_link_token_id"), table_name="sign_in_link")
    op.drop_table("sign_in_link")
