"""`carepath pathway migrate`: active episodes moved to another pathway version.

Each episode is planned from a read-only snapshot of its record (:mod:`models.replay_history`):
its recorded inputs are taken again under the target version (:func:`engine.migration.rerun`)
and what that changes is listed (:func:`engine.migration.changes`). A dry run stops there and
writes nothing. Applying writes a batch of planned episodes in one transaction, each under
its lock (its pending timers first, then its row: the worker's order) and only if its record
has not grown since its snapshot (its last audit row is still the one planned from): its
row, due items (an open one the target has no such item for cancelled, its coordinator
told), reminders, timers (all pending ones replaced by the re-run's) and one audit row of
trigger ``migration``. An episode whose record grew meanwhile (a worker fired its timer, an
event came, accepted or refused) is planned again from a fresh snapshot, and so is a batch
that lost a deadlock.

What is left on its version, with the reason: an episode whose record does not hold under
the target version (:attr:`engine.migration.Rerun.unsafe`), whose record cannot be read
back, or whose write the database refuses. An episode that has ended is not migrated
(our default: nothing more happens to it, so its record stays as it was decided).

Re-running is safe: only episodes not yet on the target version are candidates, so a
migration stopped part way (even by ``kill -9``; each batch commits whole or not at all)
is finished by running it again, and a finished one changes nothing. Memory stays flat: the
candidates are read a batch at a time, in id order, and each episode's plan is handed to
the caller and dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, func, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

import pathways
from engine.clinic_time import to_utc
from engine.decision import TASK_DONE, TASK_REOPENED
from engine.episode import OPEN_TASK_STATUSES, EpisodeState, TaskItem, TimerRequest
from engine.errors import CarepathError, EpisodeNotFound, UnreadableEpisode
from engine.migration import (
    Changes,
    RecordedStep,
    Rerun,
    changes,
    decide_migration,
    rerun,
    timer_key,
)
from engine.settings import PathwayDefaults
from models.db import read_only
from models.pathway_versions import check_recorded, recorded_digests
from models.replay_history import (
    EpisodeHistory,
    NotReplayable,
    event_of,
    opening_of,
    read_histories,
    task_key_of,
    timer_of,
)
from models.step_sql import TASK_FIELDS
from models.store import (
    EpisodeChanges,
    Loaded,
    Store,
    reminders_for,
    run_step,
    transaction,
)
from models.tables import DueTimer, Episode
from pathways import opening_version

EPISODE = cast(Table, Episode.__table__)
TIMER = cast(Table, DueTimer.__table__)
BATCH = 500  # episodes planned from one snapshot and written in one transaction
ATTEMPTS = 5  # snapshots an episode that keeps moving is planned from before it is left
# PostgreSQL's deadlock and serialization failures: the batch lost a race, and is tried again.
RETRIED = ("40P01", "40001")


@dataclass
class Planned:
    """One episode's migration, planned: what it would change, or why it is left."""

    episode_id: str
    source: str
    target: str
    changes: Changes | None = None
    left: str | None = None  # why the episode stays on its version
    applied: bool = False
    before: EpisodeState | None = field(default=None, repr=False)
    rerun: Rerun | None = field(default=None, repr=False)
    # Where the planned-from record ends: its last audit row and when it was recorded.
    last_seq: int | None = field(default=None, repr=False)
    last_at: datetime | None = field(default=None, repr=False)

    @property
    def outcome(self) -> str:
        if self.left is not None:
            return "left"
        return "migrated" if self.applied else "would migrate"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "episode": self.episode_id,
            "from": self.source,
            "to": self.target,
            "outcome": self.outcome,
        }
        if self.left is not None:
            out["reason"] = self.left
        elif self.changes is not None:
            out["changes"] = self.changes.as_json()
        return out


@dataclass
class Summary:
    target: str
    dry_run: bool
    candidates: int = 0
    migrated: int = 0  # or, in a dry run, would be
    left: int = 0
    changed: int = 0  # of those migrated, the ones with more than their version changed

    def as_json(self) -> dict[str, Any]:
        return {
            "to": self.target,
            "dry_run": self.dry_run,
            "candidates": self.candidates,
            "would_migrate" if self.dry_run else "migrated": self.migrated,
            "left": self.left,
            "changed": self.changed,
        }


