"""One episode's rows, read and written in the step's transaction: the portable part.

The unit of work in :mod:`models.repository` runs for every event and every timer. It reads
the episode and its current due items in one statement each, then writes only what the step
changed: the episode row, new, moved or archived due items, cancelled and new timers,
reminders, the event as received and the audit row. The statements are in
:mod:`models.step_sql`.

:class:`EpisodeStore` does all of it with statements every database runs, one at a time.
What a database does differently (a batch in one statement, its own clock, row locks,
pipelining) is its adapter's, in :mod:`models.store_adapters`: nothing here asks which
database it is on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from engine.clinic_time import to_utc
from engine.due import current_items
from engine.episode import EpisodeState, Step, TimerRequest
from engine.errors import EpisodeNotFound, UnreadableEpisode
from models.audit import AUDIT_CHAIN, HEAD_MISSING, chain_row, head_seal
from models.audit_keys import process_sealer
from models.statements import Cursor, Rows
from models.step_sql import SUMMARY_COLUMNS, TASK_FIELDS, Statements
from models.stored import converted, state_from_rows

# The due-item statuses a coordinator is told about (our default): "upcoming" is the item's
# creation and "done" the coordinator's own act, so neither is announced.
NOTIFY_STATUSES = frozenset({"due", "overdue", "escalated", "cancelled"})


@dataclass
class Loaded:
    """An episode as read under the step's lock, with the rows its due items came from."""

    state: EpisodeState
    task_rows: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The episode row's summary columns as stored (SUMMARY_COLUMNS).
    summary: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeChanges:
    """What a batch of steps did to one episode, netted: written once at the end.

    A timer booked and cancelled within the batch is never written; cancellations apply
    to the timers stored before the batch; the episode row and its due items are written
    as they stand after the last step.
    """

    initial: Loaded
    state: EpisodeState = field(init=False)
    steps: int = 0
    booked: list[TimerRequest] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)
    cancel_all: bool = False

    def __post_init__(self) -> None:
        self.state = self.initial.state

    def absorb(self, step: Step) -> None:
        self.state = step.state
        self.steps += 1
        step.state.version = self.initial.state.version + self.steps
        if "*" in step.cancel_refs:
            self.cancel_all = True
            self.booked.clear()
        elif step.cancel_refs:
            refs = set(step.cancel_refs)
            self.cancelled |= refs
            self.booked = [t for t in self.booked if t.ref not in refs]
        self.booked.extend(step.timers)


@dataclass
class Claimed:
    """A batch's due timers, and the instant that decided they were due."""

    now: datetime
    timers: list[dict[str, Any]] = field(default_factory=list)
    # (timer id, episode id, error) of timer rows that do not parse.
    unreadable: list[tuple[int, str, Exception]] = field(default_factory=list)


