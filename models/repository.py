"""The unit of work: load an episode, ask the engine for the step's decision, write it, commit.

What a step means — the new state, its timers, the audit row's facts, the view — is the
engine's :class:`engine.decision.Decision`; this module loads, writes and commits it.

One transaction per step: the episode row, its tasks, the timers it sets or cancels, the
event as received and the audit row are written together or not at all. Timers fire the same
way, one transaction per timer.

A write may carry an idempotency key (:class:`models.idempotency.KeyedWrite`): it is taken
and answered in the step's own transaction, so a retry is answered from the first request
and never applied twice. A step whose pooled connection turns out dead before anything was
committed is run again on a fresh one (:func:`models.store.run_step`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

import pathways
from engine.clinic_time import to_utc
from engine.decision import (
    Decision,
    decide_event,
    decide_opening,
    decide_task_done,
    decide_task_reopened,
    decide_timer,
)
from engine.episode import EpisodeState, Step, iso
from engine.errors import InvalidConfiguration, StaleEpisode, UnreadableEpisode
from engine.events import ClinicalEvent, Opening, parse_event
from engine.settings import PathwayDefaults
from engine.view import episode_view
from models.history import TIMELINE_STEPS, read_with_timeline
from models.idempotency import KeyedWrite, answered, keyed_read
from models.incidents import BatchIncidents, Change, RetryBackoff, log_changes
from models.store import EpisodeChanges, Store, run_step, transaction
from models.teams import with_care_team


def timeline_entry(
    step: Step, at: datetime, trigger: str, type_: str, view: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One entry of a simulation timeline (CONTRACT section 4), also the `event` result.
    ``view`` is the episode view after the step, when the caller has it already."""
    if view is None:
        view = episode_view(pathways.code(step.state.pathway_id), step.state)
    return {
        "at": iso(to_utc(at)),
        "trigger": trigger,
        "type": type_,
        "accepted": step.accepted,
        "rules": list(step.rules),
        "reason": step.reason,
        "override_possible": step.override_possible,
        "eligible_from": iso(step.eligible_from),
        "configuration": view["configuration"],
        "phase": view["phase"],
        "management": view["management"],
        "referral": view["referral"],
        "red_flag": view["red_flag"],
        "due": view["due"],
    }