def check_target(pathway_id: str, target: str) -> None:
    """The version episodes may be migrated to: one they may open on (published, or a
    draft where drafts are allowed).

    Raises:
        ValueError: it is not (the message says why and lists the published versions).
    """
    opening_version(target, pathway_id)


def candidates_query(
    pathway_id: str, target: str, source: str | None, ids: Sequence[str] | None
) -> Any:
    query = select(EPISODE.c.id).where(
        EPISODE.c.pathway_id == pathway_id,
        EPISODE.c.pathway_version != target,
        EPISODE.c.status == "active",
    )
    if source is not None:
        query = query.where(EPISODE.c.pathway_version == source)
    if ids is not None:
        query = query.where(EPISODE.c.id.in_(list(ids)))
    return query


def count_candidates(
    engine: Engine, pathway_id: str, target: str, source: str | None = None,
    ids: Sequence[str] | None = None,
) -> int:  # fmt: skip
    """How many episodes a migration would look at (its progress bar's length)."""
    counted = select(func.count()).select_from(
        candidates_query(pathway_id, target, source, ids).subquery()
    )
    with read_only(engine) as connection:
        return int(connection.scalar(counted) or 0)


def not_candidates(
    engine: Engine, pathway_id: str, target: str, source: str | None, ids: Sequence[str]
) -> list[Planned]:
    """Of the episodes named, those a migration leaves, each with the reason.

    Raises:
        EpisodeNotFound: one of ``ids`` has no episode.
    """
    query = select(EPISODE.c.id, EPISODE.c.pathway_id, EPISODE.c.pathway_version,
                   EPISODE.c.status).where(EPISODE.c.id.in_(list(ids)))  # fmt: skip
    with read_only(engine) as connection:
        found = {row.id: row for row in connection.execute(query)}
    left = []
    for episode_id in dict.fromkeys(ids):
        row = found.get(episode_id)
        if row is None:
            raise EpisodeNotFound(episode_id)
        reason = (
            f"the episode runs on another pathway, {row.pathway_id}"
            if row.pathway_id != pathway_id
            else no_candidate(row.pathway_version, row.status, target, source)
        )
        if reason is not None:
            left.append(Planned(episode_id, row.pathway_version, target, left=reason))
    return left


@dataclass(frozen=True)
class Job:
    """What a migration does to each batch: the same in every process that takes one."""

    target: str
    now: datetime
    actor: str
    defaults: PathwayDefaults
    dry_run: bool
    source: str | None = None


def no_candidate(version: str, status: str, target: str, source: str | None) -> str | None:
    """Why an episode on ``version`` with ``status`` is no candidate, or None."""
    if version == target:
        return f"the episode is already on {target}"
    if source is not None and version != source:
        return f"the episode is on {version}, not {source}"
    if status != "active":
        return f"the episode has ended ({status}): its record stays as decided"
    return None


def migrate(
    engine: Engine,
    target: str,
    now: datetime,
    *,
    pathway_id: str = pathways.LUMBOSACRAL_RADICULOPATHY,
    source: str | None = None,
    ids: Sequence[str] | None = None,
    dry_run: bool = False,
    actor: str = "system",
    defaults: PathwayDefaults | None = None,
    on_episode: Callable[[Planned], None] | None = None,
    batch: int = BATCH,
    jobs: int = 1,
) -> Summary:
    """Migrate (or, with ``dry_run``, plan) every active episode of ``pathway_id`` not on
    ``target`` (only those on ``source`` / of ``ids``, when given); ``on_episode`` is
    handed each episode's plan as it is done, in id order. ``jobs`` above 1 plans and
    writes batches in that many processes (:mod:`models.migration_jobs`).

    Raises:
        ValueError: ``target`` is not a version episodes may move to.
        DefinitionError: its definition was edited after publication.
        EpisodeNotFound: one of ``ids`` has no episode.
    """
    check_target(pathway_id, target)
    check_recorded(pathways.definition(pathway_id, target), recorded_digests(engine))
    job = Job(target, to_utc(now), actor, defaults or PathwayDefaults.from_env(), dry_run, source)
    summary = Summary(target, dry_run)

    def report(plan: Planned) -> None:
        summary.candidates += 1
        if plan.left is not None:
            summary.left += 1
        else:
            summary.migrated += 1
            summary.changed += bool(plan.changes is not None and plan.changes.any)
        if on_episode is not None:
            on_episode(plan)

    if ids is not None:
        for plan in not_candidates(engine, pathway_id, target, source, ids):
            report(plan)
    chunks = _candidates(engine, candidates_query(pathway_id, target, source, ids), batch)
    if jobs > 1:
        from models.migration_jobs import in_processes

        done: Iterator[list[Planned]] = in_processes(engine, chunks, job, jobs)
    else:
        done = (migrate_batch(engine, chunk, job) for chunk in chunks)
    for plans in done:
        for plan in plans:
            report(plan)
    return summary


