"""The pathway versions published to this database, with their definitions' digests.

``carepath db upgrade`` records every published version the install ships
(``models.pathway_versions``), so that a database knows which definitions its episodes and
audit rows were decided by, and refuses a definition edited after publication.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pathway_version",
        sa.Column("pathway_id", sa.String(64), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("published_at", sa.Date(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pathway_id", "version", name=op.f("pk_pathway_version")),
    )


def downgrade() -> None:
    op.drop_table("pathway_version")
