"""Initial schema: episodes, clinical events, due timers, tasks, the audit log and its head.

Written by hand, and self-contained (no imports from ``models``), so it keeps describing
this revision whatever the models become. The audit log is made append-only by triggers.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64
APPEND_ONLY_MESSAGE = "audit_log is append-only"


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _instant() -> sa.DateTime:
    # timestamptz on PostgreSQL; naive UTC text on SQLite (models.types.UTCDateTime).
    return sa.DateTime(timezone=True)


def _one_of(column: str, *values: str) -> str:
    listed = ", ".join(f"'{v}'" for v in values)
    return f'"{column}" IN ({listed})'


def upgrade() -> None:
    op.create_table(
        "episode",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("patient_ref", sa.String(128), nullable=False),
        sa.Column("patient", _json(), nullable=False),
        sa.Column("onset", sa.Date(), nullable=False),
        sa.Column("enrolled_at", _instant(), nullable=False),
        sa.Column(
            "clinic_timezone", sa.String(64), nullable=False, server_default=sa.text("'UTC'")
        ),
        sa.Column("coordinator", sa.String(128), nullable=True),
        sa.Column("pathway_id", sa.String(64), nullable=False),
        sa.Column("pathway_version", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("configuration", _json(), nullable=False),
        sa.Column("history", _json(), nullable=False),
        sa.Column("facts", _json(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episode")),
        sa.CheckConstraint(
            _one_of("status", "active", "resolved", "closed"), name=op.f("ck_episode_status")
        ),
    )
    op.create_index(op.f("ix_episode_patient_ref"), "episode", ["patient_ref"])
    op.create_index(op.f("ix_episode_coordinator"), "episode", ["coordinator"])
    op.create_index(op.f("ix_episode_status"), "episode", ["status"])

    op.create_table(
        "clinical_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("episode_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("data", _json(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("occurred_at", _instant(), nullable=False),
        sa.Column("recorded_at", _instant(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("rules", _json(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinical_event")),
        sa.ForeignKeyConstraint(
            ["episode_id"], ["episode.id"], name=op.f("fk_clinical_event_episode_id_episode")
        ),
    )
    op.create_index(op.f("ix_clinical_event_episode_id"), "clinical_event", ["episode_id"])

    op.create_table(
        "due_timer",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("episode_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(128), nullable=True),
        sa.Column("due_at", _instant(), nullable=False),
        sa.Column("payload", _json(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("set_at", _instant(), nullable=False),
        sa.Column("fired_at", _instant(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_due_timer")),
        sa.ForeignKeyConstraint(
            ["episode_id"], ["episode.id"], name=op.f("fk_due_timer_episode_id_episode")
        ),
        sa.CheckConstraint(
            _one_of("status", "pending", "fired", "noop", "cancelled"),
            name=op.f("ck_due_timer_status"),
        ),
    )
    op.create_index(op.f("ix_due_timer_episode_id"), "due_timer", ["episode_id"])
    op.create_index(op.f("ix_due_timer_status_due_at"), "due_timer", ["status", "due_at"])

    op.create_table(
        "task",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("episode_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("window_start", _instant(), nullable=True),
        sa.Column("due_at", _instant(), nullable=False),
        sa.Column("escalate_at", _instant(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("updated_at", _instant(), nullable=False),
        sa.Column("completed_at", _instant(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
        sa.ForeignKeyConstraint(
            ["episode_id"], ["episode.id"], name=op.f("fk_task_episode_id_episode")
        ),
        sa.UniqueConstraint("episode_id", "key", name=op.f("uq_task_episode_id_key")),
        sa.CheckConstraint(
            _one_of("status", "upcoming", "due", "overdue", "escalated", "done", "cancelled"),
            name=op.f("ck_task_status"),
        ),
    )
    op.create_index(op.f("ix_task_episode_id"), "task", ["episode_id"])
    op.create_index(op.f("ix_task_owner_status_due_at"), "task", ["owner", "status", "due_at"])

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("episode_id", sa.String(36), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("occurred_at", _instant(), nullable=False),
        sa.Column("recorded_at", _instant(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("configuration_before", _json(), nullable=False),
        sa.Column("configuration_after", _json(), nullable=False),
        sa.Column("rules", _json(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("payload_digest", sa.String(64), nullable=False),
        sa.Column("pathway_id", sa.String(64), nullable=False),
        sa.Column("pathway_version", sa.String(16), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.CheckConstraint(
            _one_of("trigger", "open", "event", "timer"), name=op.f("ck_audit_log_trigger")
        ),
    )
    op.create_index(op.f("ix_audit_log_episode_id"), "audit_log", ["episode_id"])

    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_head_single_row")),
    )
    op.bulk_insert(audit_head, [{"id": 1, "last_seq": 0, "last_hash": GENESIS_HASH}])

    _create_append_only_triggers(op.get_context().dialect.name)


def _create_append_only_triggers(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION audit_log_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'
                    USING ERRCODE = 'restrict_violation',
                          HINT = 'audit rows are never changed; append a correcting row';
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    elif dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{action.lower()} BEFORE {action} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
    else:
        raise NotImplementedError(f"no append-only triggers for {dialect}")


def downgrade() -> None:
    # Dropping audit_log drops its triggers; the PostgreSQL function outlives it.
    op.drop_table("audit_head")
    op.drop_index(op.f("ix_audit_log_episode_id"), table_name="audit_log")
    op.drop_table("audit_log")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_index(op.f("ix_task_owner_status_due_at"), table_name="task")
    op.drop_index(op.f("ix_task_episode_id"), table_name="task")
    op.drop_table("task")
    op.drop_index(op.f("ix_due_timer_status_due_at"), table_name="due_timer")
    op.drop_index(op.f("ix_due_timer_episode_id"), table_name="due_timer")
    op.drop_table("due_timer")
    op.drop_index(op.f("ix_clinical_event_episode_id"), table_name="clinical_event")
    op.drop_table("clinical_event")
    op.drop_index(op.f("ix_episode_status"), table_name="episode")
    op.drop_index(op.f("ix_episode_coordinator"), table_name="episode")
    op.drop_index(op.f("ix_episode_patient_ref"), table_name="episode")
    op.drop_table("episode")