class EpisodeRepository:
    """Episodes in the database, changed only through the engine.

    Each step runs on one connection in one transaction, with Core statements (the store
    of :mod:`models.episode_store` and its database's adapter, :mod:`models.store_adapters`):
    the ORM's identity map and flushes would cost more than the step itself.

    Args:
        database: the carepath database, as an engine or a session factory bound to one.
        defaults: the pathway's configurable numbers (``CAREPATH_DEFAULTS`` when omitted).
        retry: when an episode's timers are retried after an incident.
    """

    def __init__(
        self,
        database: Engine | sessionmaker[Session],
        defaults: PathwayDefaults | None = None,
        retry: RetryBackoff | None = None,
    ) -> None:
        self.engine: Engine = database if isinstance(database, Engine) else database.kw["bind"]
        self.defaults = defaults or PathwayDefaults.from_env()
        self.retry = retry or RetryBackoff()

    # ---------------------------------------------------------------------------------------
    # Reading

    def load(self, episode_id: str) -> EpisodeState:
        """The episode as the engine sees it.

        Raises:
            EpisodeNotFound: no such episode.
            InvalidConfiguration: the stored configuration cannot be bound to the chart.
        """
        return run_step(self.engine, lambda store: store.read(episode_id).state, read_only=True)

    def view(self, episode_id: str) -> dict[str, Any]:
        state = self.load(episode_id)
        return episode_view(pathways.code(state.pathway_id), state, self.defaults)

    def view_with_timeline(self, episode_id: str, steps: int = TIMELINE_STEPS) -> dict[str, Any]:
        """What ``GET /episodes/{id}`` answers: the episode view with its ``steps`` most
        recent steps (``timeline``, newest first) and ``timeline_next_cursor`` for the
        ones before (:func:`models.history.timeline_page`), in one read.

        Raises:
            EpisodeNotFound, InvalidConfiguration.
        """
        with transaction(self.engine, read_only=True) as store:
            state, timeline, more = read_with_timeline(
                store, self.engine.dialect, episode_id, steps
            )
        view = episode_view(pathways.code(state.pathway_id), state, self.defaults)
        view["timeline"] = timeline
        view["timeline_next_cursor"] = more
        return view

    # ---------------------------------------------------------------------------------------
    # Opening

    def open(
        self,
        opening: Opening,
        now: datetime,
        episode_id: str | None = None,
        actor: str | None = None,
        keyed: KeyedWrite | None = None,
        answer_view: bool = True,
        pinned: bool = False,
    ) -> dict[str, Any]:
        """Enrol a patient; returns the episode view (without ``answer_view``, an empty
        dict: a replay has nobody to answer, and the view costs a third of a step).

        The episode opens on the version the opening asks for, if it may open on it, or on
        the clinic's choice, among its care team (:func:`models.teams.with_care_team`);
        ``pinned``: on the version and team the opening names, as recorded (a replay takes
        a draft's episode again where drafts no longer open).

        Raises:
            InvalidEvent: onset or enrolment more than a day after ``now``, a version it
                may not open on, or a care team nobody is in.
            Replayed: ``keyed`` was answered before (nothing is written).
        """
        now = to_utc(now)
        episode_id = episode_id or str(uuid.uuid4())
        if not pinned:
            opening = with_care_team(self.engine, pathways.opening_for(opening))
        code = pathways.code(pathways.OPENING_PATHWAY)
        decision = decide_opening(code, opening, episode_id, now, self.defaults, actor)
        state = decision.state

        def enrol(store: Store) -> dict[str, Any]:
            keyed_read(store, keyed, now, lambda: None)
            store.insert_episode(state, now)
            store.write_tasks(state, {}, now)
            store.book_timers(state.id, decision.step, now)
            store.append_audit(**decision.audit)
            return answered(store, keyed, decision.view if answer_view else {})

        return run_step(self.engine, enrol)

    # ---------------------------------------------------------------------------------------
    # Events

    def apply(
        self,
        episode_id: str,
        payload: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> tuple[Step, dict[str, Any]]:
        """Apply one event; returns the step and the episode view after it.

        Raises:
            InvalidEvent: bad input (nothing is written).
            EpisodeNotFound, StaleEpisode, InvalidConfiguration.
        """
        return self.apply_parsed(episode_id, parse_event(payload), now, expected_version)

    def apply_parsed(
        self,
        episode_id: str,
        event: ClinicalEvent,
        now: datetime,
        expected_version: int | None = None,
        keyed: KeyedWrite | None = None,
        answer_view: bool = True,
    ) -> tuple[Step, dict[str, Any]]:
        """:meth:`apply` for an event already validated by
        :func:`engine.events.parse_event` (a caller that needs the event too parses once);
        without ``answer_view`` the view is an empty dict (see :meth:`open`).

        Raises:
            Replayed: ``keyed`` was answered before (nothing is written).
        """
        now = to_utc(now)

        def record(store: Store) -> tuple[Step, dict[str, Any]]:
            # A replay is answered before If-Match is checked: the first request moved it.
            loaded = keyed_read(store, keyed, now, lambda: store.read(episode_id, True))
            before = loaded.state
            if expected_version is not None and expected_version != before.version:
                raise StaleEpisode(episode_id, expected_version, before.version)
            decision = decide_event(
                pathways.code(before.pathway_id), before, event, now, self.defaults
            )
            step = decision.step
            if step.accepted and not step.noop:
                store.save_step(loaded, step, now)
            assert decision.event is not None
            store.record_event(decision.event, **decision.audit)
            # Built before the commit, while PostgreSQL still works through the writes
            # just sent: the answer is ready when the commit is. (If the commit fails, the
            # view goes with the error.)
            answer = (step, decision.view if answer_view else {})
            return answered(store, keyed, answer)  # a refusal too: it is audited

        return run_step(self.engine, record)

    def apply_entry(
        self,
        episode_id: str,
        payload: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """:meth:`apply`, answered as a timeline entry (the `event` command's output)."""
        now = to_utc(now)
        event = parse_event(payload)
        step, view = self.apply_parsed(episode_id, event, now, expected_version)
        at = event.occurred_at or now
        entry = timeline_entry(step, at, "event", event.type, view)
        entry["version"] = step.state.version
        return entry

    def complete_task(
        self,
        episode_id: str,
        key: str,
        actor: str,
        now: datetime,
        keyed: KeyedWrite | None = None,
        answer_view: bool = True,
        also: Callable[[Store], None] | None = None,
    ) -> dict[str, Any]:
        """A coordinator marks a due item done; audited like an event. Returns the view
        (without ``answer_view``, an empty dict: see :meth:`open`). ``also`` writes what
        goes with it (what came of the item) in the same transaction.

        Raises:
            InvalidEvent: the item is not open, or the episode has ended.
            Replayed: ``keyed`` was answered before (nothing is written).
        """
        return self._task_step(decide_task_done, episode_id, key, actor, now, keyed,
                               answer_view, also)  # fmt: skip

    def reopen_task(
        self,
        episode_id: str,
        key: str,
        actor: str,
        now: datetime,
        keyed: KeyedWrite | None = None,
        answer_view: bool = True,
        also: Callable[[Store], None] | None = None,
    ) -> dict[str, Any]:
        """A coordinator takes back an item they marked done: open again, audited like an
        event; as :meth:`complete_task` otherwise.

        Raises:
            InvalidEvent: the item is not done or no longer current, or the episode ended.
            Replayed: ``keyed`` was answered before (nothing is written).
        """
        return self._task_step(decide_task_reopened, episode_id, key, actor, now, keyed,
                               answer_view, also)  # fmt: skip

    def _task_step(
        self, decide: Callable[..., Decision], episode_id: str, key: str, actor: str,
        now: datetime, keyed: KeyedWrite | None, answer_view: bool,
        also: Callable[[Store], None] | None,
    ) -> dict[str, Any]:  # fmt: skip
        now = to_utc(now)

        def taken(store: Store) -> dict[str, Any]:
            loaded = keyed_read(store, keyed, now, lambda: store.read(episode_id, True))
            code = pathways.code(loaded.state.pathway_id)
            decision = decide(code, loaded.state, key, actor, now, self.defaults)
            store.save_step(loaded, decision.step, now)
            store.append_audit(**decision.audit)
            if also is not None:
                also(store)
            return answered(store, keyed, decision.view if answer_view else {})

        return run_step(self.engine, taken)

    # ---------------------------------------------------------------------------------------
    # Timers

    def fire_due(
        self, now: datetime, limit: int | None = None, on_time: bool = False
    ) -> list[dict[str, Any]]:
        """Fire every pending timer due at ``now``, in due order, batch after batch.

        Args:
            now: the current instant.
            limit: fire at most this many timers (no limit when None).
            on_time: act as if each timer had fired exactly at its due instant (the
                simulation's clock); otherwise the engine sees ``now``.

        Returns:
            One timeline entry per timer that changed an episode.
        """
        entries: list[dict[str, Any]] = []
        fired = 0
        while limit is None or fired < limit:
            size = FIRE_BATCH if limit is None else min(FIRE_BATCH, limit - fired)
            batch = self.fire_batch(now, size, on_time, timeline=True)
            entries.extend(batch.entries)
            fired += batch.fired
            if batch.claimed == 0 or (batch.fired == 0 and batch.held == batch.claimed):
                break
        return entries

    def fire_batch(
        self, now: datetime | None, limit: int, on_time: bool = False, timeline: bool = False
    ) -> FiredBatch:
        """Claim up to ``limit`` due timers and fire them in one transaction.

        Each timer goes through the engine in due order: its episode's state, due items,
        follow-on timers, the timer marked fired (or a no-op when the episode has moved
        on) and an audit row recording both the due and the fired instant. An episode
        whose earlier timer another worker holds is left for the next batch, and so is
        the rest of an episode whose step booked a timer that is already due: each
        episode's timers apply in due order, whoever claims them. ``timeline`` collects a
        timeline entry per step that changed an episode (the simulation's output).

        A step that cannot be done for one episode (its stored record unreadable, its
        step raising) makes an incident (:mod:`models.incidents`) that holds back that
        episode's timers until its retry; the rest of the batch commits. Should the
        database refuse a write of the batch, it is fired again one episode at a time, so
        that only the episode whose write was refused becomes an incident.

        Args:
            now: the instant that decides what is due; None for the database's clock
                (PostgreSQL's ``now()``; SQLite's is the process's own).
        """
        try:
            batch = self._fire_batch(now, limit, on_time, timeline)
        except (IntegrityError, DataError):
            batch = self._fire_one_episode_at_a_time(now, limit, on_time, timeline)
        log_changes(batch.incidents)
        return batch

    def _fire_one_episode_at_a_time(
        self, now: datetime | None, limit: int, on_time: bool, timeline: bool
    ) -> FiredBatch:
        with transaction(self.engine) as store:
            claimed = store.claim_due(now, limit)
        batch = FiredBatch(now=claimed.now)
        first: dict[str, int] = {}
        for timer in claimed.timers:
            first.setdefault(timer["episode_id"], timer["id"])
        for episode_id, timer_id in first.items():
            try:
                part = self._fire_batch(claimed.now, limit, on_time, timeline, episode_id)
            except (IntegrityError, DataError) as exc:
                with transaction(self.engine) as store:
                    incidents = BatchIncidents(store.cursor, self.engine.dialect, self.retry)
                    open_ones = incidents.open_on([episode_id]).get(episode_id, ())
                    incidents.failed("timer", episode_id, timer_id, exc, claimed.now, open_ones)
                part = FiredBatch(now=claimed.now, claimed=1, failed=1)
                part.incidents = incidents.changes
            batch.add(part)
        return batch

    def _fire_batch(
        self,
        now: datetime | None,
        limit: int,
        on_time: bool,
        timeline: bool,
        episode_id: str | None = None,
    ) -> FiredBatch:
        with transaction(self.engine) as store:
            claimed = store.claim_due(now, limit, episode_id)
            now = claimed.now
            timers = claimed.timers
            batch = FiredBatch(now=now, claimed=len(timers) + len(claimed.unreadable))
            if not batch.claimed:
                return batch
            incidents = BatchIncidents(store.cursor, self.engine.dialect, self.retry)
            retrying = incidents.open_on(
                [t["episode_id"] for t in timers if t["retrying"]]
                + [episode for _, episode, _ in claimed.unreadable]
            )
            broken: set[str] = set()
            for timer_id, episode, exc in claimed.unreadable:
                if episode not in broken:
                    held = retrying.get(episode, ())
                    incidents.failed("timer", episode, timer_id, exc, now, held)
                    broken.add(episode)
                    batch.failed += 1
            loaded = store.read_many([t["episode_id"] for t in timers])
            changes = {
                episode: EpisodeChanges(one)
                for episode, one in loaded.items()
                if not isinstance(one, UnreadableEpisode)
            }
            deferred = store.held_elsewhere(timers)
            fired_for: set[str] = set()
            marks: list[dict[str, Any]] = []
            audit: list[dict[str, Any]] = []
            for timer in timers:
                episode = timer["episode_id"]
                if episode in broken:
                    continue  # held back by the incident just opened
                if episode in deferred:
                    batch.held += 1
                    continue
                one = loaded[episode]
                if isinstance(one, UnreadableEpisode):
                    held = retrying.get(episode, ())
                    incidents.failed("episode", episode, timer["id"], one, now, held)
                    broken.add(episode)
                    batch.failed += 1
                    continue
                at = timer["due_at"] if on_time else now
                try:
                    step, mark, facts = self._fire(changes[episode].state, timer, at)
                except Exception as exc:  # noqa: BLE001 - one episode's failure is its own
                    held = retrying.get(episode, ())
                    incidents.failed("timer", episode, timer["id"], exc, now, held)
                    broken.add(episode)
                    batch.failed += 1
                    continue
                fired_for.add(episode)
                marks.append(mark)
                audit.append(facts)
                batch.fired += 1
                batch.lags.append((now - timer["due_at"]).total_seconds())
                if step.noop:
                    batch.noops += 1
                    continue
                changes[episode].absorb(step)
                if timeline:  # the simulation's; the worker has no use for it
                    code = pathways.code(step.state.pathway_id)
                    view = episode_view(code, step.state, self.defaults)
                    entry = timeline_entry(step, timer["due_at"], "timer", facts["type"], view)
                    batch.entries.append(entry)
                if any(request.due_at <= now for request in step.timers):
                    deferred.add(episode)
            for episode in fired_for - broken:
                if episode in retrying:
                    incidents.resolved(retrying[episode], now)
            store.write_batch(list(changes.values()), marks, now)
            # The chain's head is locked last and only for the appends: workers queue for
            # it for the length of an insert, not of a batch.
            if audit:
                chain = store.audit_chain()
                for facts in audit:
                    chain.append(**facts)
                chain.close()
        batch.incidents = incidents.changes
        return batch

    def _fire(
        self, state: EpisodeState, timer: Mapping[str, Any], now: datetime
    ) -> tuple[Step, dict[str, Any], dict[str, Any]]:
        """Run one timer through the engine: the step, the timer's row as fired (or found
        stale), and the facts of its audit row."""
        decision = decide_timer(pathways.code(state.pathway_id), state, timer, now, self.defaults)
        step = decision.step
        mark = {
            "b_id": timer["id"],
            "status": "noop" if step.noop else "fired",
            "fired_at": now,
            "outcome": decision.outcome,
        }
        return step, mark, decision.audit


# Timers fired per transaction: enough to amortise the commit, few enough that a batch
# holds its episodes' locks only briefly.
FIRE_BATCH = 100


@dataclass
class FiredBatch:
    """What one batch did: timers claimed, fired (no-ops included), left for later, and
    failed (each an incident, opened or retried, in ``incidents``); ``now`` is the instant
    that decided what was due."""

    now: datetime | None = None
    claimed: int = 0
    fired: int = 0
    noops: int = 0
    held: int = 0
    failed: int = 0
    lags: list[float] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[Change] = field(default_factory=list)

    def add(self, other: FiredBatch) -> None:
        self.claimed += other.claimed
        self.fired += other.fired
        self.noops += other.noops
        self.held += other.held
        self.failed += other.failed
        self.lags += other.lags
        self.entries += other.entries
        self.incidents += other.incidents


__all__ = [
    "EpisodeRepository",
    "InvalidConfiguration",
    "timeline_entry",
]