class Store(Protocol):
    """What the unit of work reads and writes in a step's transaction, on any database:
    :class:`EpisodeStore` and its adapters (:mod:`models.store_adapters`)."""

    @property
    def cursor(self) -> Cursor: ...
    @property
    def sql(self) -> Statements: ...
    @property
    def pipelined(self) -> bool:
        """Whether statements go out together and are answered in one round trip."""
        ...

    def read(self, episode_id: str, for_update: bool = False) -> Loaded: ...
    def read_many(self, episode_ids: Sequence[str]) -> dict[str, Loaded | UnreadableEpisode]:
        ...
    def claim_due(
        self, now: datetime | None, limit: int, episode_id: str | None = None
    ) -> Claimed: ...
    def held_elsewhere(self, timers: Sequence[Mapping[str, Any]]) -> set[str]: ...
    def lock_pending_timers(self, episode_ids: Sequence[str]) -> None: ...
    def last_steps(self, episode_ids: Sequence[str]) -> dict[str, int]: ...
    def insert_episode(self, state: EpisodeState, now: datetime) -> None: ...
    def save_step(self, loaded: Loaded, step: Step, now: datetime) -> None: ...
    def write_tasks(
        self, state: EpisodeState, stored: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> None: ...
    def cancel_timers(self, episode_id: str, refs: list[str], now: datetime) -> None: ...
    def book_timers(self, episode_id: str, step: Step, now: datetime) -> None: ...
    def write_batch(
        self, changes: Sequence[EpisodeChanges], marks: Sequence[Mapping[str, Any]], now: datetime
    ) -> None: ...
    def write_many(self, statement: str, rows: Sequence[Mapping[str, Any]]) -> None: ...
    def record_event(self, event: Mapping[str, Any], **audit: Any) -> dict[str, Any]: ...
    def append_audit(self, **facts: Any) -> dict[str, Any]: ...
    def audit_chain(self) -> AuditChain: ...


class EpisodeStore:
    """The rows of a step's transaction: what the unit of work reads and writes."""

    pipelined = False

    def __init__(self, cursor: Cursor, sql: Statements) -> None:
        self.cursor = cursor
        self.sql = sql
        # The audit chain's head, read (and on PostgreSQL locked) with the episode.
        self._head: Mapping[str, Any] | None = None

    # Writing many rows of a kind

    def write_many(self, statement: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write ``rows`` with the named statement of :class:`Statements`, one by one (a
        backend may send them as one statement: :class:`models.store_adapters.PostgresStore`)."""
        if rows:
            self.cursor.run_many(getattr(self.sql, statement), rows)

    # Reading

    def read(self, episode_id: str, for_update: bool = False) -> Loaded:
        """The episode and its due items.

        Raises:
            EpisodeNotFound: no such episode.
            InvalidConfiguration: the stored configuration cannot be bound to the chart.
        """
        # A step reads (and on PostgreSQL locks) the audit chain's head with the episode.
        query = self.sql.read_for_step if for_update else self.sql.read_episode
        # Both sent before either is read: one round trip on PostgreSQL.
        episode = self.cursor.query(query, {"b_id": episode_id})
        task_rows = self.cursor.query(self.sql.read_tasks, {"b_id": episode_id})
        row, tasks = converted(episode_id, _first_and_all, episode, task_rows)
        if row is None:
            if for_update and self.cursor.query(self.sql.read_head, {}).first() is None:
                raise RuntimeError(HEAD_MISSING)
            raise EpisodeNotFound(episode_id)
        if for_update:
            self._head = {"last_seq": row["last_seq"], "last_hash": row["last_hash"]}
        return _loaded(row, tasks)

    def claim_timers(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` pending timers due at ``now``, in due order, locked until commit.

        On PostgreSQL timers another transaction holds are skipped, so workers share the
        backlog; SQLite has one writer at a time.
        """
        return self.claim_due(now, limit).timers

    def claim_due(
        self, now: datetime | None, limit: int, episode_id: str | None = None
    ) -> Claimed:
        """Up to ``limit`` due timers (of ``episode_id`` only, when given), in due order,
        locked until commit, skipping the episodes an open incident holds back.

        ``now`` None: the database's clock decides what is due, where it has one
        (:class:`models.store_adapters.PostgresStore`); here, the process's. A timer row that
        does not parse is returned apart, with its error.
        """
        now = to_utc(now) if now is not None else datetime.now(UTC)
        if episode_id is None:
            values: dict[str, Any] = {"now": now, "b_limit": limit}
            query = self.cursor.query(self.sql.claim_timers, values)
        else:
            values = {"now": now, "b_limit": limit, "b_episode_id": episode_id}
            query = self.cursor.query(self.sql.claim_episode_timers, values)
        return claimed_from(now, query)

    def read_many(self, episode_ids: Sequence[str]) -> dict[str, Loaded | UnreadableEpisode]:
        """Several episodes, locked in id order (so two writers never wait on each other
        in a cycle), here one by one.

        An episode whose stored record cannot be read (or is missing) maps to its
        :class:`UnreadableEpisode` instead: one damaged episode never hides the others.
        """
        ordered = sorted(set(episode_ids))
        pending = [
            (
                self.cursor.query(self.sql.read_episode, {"b_id": episode_id}),
                self.cursor.query(self.sql.read_tasks, {"b_id": episode_id}),
            )
            for episode_id in ordered
        ]
        loaded: dict[str, Loaded | UnreadableEpisode] = {}
        for episode_id, (episode, task_rows) in zip(ordered, pending, strict=True):
            try:
                row, tasks = converted(episode_id, _first_and_all, episode, task_rows)
                if row is None:
                    raise UnreadableEpisode(episode_id, "the episode row is missing")
                loaded[episode_id] = _loaded(row, tasks)
            except UnreadableEpisode as exc:
                loaded[episode_id] = exc
        return loaded

    def lock_pending_timers(self, episode_ids: Sequence[str]) -> None:
        """Lock the episodes' pending timers, before the episodes themselves: the order a
        worker takes them in (it claims timers, then locks their episodes), so that a step
        that rewrites an episode's timers and a worker never wait on each other in a
        cycle. Nothing to do where one write lock serialises every writer."""

    def last_steps(self, episode_ids: Sequence[str]) -> dict[str, int]:
        """Each episode's last audit row (its sequence number): where its record ends."""
        found = {
            episode_id: self.cursor.query(self.sql.last_step, {"b_id": episode_id}).first()
            for episode_id in dict.fromkeys(episode_ids)
        }
        return {e: int(row["seq"]) for e, row in found.items() if row and row["seq"] is not None}

    def held_elsewhere(self, timers: Sequence[Mapping[str, Any]]) -> set[str]:
        """Episodes with a pending timer due before the first of ``timers``: another
        worker holds it, and the episode's timers must apply in due order."""
        answers = {
            episode_id: self.cursor.query(
                self.sql.earlier_timer,
                {"b_episode_id": episode_id, "b_due_at": t["due_at"], "b_id": t["id"]},
            )
            for episode_id, t in first_of_each(timers).items()
        }
        return {episode_id for episode_id, rows in answers.items() if rows.first() is not None}

    # Writing

    # Writing

    def insert_episode(self, state: EpisodeState, now: datetime) -> None:
        values = {
            "id": state.id,
            "patient_ref": state.patient.ref,
            "patient": state.patient.as_json(),
            "onset": state.onset,
            "enrolled_at": state.enrolled_at,
            "clinic_timezone": state.clinic_timezone,
            "team": state.team,
            "pathway_id": state.pathway_id,
            "pathway_version": state.pathway_version,
            "status": state.status,
            "configuration": list(state.configuration),
            "history": state.history,
            "facts": state.facts,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            **_where(state),
        }
        self.cursor.run(self.sql.insert_episode, values)
        state.version = 1

    def save_step(self, loaded: Loaded, step: Step, now: datetime) -> None:
        """Write what an accepted step changed: episode row, due items, timers.

        The episode was read under a lock that lasts until commit (PostgreSQL's row lock,
        SQLite's write lock), so its version cannot have moved since.
        """
        state = step.state
        state.version = loaded.state.version + 1
        values = _episode_values(state, now)
        stored = loaded.summary
        moved = tuple(n for n in SUMMARY_COLUMNS if n not in stored or values[n] != stored[n])
        self.cursor.run(self.sql.save_episode_moving(moved), values)
        self.write_tasks(state, loaded.task_rows, now)
        self.cancel_timers(state.id, step.cancel_refs, now)
        self.book_timers(state.id, step, now)

    def write_tasks(
        self, state: EpisodeState, stored: Mapping[str, Mapping[str, Any]], now: datetime
    ) -> None:
        """Insert new due items, rewrite the ones that moved, archive the ones no longer
        current; leave the rest alone (rows never read included)."""
        inserts, moves, archived = task_changes(state, stored, now)
        self.write_many("insert_task", inserts)
        self.write_many("move_task", moves)
        self.write_many("archive_task", archived)
        self.write_many("insert_reminder", reminders_for(state, stored, now))

    def cancel_timers(self, episode_id: str, refs: list[str], now: datetime) -> None:
        """Cancel the episode's pending timers with these refs (``"*"``: all of them)."""
        if "*" in refs:
            self.cursor.run(self.sql.cancel_all_timers, {"b_episode_id": episode_id, "now": now})
            return
        self.write_many(
            "cancel_timer",
            [{"b_episode_id": episode_id, "now": now, "b_ref": ref} for ref in refs],
        )

    def book_timers(self, episode_id: str, step: Step, now: datetime) -> None:
        self.write_many(
            "insert_timer",
            [_timer_values(episode_id, request, now) for request in step.timers],
        )

    def write_batch(
        self, changes: Sequence[EpisodeChanges], marks: Sequence[Mapping[str, Any]], now: datetime
    ) -> None:
        """Write a batch of timer steps, one statement per kind of row (each run for many
        rows): fired timers, episodes, due items, cancelled and booked timers."""
        self.write_many("mark_timer", marks)
        changed = [c for c in changes if c.steps]
        self.write_many("save_episode", [_episode_values(c.state, now) for c in changed])
        inserts: list[dict[str, Any]] = []
        moves: list[dict[str, Any]] = []
        archives: list[dict[str, Any]] = []
        reminders: list[dict[str, Any]] = []
        for c in changed:
            new, moved, archived = task_changes(c.state, c.initial.task_rows, now)
            inserts += new
            moves += moved
            archives += archived
            reminders += reminders_for(c.state, c.initial.task_rows, now)
        self.write_many("insert_task", inserts)
        self.write_many("move_task", moves)
        self.write_many("archive_task", archives)
        self.write_many("insert_reminder", reminders)
        self.write_many(
            "cancel_all_timers",
            [{"b_episode_id": c.state.id, "now": now} for c in changed if c.cancel_all],
        )
        self.write_many(
            "cancel_timer",
            [
                {"b_episode_id": c.state.id, "now": now, "b_ref": ref}
                for c in changed
                if not c.cancel_all
                for ref in sorted(c.cancelled)
            ],
        )
        self.write_many(
            "insert_timer",
            [_timer_values(c.state.id, request, now) for c in changed for request in c.booked],
        )

    def record_event(self, event: Mapping[str, Any], **audit: Any) -> dict[str, Any]:
        """The event as received, accepted or refused, and its audit row (``audit`` being
        :func:`models.audit.chain_row`'s arguments): returns the audit row."""
        self.cursor.run(self.sql.insert_event, event)
        return self.append_audit(**audit)

    def append_audit(self, **facts: Any) -> dict[str, Any]:
        """The next row of the hash chain (:func:`models.audit.chain_row`'s arguments)."""
        chain = self.audit_chain()
        row = chain.append(**facts)
        chain.close()
        return row

    def audit_chain(self) -> AuditChain:
        """The chain's head, locked until commit, to append several rows to."""
        head, self._head = self._head, None
        if head is None:
            head = self.cursor.query(self.sql.read_head, {}).first()
        if head is None:
            raise RuntimeError(HEAD_MISSING)
        return AuditChain(self, head["last_seq"], head["last_hash"])


def _loaded(row: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> Loaded:
    return Loaded(
        state_from_rows(row, tasks),
        {t["key"]: t for t in tasks},
        {name: row[name] for name in SUMMARY_COLUMNS},
    )


def _first_and_all(
    episode: Rows, tasks: Rows
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    # Both fetched before either is converted: a row that does not parse must not leave
    # the other's cursor open (SQLite would then call the table locked).
    raw_episode, raw_tasks = episode.raw(), tasks.raw()
    row = episode.statement.row(raw_episode[0]) if raw_episode else None
    return row, [tasks.statement.row(raw) for raw in raw_tasks]


def claimed_from(now: datetime, query: Rows) -> Claimed:
    """The claimed timers of ``query``, each row converted on its own."""
    claimed = Claimed(now)
    for raw in query.raw():
        try:
            claimed.timers.append(query.statement.row(raw))
        except (ValueError, TypeError) as exc:
            # id and episode_id, the first two columns, need no conversion.
            claimed.unreadable.append((raw[0], raw[1], exc))
    return claimed


def first_of_each(timers: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Each episode's first timer of ``timers``."""
    first: dict[str, Mapping[str, Any]] = {}
    for timer in timers:
        first.setdefault(timer["episode_id"], timer)
    return first


def _episode_values(state: EpisodeState, now: datetime) -> dict[str, Any]:
    return {
        "b_id": state.id,
        "configuration": list(state.configuration),
        "history": {k: list(v) for k, v in state.history.items()},
        "facts": state.facts,
        "status": state.status,
        "version": state.version,
        "updated_at": now,
        **_where(state),
    }


def _where(state: EpisodeState) -> dict[str, Any]:
    """Where the episode stands and who has it, as the columns the API's list filters use."""
    return {
        "phase": state.phase,
        "management": state.management,
        "referral": state.referral,
        "red_flag": state.in_red_flag,
        "coordinator": state.coordinator,
    }


def _timer_values(episode_id: str, request: TimerRequest, now: datetime) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "kind": request.kind,
        "ref": request.ref,
        "due_at": request.due_at,
        "payload": dict(request.payload),
        "status": "pending",
        "set_at": now,
    }


def task_changes(
    state: EpisodeState, stored: Mapping[str, Mapping[str, Any]], now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Due items to insert, those to rewrite because they moved, and those to archive
    because they are no longer current (a later item of their kind closed).

    Only the items in ``state`` are looked at: the episode's archived rows were never
    read, and stay as they are. No new item can take an archived item's key: only a
    series (``periodic_review_N``) has archived items, and it numbers its items onwards.
    """
    inserts: list[dict[str, Any]] = []
    moves: list[dict[str, Any]] = []
    archived: list[dict[str, Any]] = []
    current = {item.key for item in current_items(state.tasks)}
    for key, item in state.tasks.items():
        values = {
            "rule": item.rule,
            "status": item.status,
            "due_at": item.due_at,
            "window_start": item.window_start,
            "escalate_at": item.escalate_at,
            "completed_at": item.completed_at,
            "owner": state.coordinator,
            "team": state.team,
            "severity": item.severity,
            "updated_at": now,
        }
        row = stored.get(key)
        if row is None:
            archived_at = None if key in current else now
            inserts.append(
                {**values, "episode_id": state.id, "key": key, "created_at": now,
                 "archived_at": archived_at}
            )  # fmt: skip
            continue
        if any(row[name] != values[name] for name in TASK_FIELDS):
            moves.append({**values, "b_episode_id": state.id, "b_key": key})
        if key not in current:
            archived.append({"b_episode_id": state.id, "b_key": key, "archived_at": now})
    return inserts, moves, archived


def reminders_for(
    state: EpisodeState, stored: Mapping[str, Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """A reminder for each due item whose status changed to one a coordinator is told
    about. References and the rule only: no clinical free text leaves in a reminder."""
    rows = []
    for key, item in state.tasks.items():
        before = stored.get(key)
        if item.status not in NOTIFY_STATUSES or (before and before["status"] == item.status):
            continue
        rows.append(
            {
                "idempotency_key": f"{state.id}:{key}:{item.status}:{item.due_at.isoformat()}",
                "episode_id": state.id,
                "patient_ref": state.patient.ref,
                "task_key": key,
                "rule": item.rule,
                "task_status": item.status,
                "due_at": item.due_at,
                "escalate_at": item.escalate_at,
                "owner": state.coordinator,
                "created_at": now,
            }
        )
    return rows


class AuditChain:
    """Rows appended to the audit log in one transaction; :meth:`close` writes them, all in
    one go, and moves the head. Each row, and the head, is sealed with this process's audit
    key, when it has one (``CAREPATH_AUDIT_KEY_FILE``): one HMAC each."""

    def __init__(self, store: Store, last_seq: int, last_hash: str) -> None:
        self.store = store
        self.last_seq = last_seq
        self.last_hash = last_hash
        self.rows: list[dict[str, Any]] = []
        self.sealer = process_sealer(AUDIT_CHAIN.name)

    def append(self, **facts: Any) -> dict[str, Any]:
        row = chain_row(self.last_seq, self.last_hash, **facts, sealer=self.sealer)
        self.rows.append(row)
        self.last_seq, self.last_hash = row["seq"], row["hash"]
        return row

    def head_seal(self) -> str | None:
        return head_seal(self.sealer, self.last_seq, self.last_hash)

    def close(self) -> None:
        self.store.write_many("insert_entry", self.rows)
        self.rows = []
        self.store.cursor.run(
            self.store.sql.move_head,
            {"seq": self.last_seq, "hash": self.last_hash, "head_seal": self.head_seal()},
        )