def migrate_batch(engine: Engine, ids: Sequence[str], job: Job) -> list[Planned]:
    """One batch of episodes planned and, unless a dry run, written; an episode that moved
    since its snapshot is planned again, up to :data:`ATTEMPTS` times. The plans come
    back without the states they were made from."""
    finished: list[Planned] = []
    todo = list(ids)
    for attempt in range(ATTEMPTS):
        histories = read_histories(engine, todo, whole_steps=False)
        plans = [plan_one(h, job.target, job.defaults, job.source) for h in histories]
        moved = [] if job.dry_run else _apply(engine, plans, job.actor, job.now, job.defaults)
        for plan in plans:
            if plan.episode_id in moved and attempt < ATTEMPTS - 1:
                continue
            if plan.episode_id in moved:
                plan.left = "the episode kept changing while it was being migrated"
            plan.before = plan.rerun = None
            finished.append(plan)
        todo = moved
        if not todo:
            break
    return finished


def _candidates(engine: Engine, query: Any, size: int) -> Iterator[list[str]]:
    """The candidates' ids, a batch at a time, in id order (each batch a fresh read: those
    migrated by then no longer match)."""
    after = ""
    while True:
        with read_only(engine) as connection:
            page = list(
                connection.scalars(query.where(EPISODE.c.id > after).order_by(EPISODE.c.id)
                                   .limit(size))  # fmt: skip
            )
        if not page:
            return
        yield page
        after = page[-1]


def plan_one(
    history: EpisodeHistory, target: str, defaults: PathwayDefaults, source: str | None = None
) -> Planned:
    """What moving ``history``'s episode to ``target`` would change (from ``source`` only,
    when given). Its snapshot may be later than the read that made it a candidate: what it
    is then decides."""
    row = history.episode
    plan = Planned(history.episode_id, str(row["pathway_version"]), target)
    plan.left = no_candidate(row["pathway_version"], row["status"], target, source)
    if plan.left is not None:
        return plan
    try:
        before = history.state()
        result = rerun_record(history, target, defaults)
    except (NotReplayable, CarepathError) as exc:
        plan.left = f"its record cannot be taken again: {exc}"
        return plan
    except Exception as exc:  # noqa: BLE001 - one episode's failure is its own
        plan.left = f"its record cannot be taken again: {type(exc).__name__}: {exc}"
        return plan
    if result.unsafe is not None:
        plan.left = f"cannot be migrated safely: {result.unsafe}"
        return plan
    reopened = _reopened(history, before, result.state)
    if reopened:
        plan.left = (
            "cannot be migrated safely: due items closed and archived would open again "
            f"({', '.join(reopened)})"
        )
        return plan
    pending = [_request(timer) for timer in history.pending]
    plan.changes = changes(pathways.code(before.pathway_id), before, pending, result, defaults)
    plan.before, plan.rerun = before, result
    last = history.steps[-1]
    plan.last_seq, plan.last_at = int(last["seq"]), last["recorded_at"]
    return plan


