"""The tables: episodes, their clinical events, due timers, tasks, the audit log and its
signed checkpoints, and the access log.

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
    SmallInteger,
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
AUDIT_TRIGGERS = ("open", "event", "timer", "migration")


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
    # The care team the episode is among (team_member): its coordinators see it.
    team: Mapped[str | None] = mapped_column(String(128), index=True)
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
    # Indexed for a migration's and a replay's reads: an episode's events, batch by batch.
    episode_id: Mapped[str] = mapped_column(ForeignKey("episode.id"), index=True)
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
        # ... and in urgency order: the most severe first, then the nearest deadline.
        Index("ix_task_owner_severity_due_at", "owner", "severity", "due_at", "id"),
        # A team's items in the same order, its unassigned queue (owner NULL) first of all.
        Index("ix_task_team_owner_severity_due_at", "team", "owner", "severity", "due_at", "id"),
        CheckConstraint("severity BETWEEN 0 AND 4", name="severity"),
        # A step's read: the episode's current items (not archived) and no others.
        Index(
            "ix_task_current_by_episode",
            "episode_id",
            sqlite_where=text("archived_at IS NULL"),
            postgresql_where=text("archived_at IS NULL"),
        ),
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
    # The episode's care team, copied like the owner so that a team's queue reads an index.
    team: Mapped[str | None] = mapped_column(String(128))
    # How pressing the item is: its rank in engine.episode.SEVERITIES, 0 (an emergency)
    # first; the coordinator's queue reads an index in this order.
    severity: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    # A coordinator's "seen": it holds for the status it was given in, not the next one.
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_status: Mapped[str | None] = mapped_column(String(16))
    # Snoozed: off the worklist until then, while it stays in the status it was snoozed in.
    snoozed_until: Mapped[datetime | None]
    snoozed_status: Mapped[str | None] = mapped_column(String(16))
    # When a closed item left the episode's current items (engine.due.current_items): a
    # later item of its kind closed. Steps and the episode view read current items only;
    # archived ones stay, for GET /episodes/{id}/due and the audit.
    archived_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One step of an episode, hash-chained to the step before it (any episode's).

    Rows are never updated or deleted (database triggers refuse it); ``seq`` is set by
    :func:`models.audit.append_audit`, so the chain order is the key order.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint(_one_of("trigger", AUDIT_TRIGGERS), name="trigger"),
        # An episode's rows in chain order: its timeline, newest first, a page at a time.
        Index("ix_audit_log_episode_id_seq", "episode_id", "seq"),
        # From 1.1.0 an episode's timeline is in the order things happened, a page at a time.
        Index("ix_audit_log_episode_id_occurred_at_seq", "episode_id", "occurred_at", "seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No foreign key: the log outlives whatever it describes.
    episode_id: Mapped[str | None] = mapped_column(String(36))
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


INCIDENT_KINDS = ("timer", "delivery", "episode")


class Incident(Base):
    """A step that could not be done for one episode: a timer whose step failed, an
    episode whose stored record cannot be read, or a delivery that keeps failing.

    While an incident on an episode's timers is open, the episode's timers wait until
    ``next_retry_at`` (the other episodes' go on); a retry that succeeds resolves it.
    ``error`` is the first line of the error, never stored values beyond ids.
    """

    __tablename__ = "incident"
    __table_args__ = (
        CheckConstraint(_one_of("kind", INCIDENT_KINDS), name="kind"),
        # The claim's check, "has this episode an open incident?", and the listing.
        Index("ix_incident_episode_id_resolved_at", "episode_id", "resolved_at"),
        Index("ix_incident_resolved_at_id", "resolved_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    # No foreign keys: an incident may describe rows that are gone or damaged.
    episode_id: Mapped[str] = mapped_column(String(36))
    timer_id: Mapped[int | None] = mapped_column(Integer)
    delivery_id: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    next_retry_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    # How it ended: "retried" (the step then succeeded), "by hand", or why it lapsed.
    resolution: Mapped[str | None] = mapped_column(Text)


ACCESS_OUTCOMES = ("answered", "forbidden", "not_found")


class AccessLogEntry(Base):
    """One read of episode data: who, in which role, through which route, which episodes,
    with what outcome, and when. Hash-chained to the read before it, like the audit log.

    Rows are never updated or deleted (database triggers refuse it); ``seq`` is set by
    :func:`models.access_log.append_reads` under the ``access_head`` lock.
    """

    __tablename__ = "access_log"
    __table_args__ = (
        CheckConstraint(_one_of("outcome", ACCESS_OUTCOMES), name="outcome"),
        # An auditor's questions: what did this person read, and what was read when.
        Index("ix_access_log_actor_seq", "actor", "seq"),
        Index("ix_access_log_recorded_at", "recorded_at"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    recorded_at: Mapped[datetime]
    # The token's subject, or cli:<user> for the command line.
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    # The purpose of the read: the route template, never the path (no ids, no tokens).
    route: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    # The episodes the answer showed; null when it covered more than can be listed (an
    # export), and then ``query`` says what it covered.
    episode_ids: Mapped[list[str] | None] = mapped_column(PortableJSON)
    episode_count: Mapped[int | None] = mapped_column(Integer)
    # The request's query string, its ``token`` removed.
    query: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AccessLogEpisode(Base):
    """Which episodes each access-log row names, one row per episode, so that "who read this
    patient's episode" is an index lookup. Derived from ``access_log.episode_ids`` (which
    the hash covers): verifying the chain checks that the two agree. A row that covered
    more than it could list is indexed under ``*``."""

    __tablename__ = "access_log_episode"
    __table_args__ = (Index("ix_access_log_episode_episode_id_seq", "episode_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    episode_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class AccessHead(Base):
    """The access log's head, one row: each batch of appends locks it once."""

    __tablename__ = "access_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


