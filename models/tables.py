"""The tables: episodes, their clinical events, due timers, tasks, the audit log and its
signed checkpoints.

The engine's state is stored as JSON beside a few columns the interfaces query on (status,
coordinator, due instants). Every change to this module needs a migration in
``migrations/versions``; ``tests/models/test_migrations.py`` fails when the two differ.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.types import PortableJSON, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EPISODE_STATUSES = ("active", "resolved", "closed")
TIMER_STATUSES = ("pending", "fired", "noop", "cancelled")
TASK_STATUSES = ("upcoming", "due", "overdue", "escalated", "done", "cancelled")
AUDIT_TRIGGERS = ("open", "event", "timer")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    # Quoted: "trigger" is a keyword in SQLite.
    listed = ", ".join(f"'{v}'" for v in values)
    return f'"{column}" IN ({listed})'


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: PortableJSON,
        list[str]: PortableJSON,
        dict[str, list[str]]: PortableJSON,
    }


class Episode(Base):
    """One patient's course through the pathway, and the engine's state for it."""

    __tablename__ = "episode"
    __table_args__ = (CheckConstraint(_one_of("status", EPISODE_STATUSES), name="status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    patient_ref: Mapped[str] = mapped_column(String(128), index=True)
    # {"age": int | None, "sex": str | None, "flags": {name: bool}}
    patient: Mapped[dict[str, Any]]
    onset: Mapped[date] = mapped_column(Date)
    enrolled_at: Mapped[datetime]
    clinic_timezone: Mapped[str] = mapped_column(
        String(64), default="UTC", server_default=text("'UTC'")
    )
    coordinator: Mapped[str | None] = mapped_column(String(128), index=True)
    pathway_id: Mapped[str] = mapped_column(String(64))
    pathway_version: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    # The statechart's active state ids, and each history pseudo-state's remembered ids.
    configuration: Mapped[list[str]]
    history: Mapped[dict[str, list[str]]]
    facts: Mapped[dict[str, Any]]
    # Where the episode stands, copied from the configuration by every write so that the
    # API's list filters are served by indexes.
    phase: Mapped[str | None] = mapped_column(String(16), index=True)
    management: Mapped[str | None] = mapped_column(String(32), index=True)
    referral: Mapped[str | None] = mapped_column(String(16), index=True)
    red_flag: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false"), index=True
    )
    # Optimistic concurrency, bumped by the unit of work (not SQLAlchemy's version_id_col:
    # the engine compares it with the version a client read before it acts).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ClinicalEventRow(Base):
    """An event as it was received, accepted or refused, with the rules that decided it."""

    __tablename__ = "clinical_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Not indexed: nothing reads events by episode (an episode's history is its audit rows).
    episode_id: Mapped[str] = mapped_column(ForeignKey("episode.id"))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    actor: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    accepted: Mapped[bool] = mapped_column(Boolean)
    rules: Mapped[list[str]]
    reason: Mapped[str | None] = mapped_column(Text)


class DueTimer(Base):
    """An instant at which the engine must act on an episode, exactly once."""

    __tablename__ = "due_timer"
    __table_args__ = (
        CheckConstraint(_one_of("status", TIMER_STATUSES), name="status"),
        # The worker's sweep: pending timers in due order.
        Index("ix_due_timer_status_due_at", "status", "due_at"),
        # One episode's pending timers: to cancel them, and to keep them in due order.
        Index("ix_due_timer_episode_id_status_due_at", "episode_id", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episode.id"))
    kind: Mapped[str] = mapped_column(String(64))
    # What the timer is for (e.g. "task:six_week_review"): the engine cancels by it.
    ref: Mapped[str | None] = mapped_column(String(128))
    due_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(
        PortableJSON, default=dict, server_default=text("'{}'")
    )
    status: Mapped[str] = mapped_column(
        String(16), default="pending", server_default=text("'pending'")
    )
    set_at: Mapped[datetime]
    fired_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)


class Task(Base):
    """A coordinator's due item: what a person must do for the episode, and by when."""

    __tablename__ = "task"
    __table_args__ = (
        # Also the index of an episode's items (its leading column).
        UniqueConstraint("episode_id", "key"),
        CheckConstraint(_one_of("status", TASK_STATUSES), name="status"),
        # The coordinator's work list: my open items, soonest first.
        Index("ix_task_owner_status_due_at", "owner", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episode.id"))
    key: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(32))
    window_start: Mapped[datetime | None]
    due_at: Mapped[datetime]
    escalate_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    # A coordinator's "seen": it holds for the status it was given in, not the next one.
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_status: Mapped[str | None] = mapped_column(String(16))


class AuditEntry(Base):
    """One step of an episode, hash-chained to the step before it (any episode's).

    Rows are never updated or deleted (database triggers refuse it); ``seq`` is set by
    :func:`models.audit.append_audit`, so the chain order is the key order.
    """

    __tablename__ = "audit_log"
    __table_args__ = (CheckConstraint(_one_of("trigger", AUDIT_TRIGGERS), name="trigger"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No foreign key: the log outlives whatever it describes.
    episode_id: Mapped[str | None] = mapped_column(String(36), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    accepted: Mapped[bool] = mapped_column(Boolean)
    configuration_before: Mapped[list[str]]
    configuration_after: Mapped[list[str]]
    rules: Mapped[list[str]]
    reason: Mapped[str | None] = mapped_column(Text)
    payload_digest: Mapped[str] = mapped_column(String(64))
    pathway_id: Mapped[str] = mapped_column(String(64))
    pathway_version: Mapped[str] = mapped_column(String(16))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # HMAC-SHA256 over ``hash`` with a key derived from the audit key (models.audit_keys),
    # set by the process that appended the row; None when it had no key.
    seal: Mapped[str | None] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's head, one row: appenders lock it, so they take turns."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))
    # HMAC over "head:SEQ:HASH" with the rows' seal key (models.audit.head_seal), set by
    # whoever moved the head; None when it had no key.
    seal: Mapped[str | None] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement that a log's row ``seq`` carried ``hash`` at ``signed_at``.

    Signed with the audit key, which is not in the database (models.checkpoints). Rows are
    never updated or deleted (database triggers refuse it). ``log`` names the chain (its
    table), so one table serves every hash-chained log.
    """

    __tablename__ = "audit_checkpoint"
    __table_args__ = (Index("ix_audit_checkpoint_log_seq", "log", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    log: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime]
    # The signing key's id (models.audit_keys.key_id) and the Ed25519 signature, in hex.
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))


REMINDER_DELIVERY_STATUSES = ("pending", "retrying", "sent")


class Reminder(Base):
    """A due item's change of status that a coordinator is told about, once.

    Written in the same transaction as the change. It carries references and the rule, never
    clinical free text: reminders leave the clinic's systems by webhook and e-mail.
    """

    __tablename__ = "reminder"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # episode, due item, status and due instant: the same change cannot be told twice.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episode.id"), index=True)
    patient_ref: Mapped[str] = mapped_column(String(128))
    task_key: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(32))
    task_status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime]
    escalate_at: Mapped[datetime | None]
    owner: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]


class ReminderDelivery(Base):
    """One reminder through one channel: retried until sent, never dropped."""

    __tablename__ = "reminder_delivery"
    __table_args__ = (
        UniqueConstraint("reminder_id", "channel"),
        CheckConstraint(_one_of("status", REMINDER_DELIVERY_STATUSES), name="status"),
        # The deliverer's sweep: what is waiting, soonest first.
        Index("ix_reminder_delivery_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reminder_id: Mapped[int] = mapped_column(ForeignKey("reminder.id"))
    channel: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


# "calendar" opens one coordinator's calendar feed and nothing else: feed URLs end up in
# calendar apps, so they carry a token of their own, revocable on its own.
TOKEN_ROLES = ("coordinator", "service", "auditor", "admin", "calendar")


class ApiToken(Base):
    """A bearer token for the HTTP API: only its SHA-256 is kept, never the token."""

    __tablename__ = "api_token"
    __table_args__ = (CheckConstraint(_one_of("role", TOKEN_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # Who acts with it: the actor on every event and audit row it makes.
    subject: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
