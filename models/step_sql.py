"""The statements of an episode's step, built from the mapped tables, compiled once per dialect.

They are SQLAlchemy Core, run as :class:`~models.statements.Prepared` statements on the
driver's cursor by the store (:mod:`models.episode_store`, :mod:`models.store_adapters`).
Every parameter is a named bind, so one compiled form serves every call. PostgreSQL's
adapter has statements of its own (:class:`PostgresStatements`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Dialect,
    Integer,
    String,
    Table,
    any_,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from models.audit import AUDIT_HEAD, AUDIT_LOG, INSERT_ENTRY, MOVE_HEAD, READ_HEAD
from models.statements import BulkWrite, Prepared
from models.tables import ClinicalEventRow, DueTimer, Episode, Incident, Reminder, Task

EPISODE = cast(Table, Episode.__table__)
TASK = cast(Table, Task.__table__)
TIMER = cast(Table, DueTimer.__table__)
EVENT = cast(Table, ClinicalEventRow.__table__)
REMINDER = cast(Table, Reminder.__table__)
INCIDENT = cast(Table, Incident.__table__)

_REMINDER_COLUMNS = (
    "idempotency_key",
    "episode_id",
    "patient_ref",
    "task_key",
    "rule",
    "task_status",
    "due_at",
    "escalate_at",
    "owner",
    "created_at",
)

# The episode's indexed summary columns (the API's list filters), status first; the
# coordinator moves with a handover.
SUMMARY_COLUMNS = ("status", "phase", "management", "referral", "red_flag", "coordinator")
# What a due item's row says about it; a row is rewritten only when one of these moved.
TASK_FIELDS = (
    "rule", "status", "due_at", "window_start", "escalate_at", "completed_at", "owner", "team",
    "severity",
)  # fmt: skip


def _insert(table: Table, *names: str) -> Any:
    """An INSERT of the named columns only, so the key is left to the database."""
    return insert(table).values({name: bindparam(name) for name in names})


_EPISODE_COLUMNS = tuple(c.key for c in EPISODE.columns)
_TASK_COLUMNS = ("episode_id", "key", "created_at", "updated_at", "archived_at", *TASK_FIELDS)
_TIMER_COLUMNS = ("episode_id", "kind", "ref", "due_at", "payload", "status", "set_at")
_EVENT_COLUMNS = tuple(c.key for c in EVENT.columns if c.key != "id")
# What the engine's state is rebuilt from (models.stored.state_from_rows), and no more: each
# column read is a value converted on every step.
_STATE_COLUMNS = (
    "id", "patient_ref", "patient", "onset", "enrolled_at", "clinic_timezone", "team",
    "configuration", "history", "facts", "version", "pathway_id", "pathway_version",
    # Where the episode stands, as the API's list filters index it: read so that a step
    # rewrites only the ones it moved (see Statements.save_episode_moving).
    *SUMMARY_COLUMNS,
)  # fmt: skip
_EPISODE_STATE = [EPISODE.c[name] for name in _STATE_COLUMNS]
_TASK_STATE = [TASK.c.episode_id, TASK.c.key, *(TASK.c[name] for name in TASK_FIELDS)]
_READ_EPISODE = select(*_EPISODE_STATE).where(EPISODE.c.id == bindparam("b_id"))
# Also the view's read, with its recent steps (models.history).
READ_EPISODE = _READ_EPISODE
# A step's read: the episode with the audit chain's head, which the step appends to. One
# statement instead of two; on PostgreSQL it locks the episode's row, then the head's (the
# order of FROM), as the worker does.
_READ_FOR_STEP = _READ_EPISODE.add_columns(AUDIT_HEAD.c.last_seq, AUDIT_HEAD.c.last_hash).where(
    AUDIT_HEAD.c.id == 1
)
# An episode's current due items only (engine.due.current_items): the archived ones are
# history no rule reads, and reading them made a step's cost grow with the episode's age.
_CURRENT_TASK = TASK.c.archived_at.is_(None)
_READ_TASKS = (
    select(*_TASK_STATE)
    .where(TASK.c.episode_id == bindparam("b_id"), _CURRENT_TASK)
    .order_by(TASK.c.id)
)
_EPISODE_CHANGES = ("configuration", "history", "facts", "version", "updated_at", *SUMMARY_COLUMNS)


def _save_episode(*columns: str) -> Any:
    return (
        update(EPISODE)
        .where(EPISODE.c.id == bindparam("b_id"))
        .values({name: bindparam(name) for name in columns})
    )


_MOVE_TASK = (
    update(TASK)
    .where(TASK.c.episode_id == bindparam("b_episode_id"), TASK.c.key == bindparam("b_key"))
    .values({name: bindparam(name) for name in (*TASK_FIELDS, "updated_at")})
)
_ARCHIVE_TASK = (
    update(TASK)
    .where(TASK.c.episode_id == bindparam("b_episode_id"), TASK.c.key == bindparam("b_key"))
    .values(archived_at=bindparam("archived_at"))
)
CANCELLED_BY_ENGINE = "cancelled by the engine"
_CANCEL_ALL_TIMERS = (
    update(TIMER)
    .where(TIMER.c.episode_id == bindparam("b_episode_id"), TIMER.c.status == "pending")
    .values(status="cancelled", fired_at=bindparam("now"), outcome=CANCELLED_BY_ENGINE)
)
_CANCEL_TIMER = _CANCEL_ALL_TIMERS.where(TIMER.c.ref == bindparam("b_ref"))


def _due_timers(cutoff: Any) -> Any:
    """Pending timers due by ``cutoff``, in due order, less those of an episode with an
    open incident whose retry is not due yet; ``retrying`` flags an episode whose open
    incident is being retried now (a success resolves it).

    Both incident checks are uncorrelated subqueries, which the database runs once per
    claim (PostgreSQL's hashed subplan, SQLite's ephemeral index), not once per timer: a
    claim passes over every timer due at the same instant before its LIMIT applies.
    """
    # A delivery's incident holds back nothing but the delivery.
    open_incident = (INCIDENT.c.resolved_at.is_(None), INCIDENT.c.kind != "delivery")
    waiting = select(INCIDENT.c.episode_id).where(*open_incident, INCIDENT.c.next_retry_at > cutoff)
    retrying = TIMER.c.episode_id.in_(select(INCIDENT.c.episode_id).where(*open_incident))
    return (
        select(TIMER, retrying.label("retrying"))
        .where(
            TIMER.c.status == "pending",
            TIMER.c.due_at <= cutoff,
            TIMER.c.episode_id.not_in(waiting),
        )
        .order_by(TIMER.c.due_at, TIMER.c.id)
        .limit(bindparam("b_limit"))
    )


_DUE_TIMERS = _due_timers(bindparam("now", type_=TIMER.c.due_at.type))
# The same, one episode's only: a batch whose writes were refused is fired again one
# episode at a time to find which episode's were.
_EPISODE_DUE_TIMERS = _DUE_TIMERS.where(TIMER.c.episode_id == bindparam("b_episode_id"))
# A pending timer of the episode due before the given one: another worker holds it.
_EARLIER_TIMER = (
    select(TIMER.c.id)
    .where(
        TIMER.c.episode_id == bindparam("b_episode_id"),
        TIMER.c.status == "pending",
        (TIMER.c.due_at < bindparam("b_due_at"))
        | ((TIMER.c.due_at == bindparam("b_due_at")) & (TIMER.c.id < bindparam("b_id"))),
    )
    .limit(1)
)
_MARK_TIMER = (
    update(TIMER)
    .where(TIMER.c.id == bindparam("b_id"))
    .values({name: bindparam(name) for name in ("status", "fired_at", "outcome")})
)


def _event_with_audit() -> Any:
    """The event row and its audit row written, and the chain's head moved to the audit
    row, by one statement (PostgreSQL's data-modifying WITH). The event's values are bound
    as ``event_<column>``; the audit row's as its columns (its ``seal`` too), ``seq`` and
    ``hash`` also being the head's new values, and ``head_seal`` the head's seal.

    These are a step's last writes, so nothing that could have gone to the server earlier
    waits for them; as three statements they cost the driver about twice the work.
    """
    event = insert(EVENT).values({name: bindparam(f"event_{name}") for name in _EVENT_COLUMNS})
    entry = insert(AUDIT_LOG).values({c.key: bindparam(c.key) for c in AUDIT_LOG.columns})
    return MOVE_HEAD.add_cte(event.cte("event")).add_cte(entry.cte("entry"))


class Statements:
    """The step's statements, compiled once for one dialect: the portable forms, which
    SQLite runs as they are (its BEGIN IMMEDIATE has already serialised every writer, so
    they take no row locks)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

        def prepare(statement: Any) -> Prepared:
            return Prepared(statement, dialect)

        self.read_episode = prepare(_READ_EPISODE)
        self.read_for_step = prepare(self._for_step(_READ_FOR_STEP))
        self.read_tasks = prepare(_READ_TASKS)
        self.insert_episode = prepare(_insert(EPISODE, *_EPISODE_COLUMNS))
        self.save_episode = prepare(_save_episode(*_EPISODE_CHANGES))
        # A migration's: the episode moved to another pathway version.
        self.repin_episode = prepare(_save_episode("pathway_version"))
        self._prepare = prepare
        self._saves: dict[tuple[str, ...], Prepared] = {}
        self.insert_task = prepare(_insert(TASK, *_TASK_COLUMNS))
        self.move_task = prepare(_MOVE_TASK)
        self.archive_task = prepare(_ARCHIVE_TASK)
        self.cancel_all_timers = prepare(_CANCEL_ALL_TIMERS)
        self.cancel_timer = prepare(_CANCEL_TIMER)
        self.insert_timer = prepare(_insert(TIMER, *_TIMER_COLUMNS))
        self.claim_timers = prepare(self._claimed(_DUE_TIMERS))
        self.claim_episode_timers = prepare(self._claimed(_EPISODE_DUE_TIMERS))
        self.earlier_timer = prepare(_EARLIER_TIMER)
        # A migration's: where an episode's record ends (its last audit row).
        self.last_step = prepare(
            select(func.max(AUDIT_LOG.c.seq).label("seq")).where(
                AUDIT_LOG.c.episode_id == bindparam("b_id")
            )
        )
        self.mark_timer = prepare(_MARK_TIMER)
        self.insert_event = prepare(_insert(EVENT, *_EVENT_COLUMNS))
        # The same change written twice (a retried step) still makes one reminder.
        self.insert_reminder = prepare(
            self.insert(REMINDER)
            .values({name: bindparam(name) for name in _REMINDER_COLUMNS})
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        self.read_head = prepare(READ_HEAD)
        self.insert_entry = prepare(INSERT_ENTRY)
        self.move_head = prepare(MOVE_HEAD)

    # The forms a database changes (PostgresStatements)

    @staticmethod
    def insert(table: Table) -> Any:
        """An INSERT that can skip a row already there (``on_conflict_do_nothing``)."""
        return sqlite_insert(table)

    @staticmethod
    def _for_step(query: Any) -> Any:
        return query

    @staticmethod
    def _claimed(query: Any) -> Any:
        return query

    def save_episode_moving(self, moved: tuple[str, ...]) -> Prepared:
        """The episode's UPDATE writing, of the summary columns, only those in ``moved``.

        SQLite rewrites the index entry of every column an UPDATE sets, changed or not: a
        step that set all five summary columns dirtied five index pages that most steps
        leave as they were, about half of what it wrote.
        """
        statement = self._saves.get(moved)
        if statement is None:
            unmoved = set(SUMMARY_COLUMNS) - set(moved)
            columns = [name for name in _EPISODE_CHANGES if name not in unmoved]
            statement = self._saves[moved] = self._prepare(_save_episode(*columns))
        return statement


class BatchReads:
    """A batch's episodes, due items and held-elsewhere check, each in one statement."""

    def __init__(self, prepare: Callable[[Any], Prepared]) -> None:
        ids = bindparam("b_ids", type_=ARRAY(String))
        self.episodes = prepare(
            select(*_EPISODE_STATE)
            .where(EPISODE.c.id == any_(ids))
            .order_by(EPISODE.c.id)
            # Locked in id order, so two workers never wait on each other in a cycle.
            .with_for_update()
        )
        self.tasks = prepare(
            select(*_TASK_STATE)
            .where(TASK.c.episode_id == any_(ids), _CURRENT_TASK)
            .order_by(TASK.c.id)
        )
        self.last_steps = prepare(
            select(AUDIT_LOG.c.episode_id, func.max(AUDIT_LOG.c.seq).label("seq"))
            .where(AUDIT_LOG.c.episode_id == any_(ids))
            .group_by(AUDIT_LOG.c.episode_id)
        )
        # A migration's: the episodes' pending timers, locked before the episodes are.
        self.lock_timers = prepare(
            select(TIMER.c.id)
            .where(TIMER.c.episode_id == any_(ids), TIMER.c.status == "pending")
            .order_by(TIMER.c.id)
            .with_for_update()
        )
        # For each episode, its first claimed timer (id, due instant): is an earlier one
        # of the episode still pending, held by another worker?
        self.held = prepare(
            text(
                "SELECT DISTINCT first.episode_id FROM unnest(:b_ids, :b_due, :b_timer) "
                "AS first(episode_id, due_at, id) JOIN due_timer AS t "
                "ON t.episode_id = first.episode_id AND t.status = 'pending' "
                "AND (t.due_at < first.due_at OR (t.due_at = first.due_at AND t.id < first.id))"
            )
            .bindparams(
                bindparam("b_ids", type_=ARRAY(String)),
                bindparam("b_due", type_=ARRAY(DateTime(timezone=True))),
                bindparam("b_timer", type_=ARRAY(Integer)),
            )
            .columns(episode_id=String)
        )


class BulkWrites:
    """PostgreSQL's one-statement forms of the writes a batch repeats, by the name of the
    :class:`Statements` attribute each stands in for. Keys must be distinct within a batch
    (an UPDATE ... FROM matching one row twice would apply only one of the two)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        cancel = {"status": "'cancelled'", "outcome": f"'{CANCELLED_BY_ENGINE}'"}
        self.by_name: dict[str, tuple[BulkWrite, tuple[str, ...]]] = {
            "insert_entry": (self._insert(AUDIT_LOG, *(c.key for c in AUDIT_LOG.columns)), ()),
            "insert_task": (self._insert(TASK, *_TASK_COLUMNS), ()),
            "insert_timer": (self._insert(TIMER, *_TIMER_COLUMNS), ()),
            "insert_reminder": (
                self._insert(REMINDER, *_REMINDER_COLUMNS, conflict="idempotency_key"),
                (),
            ),
            "mark_timer": (
                self._update(TIMER, {"b_id": "id"}, ("status", "fired_at", "outcome")),
                ("b_id",),
            ),
            "save_episode": (
                self._update(EPISODE, {"b_id": "id"}, _EPISODE_CHANGES),
                ("b_id",),
            ),
            "move_task": (
                self._update(
                    TASK, {"b_episode_id": "episode_id", "b_key": "key"},
                    (*TASK_FIELDS, "updated_at"),
                ),
                ("b_episode_id", "b_key"),
            ),
            "cancel_timer": (
                self._update(
                    TIMER, {"b_episode_id": "episode_id", "b_ref": "ref"}, (),
                    fixed={**cancel, "fired_at": "v.now"}, now="fired_at", pending_only=True,
                ),
                ("b_episode_id", "b_ref"),
            ),
        }  # fmt: skip

    def get(self, name: str) -> tuple[BulkWrite, tuple[str, ...]] | None:
        """The bulk form of a statement, and the parameters that key its rows."""
        return self.by_name.get(name)

    def _array(self, table: Table, parameter: str, column: str) -> tuple[str, Any]:
        column_type = table.c[column].type
        cast_to = column_type.compile(dialect=self.dialect)
        processor = column_type.dialect_impl(self.dialect).bind_processor(self.dialect)
        # %b: sent in binary, so no element of a text array is quoted and escaped.
        return f"%({parameter})b::{cast_to}[]", (parameter, processor)

    def _insert(self, table: Table, *columns: str, conflict: str | None = None) -> BulkWrite:
        arrays = [self._array(table, name, name) for name in columns]
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"SELECT * FROM unnest({', '.join(a for a, _ in arrays)})"
        )
        if conflict:
            sql += f" ON CONFLICT ({conflict}) DO NOTHING"
        return BulkWrite(sql, [p for _, p in arrays])

    def _update(
        self,
        table: Table,
        keys: dict[str, str],
        columns: tuple[str, ...],
        fixed: dict[str, str] | None = None,
        now: str | None = None,
        pending_only: bool = False,
    ) -> BulkWrite:
        """UPDATE the rows whose key columns equal each row's ``keys`` parameters, setting
        ``columns`` (parameters of the same names) and ``fixed`` (SQL expressions)."""
        arrays = [self._array(table, p, c) for p, c in keys.items()]
        arrays += [self._array(table, name, name) for name in columns]
        if now is not None:
            arrays.append(self._array(table, "now", now))
        names = [p for _, (p, _) in arrays]
        sets = [f"{c} = v.{c}" for c in columns] + [f"{c} = {e}" for c, e in (fixed or {}).items()]
        where = [f"t.{c} = v.{p}" for p, c in keys.items()]
        if pending_only:
            where.append("t.status = 'pending'")
        sql = (
            f"UPDATE {table.name} AS t SET {', '.join(sets)} "
            f"FROM unnest({', '.join(a for a, _ in arrays)}) AS v({', '.join(names)}) "
            f"WHERE {' AND '.join(where)}"
        )
        return BulkWrite(sql, [p for _, p in arrays])


class PostgresStatements(Statements):
    """PostgreSQL's forms and further statements (:class:`models.store_adapters.PostgresStore`)."""

    @staticmethod
    def insert(table: Table) -> Any:
        return postgresql_insert(table)

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(dialect)
        # What is due is decided by the database's clock (the transaction's now(), read
        # back with the timers), not by a worker's, which may be skewed.
        self.claim_timers_by_database_clock = self._prepare(
            self._claimed(_due_timers(func.now()))
        )
        self.database_now = self._prepare(select(func.now().label("now")))
        # A batch's episodes read with one statement per table (= ANY(array)).
        self.batch_reads = BatchReads(self._prepare)
        self.event_with_audit = self._prepare(_event_with_audit())
        # A batch's rows of each kind written with one statement (unnest).
        self.bulk = BulkWrites(dialect)

    @staticmethod
    def _for_step(query: Any) -> Any:
        return query.with_for_update()  # the row lock serialises one episode's writers

    @staticmethod
    def _claimed(query: Any) -> Any:
        # Claimed rows stay locked until commit; other workers skip them.
        return query.with_for_update(skip_locked=True, of=TIMER)


@cache
def statements_for(dialect: Dialect) -> Statements:
    return PostgresStatements(dialect) if dialect.name == "postgresql" else Statements(dialect)