# "calendar" opens one coordinator's calendar feed and nothing else: feed URLs end up in
# calendar apps, so they carry a token of their own, revocable on its own.
TOKEN_ROLES = ("coordinator", "service", "auditor", "admin", "calendar", "clinician")


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


class WebSession(Base):
    """A coordinator signed in to the page: the browser's cookie names it, the API token
    it was opened with stays on the server.

    Only the SHA-256 of the session id is kept (the id is 256 random bits, like a token).
    A session ends at sign-out, when its token is revoked, ``idle`` after ``last_seen_at``,
    or at ``expires_at`` however busy it is.
    """

    __tablename__ = "web_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_token.id"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


CONTACT_OUTCOMES = ("reached", "no_answer", "left_message", "wrong_number")
TASK_ACTIONS = ("contact", "done", "snooze", "reopen")


class TaskAction(Base):
    """What a coordinator did on a due item, with who and when: a contact attempt (``kind``
    ``contact``: one of :data:`CONTACT_OUTCOMES` and a note), the item marked done
    (``done``: what came of it, in words, and a note), snoozed (``snooze``: the reason, and
    ``until``) or reopened (``reopen``: why). Rows are only added."""

    __tablename__ = "task_action"
    __table_args__ = (
        CheckConstraint(_one_of("kind", TASK_ACTIONS), name="kind"),
        CheckConstraint(f"kind <> 'contact' OR {_one_of('outcome', CONTACT_OUTCOMES)}",
                        name="outcome"),  # fmt: skip
        # An item's actions, the latest first.
        Index("ix_task_action_task_id_at", "task_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id"))
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(String(1000))
    until: Mapped[datetime | None]


class TeamMember(Base):
    """A coordinator in a care team (``carepath team add``), with the address their mail
    goes to. A coordinator may be in several teams."""

    __tablename__ = "team_member"

    team: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Indexed for "which teams is this coordinator in", asked on every coordinator's read.
    coordinator: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    added_at: Mapped[datetime]


class Cover(Base):
    """One coordinator covering another's list (``carepath cover``) until the end of a day in
    the clinic's time zone, the instant ``ends_at`` keeps. Rows are kept when a cover ends
    (``ended_at``): who covered whom, when, stays on record."""

    __tablename__ = "cover"
    __table_args__ = (Index("ix_cover_by_ends_at", "by", "ends_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    coordinator: Mapped[str] = mapped_column(String(128))
    by: Mapped[str] = mapped_column(String(128))
    ends_at: Mapped[datetime]
    set_by: Mapped[str] = mapped_column(String(128))
    set_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class SignInLink(Base):
    """A one-time link that signs a person in with a token, so nobody pastes a secret.

    Only the SHA-256 of the link's code is kept. A link opens one session, once
    (``used_at``), before ``expires_at``, and only while its token is live.
    """

    __tablename__ = "sign_in_link"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_token.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    """A write's ``Idempotency-Key`` and the answer it was given (CONTRACT.md section 8).

    Written in the write's own transaction, so the key and what it did commit together.
    Scoped by caller (the token's subject) and route, so two callers' keys never meet; the
    digest of the request tells a retry from the same key reused for something else.
    Kept at least 24 hours (``models.idempotency``).
    """

    __tablename__ = "idempotency_key"
    __table_args__ = (Index("ix_idempotency_key_created_at", "created_at"),)

    caller: Mapped[str] = mapped_column(String(128), primary_key=True)
    # The route template with its method: "POST /episodes/{episode_id}/events".
    route: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    # SHA-256 of the method, route, path parameters and canonical body.
    request_digest: Mapped[str] = mapped_column(String(64))
    # The answer, set before the write commits (so a committed key always has one; NULL
    # marks the key this transaction has just taken): status, the body's JSON text as it
    # was sent, and the headers that matter on a replay (Content-Type, ETag, Location).
    status: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)
    created_at: Mapped[datetime]


class PathwayVersionRow(Base):
    """A pathway version published to this database: the digest its definition file had
    (``pathways``). Written once per version by ``carepath db upgrade``; a definition whose
    digest no longer matches is refused (models.pathway_versions)."""

    __tablename__ = "pathway_version"

    pathway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(16), primary_key=True)
    # "sha256:" and the definition file's SHA-256 in hex.
    digest: Mapped[str] = mapped_column(String(71))
    published_at: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime]