def rerun_record(
    history: EpisodeHistory, target: str, defaults: PathwayDefaults, steps: int | None = None
) -> Rerun:
    """The episode ``history``'s first ``steps`` audit rows (all, when None) make under
    ``target``, as of the last of them: a timer due later, even if due by now, is left
    pending for the worker, which fires it on record as it would have on the old version.

    Raises:
        NotReplayable: a step's input cannot be rebuilt from what is stored.
    """
    rows = history.steps if steps is None else history.steps[:steps]
    if not rows or rows[0]["trigger"] != "open":
        raise NotReplayable("the episode's first audit row is not its opening")
    opened = rows[0]
    opening = opening_of(history, opened)
    events = iter(history.events)
    recorded: list[RecordedStep] = []
    for row in rows[1:]:
        trigger, type_ = row["trigger"], row["type"]
        common = {"seq": row["seq"], "at": row["recorded_at"], "type": type_,
                  "accepted": row["accepted"], "actor": row["actor"]}  # fmt: skip
        if trigger == "migration":
            continue  # the version moved; the inputs are the same
        if trigger == "timer":
            timer = timer_of(history, row)
            key = timer_key(timer["kind"], timer["ref"], timer["due_at"])
            recorded.append(RecordedStep(**common, timer=key))
        elif type_ in (TASK_DONE, TASK_REOPENED):
            recorded.append(RecordedStep(**common, task=task_key_of(history, row)))
        elif trigger == "event":
            stored = next(events, None)
            if stored is None:
                raise NotReplayable("clinical_event holds no further event of the episode")
            recorded.append(RecordedStep(**common, event=event_of(stored, row)))
        else:
            raise NotReplayable(f"a row of trigger {trigger!r} is not an input")
    # The record ends at its last input: a migration after it takes no time of its own.
    end = next(r for r in reversed(rows) if r["trigger"] != "migration")["recorded_at"]
    code = pathways.code(opened["pathway_id"])
    return rerun(code, opening, history.episode_id, opened["recorded_at"], opened["actor"],
                 recorded, end, target, defaults)  # fmt: skip


def take_again(
    engine: Engine,
    history: EpisodeHistory,
    steps: int,
    target: str,
    at: datetime,
    actor: str,
    defaults: PathwayDefaults,
) -> None:
    """A recorded migration taken again, as a replay does: the episode in ``engine`` (as
    its first ``steps`` audit rows left it) moved to ``target`` at ``at``.

    Raises:
        NotReplayable: the record before it cannot be rebuilt, or no longer holds on
            ``target``.
    """
    result = rerun_record(history, target, defaults, steps)
    if result.unsafe is not None:
        raise NotReplayable(f"the migration would now be refused: {result.unsafe}")
    episode_id = history.episode_id

    def stored(store: Store) -> tuple[EpisodeState, int | None]:
        return store.read(episode_id).state, store.last_steps([episode_id]).get(episode_id)

    before, last_seq = run_step(engine, stored, read_only=True)
    plan = Planned(episode_id, before.pathway_version, target, before=before, rerun=result,
                   last_seq=last_seq, last_at=history.steps[steps - 1]["recorded_at"])  # fmt: skip
    _write(engine, [plan], actor, at, defaults)


def _reopened(history: EpisodeHistory, before: EpisodeState, after: EpisodeState) -> list[str]:
    """Due items the migration would give keys the episode's archived items hold (a series
    renumbered): their rows cannot be made again."""
    archived = {t["key"] for t in history.tasks if t["archived_at"] is not None}
    return sorted(k for k in after.tasks if k in archived and k not in before.tasks)


def _request(timer: Any) -> TimerRequest:
    return TimerRequest(timer["kind"], timer["due_at"], timer["ref"], dict(timer["payload"] or {}))


# ------------------------------------------------------------------------------------------
# Applying


