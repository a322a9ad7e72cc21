"""Migration steps in the audit log; an episode's events and its timeline found by its id.

Moving an episode to another pathway version is a step of its own, on record like the
others: the audit log's ``trigger`` may now be ``migration`` (CONTRACT.md section 6).

A migration and a replay re-run an episode's recorded events, so they read its events as
received, batch after batch of episodes: ``clinical_event`` gets an index on
``episode_id`` (without it, each batch scans every event of every episode).

From 1.1.0 an episode's timeline is in the order things happened (EVENTS-AT-OCCURRED), read
a page at a time: the audit log gets an index on ``(episode_id, occurred_at, seq)``.

On SQLite a CHECK constraint changes only with the table copied; the copy loses the
append-only triggers, which are made again.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_MESSAGE = "audit_log is append-only"
BEFORE = ("open", "event", "timer")
AFTER = (*BEFORE, "migration")


def _triggers_allowed(triggers: tuple[str, ...]) -> None:
    check = "\"trigger\" IN (" + ", ".join(f"'{t}'" for t in triggers) + ")"
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_audit_log_trigger"), "audit_log", type_="check")
        op.create_check_constraint("trigger", "audit_log", check)
        return
    with op.batch_alter_table("audit_log", recreate="always") as batch:
        batch.drop_constraint(op.f("ck_audit_log_trigger"), type_="check")
        batch.create_check_constraint("trigger", check)
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_log_no_{action.lower()} BEFORE {action} ON audit_log "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
        )


def upgrade() -> None:
    _triggers_allowed(AFTER)
    op.create_index(op.f("ix_clinical_event_episode_id"), "clinical_event", ["episode_id"])
    op.create_index(
        op.f("ix_audit_log_episode_id_occurred_at_seq"),
        "audit_log",
        ["episode_id", "occurred_at", "seq"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_log_episode_id_occurred_at_seq"), "audit_log")
    op.drop_index(op.f("ix_clinical_event_episode_id"), "clinical_event")
    _triggers_allowed(BEFORE)
