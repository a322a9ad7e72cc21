"""Audit integrity: a seal on every audit row, and signed checkpoints of the chain's head.

``audit_log.seal`` holds HMAC-SHA256 over the row's hash, keyed from the audit key (rows
written before this revision, or by a process without the key, have none);
``audit_head.seal`` the same over the head.
``audit_checkpoint`` holds signed statements of the head, append-only like the log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_MESSAGE = "audit_checkpoint is append-only"


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("seal", sa.String(64), nullable=True))
    op.add_column("audit_head", sa.Column("seal", sa.String(64), nullable=True))
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("log", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoint")),
    )
    op.create_index(op.f("ix_audit_checkpoint_log_seq"), "audit_checkpoint", ["log", "seq"])
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION audit_checkpoint_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'
                    USING ERRCODE = 'restrict_violation',
                          HINT = 'checkpoints are never changed; write a new one';
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE "
            "ON audit_checkpoint FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoint_append_only()"
        )
    elif dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_checkpoint_no_{action.lower()} BEFORE {action} "
                f"ON audit_checkpoint BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
    else:
        raise NotImplementedError(f"no append-only triggers for {dialect}")


def downgrade() -> None:
    # Dropping the table drops its triggers; the PostgreSQL function outlives it.
    op.drop_index(op.f("ix_audit_checkpoint_log_seq"), table_name="audit_checkpoint")
    op.drop_table("audit_checkpoint")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_checkpoint_append_only()")
    # SQLite (3.35+) drops a column in place; the log's triggers stay.
    op.drop_column("audit_head", "seal")
    op.drop_column("audit_log", "seal")