def _apply(
    engine: Engine, plans: Sequence[Planned], actor: str, now: datetime,
    defaults: PathwayDefaults,
) -> list[str]:  # fmt: skip
    """Write the batch's planned migrations; returns the episodes that moved since their
    snapshot (to be planned again). Should the database refuse the batch's rows, each
    episode is written on its own, and one whose rows it refuses is left with the error;
    any other database error (an outage) stops the migration, which a re-run resumes."""
    ready = [p for p in plans if p.left is None]
    if not ready:
        return []
    try:
        return _write(engine, ready, actor, now, defaults)
    except (IntegrityError, DataError):
        pass
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) not in RETRIED:
            raise
        return [p.episode_id for p in ready]  # a deadlock: planned again, written later
    moved: list[str] = []
    for plan in ready:
        try:
            moved += _write(engine, [plan], actor, now, defaults)
        except (IntegrityError, DataError) as exc:
            plan.left = f"the database refused the write: {exc.orig or exc}"
    return moved


def _write(
    engine: Engine, plans: Sequence[Planned], actor: str, now: datetime,
    defaults: PathwayDefaults,
) -> list[str]:  # fmt: skip
    ids = [p.episode_id for p in plans]
    moved: list[str] = []
    with transaction(engine) as store:
        store.lock_pending_timers(ids)
        loaded = store.read_many(ids)
        ends = store.last_steps(ids)
        written: list[EpisodeChanges] = []
        repinned: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        reminders: list[dict[str, Any]] = []
        audit: list[dict[str, Any]] = []
        for plan in plans:
            one = loaded[plan.episode_id]
            assert plan.before is not None
            assert plan.rerun is not None
            if isinstance(one, UnreadableEpisode):
                plan.left = f"its stored record cannot be read: {one}"
                continue
            # Any step since the snapshot (a refusal, a no-op timer too) is a new record.
            if _moved(one.state, plan.before) or ends.get(plan.episode_id) != plan.last_seq:
                moved.append(plan.episode_id)
                continue
            # Never dated before the record it follows, however long the run.
            at = max(now, plan.last_at) if plan.last_at is not None else now
            code = pathways.code(one.state.pathway_id)
            decision = decide_migration(code, one.state, plan.rerun, actor, at, defaults)
            change = EpisodeChanges(one)
            change.absorb(decision.step)
            written.append(change)
            repinned.append({"b_id": plan.episode_id, "pathway_version": plan.target})
            cancelled = _dropped(one, plan.rerun.state, at)
            dropped += cancelled
            reminders += _told(one, plan.rerun.state, cancelled, at)
            audit.append(decision.audit)
        store.write_batch(written, [], now)
        store.write_many("move_task", dropped)
        store.write_many("insert_reminder", reminders)
        store.write_many("repin_episode", repinned)
        if audit:
            chain = store.audit_chain()
            for facts in audit:
                chain.append(**facts)
            chain.close()
    for plan in plans:
        plan.applied = plan.left is None and plan.episode_id not in moved
    return moved


def _told(
    loaded: Loaded, after: EpisodeState, cancelled: list[dict[str, Any]], at: datetime
) -> list[dict[str, Any]]:
    """The coordinator's reminders of the dropped items' cancellation, as a step's are."""
    items = {
        row["b_key"]: TaskItem(row["b_key"], row["rule"], row["due_at"], row["window_start"],
                               row["escalate_at"], "cancelled",
                               severity=row["severity"])  # fmt: skip
        for row in cancelled
    }
    return reminders_for(replace(after, tasks=items), loaded.task_rows, at) if items else []


def _dropped(loaded: Loaded, after: EpisodeState, at: datetime) -> list[dict[str, Any]]:
    """The episode's open due items the target version has no such item for, cancelled (the
    re-run's state holds only its own items, so nothing else would close them). They stay
    current, as the last closed item of their kind: a later item of the kind takes the key
    over, as it would any closed one's."""
    rows = []
    for key, row in loaded.task_rows.items():
        if key in after.tasks or row["status"] not in OPEN_TASK_STATUSES:
            continue
        values = {name: row[name] for name in TASK_FIELDS}
        rows.append({**values, "status": "cancelled", "updated_at": at,
                     "b_episode_id": after.id, "b_key": key})  # fmt: skip
    return rows


def _moved(stored: EpisodeState, planned: EpisodeState) -> bool:
    return (stored.version, stored.pathway_version) != (planned.version, planned.pathway_version)
