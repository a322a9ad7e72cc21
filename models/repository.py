"""The unit of work: load an episode, run the engine on it, commit everything in one go.

One transaction per step: the episode row, its tasks, the timers it sets or cancels, the
event as received and the audit row are written together or not at all. Timers fire the same
way, one transaction per timer.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from engine.clinic_time import to_utc
from engine.episode import EpisodeState, Step, iso
from engine.errors import InvalidConfiguration, StaleEpisode
from engine.events import ClinicalEvent, Opening, check_event_time, event_payload_json, parse_event
from engine.pathway import apply_event, complete_task, fire_timer, open_episode
from engine.settings import PathwayDefaults
from engine.view import episode_view
from models.history import TIMELINE_STEPS, read_with_timeline
from models.store import EpisodeChanges, transaction


def opening_json(opening: Opening) -> dict[str, Any]:
    """The opening as received, in JSON form, for the audit digest."""
    return {
        "patient": opening.patient.model_dump(mode="json"),
        "onset": opening.onset.isoformat(),
        "enrolled_at": iso(opening.enrolled_at),
        "coordinator": opening.coordinator,
        "clinic_timezone": opening.clinic_timezone,
    }


def timeline_entry(
    step: Step, at: datetime, trigger: str, type_: str, view: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One entry of a simulation timeline (CONTRACT section 4), also the `event` result.
    ``view`` is the episode view after the step, when the caller has it already."""
    if view is None:
        view = episode_view(step.state)
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

    Each step runs on one connection in one transaction, with Core statements
    (:mod:`models.store`): the ORM's identity map and flushes would cost more than the
    step itself.

    Args:
        database: the carepath database, as an engine or a session factory bound to one.
        defaults: the pathway's configurable numbers (``CAREPATH_DEFAULTS`` when omitted).
    """

    def __init__(
        self, database: Engine | sessionmaker[Session], defaults: PathwayDefaults | None = None
    ) -> None:
        self.engine: Engine = database if isinstance(database, Engine) else database.kw["bind"]
        self.defaults = defaults or PathwayDefaults.from_env()

    # ---------------------------------------------------------------------------------------
    # Reading

    def load(self, episode_id: str) -> EpisodeState:
        """The episode as the engine sees it.

        Raises:
            EpisodeNotFound: no such episode.
            InvalidConfiguration: the stored configuration cannot be bound to the chart.
        """
        with transaction(self.engine, read_only=True) as store:
            return store.read(episode_id).state

    def view(self, episode_id: str) -> dict[str, Any]:
        return episode_view(self.load(episode_id))

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
        view = episode_view(state)
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
    ) -> dict[str, Any]:
        """Enrol a patient; returns the episode view."""
        now = to_utc(now)
        episode_id = episode_id or str(uuid.uuid4())
        step = open_episode(opening, episode_id, now, self.defaults)
        state = step.state
        with transaction(self.engine) as store:
            store.insert_episode(state, now)
            store.write_tasks(state, {}, now)
            store.book_timers(state.id, step, now)
            store.append_audit(
                episode_id=state.id,
                trigger="open",
                type="open",
                actor=actor or "system",
                occurred_at=state.enrolled_at,
                recorded_at=now,
                accepted=True,
                configuration_before=[],
                configuration_after=state.configuration,
                rules=step.rules,
                reason=None,
                payload=opening_json(opening),
                pathway_id=state.pathway_id,
                pathway_version=state.pathway_version,
            )
        return episode_view(state)

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
    ) -> tuple[Step, dict[str, Any]]:
        """:meth:`apply` for an event already validated by
        :func:`engine.events.parse_event` (a caller that needs the event too parses once)."""
        now = to_utc(now)
        payload = event_payload_json(event)
        with transaction(self.engine) as store:
            loaded = store.read(episode_id, for_update=True)
            before = loaded.state
            if expected_version is not None and expected_version != before.version:
                raise StaleEpisode(episode_id, expected_version, before.version)
            occurred = event.occurred_at or now
            check_event_time(occurred, before.onset, now, before.tz)
            configuration_before = list(before.configuration)
            step = apply_event(before, event, now, self.defaults)
            if step.accepted and not step.noop:
                store.save_step(loaded, step, now)
            store.record_event(
                {
                    "episode_id": episode_id,
                    "type": event.type,
                    "data": payload["data"],
                    "actor": event.actor,
                    "occurred_at": occurred,
                    "recorded_at": now,
                    "accepted": step.accepted,
                    "rules": list(step.rules),
                    "reason": step.reason,
                },
                episode_id=episode_id,
                trigger="event",
                type=event.type,
                actor=event.actor,
                occurred_at=occurred,
                recorded_at=now,
                accepted=step.accepted,
                configuration_before=configuration_before,
                configuration_after=step.state.configuration,
                rules=step.rules,
                reason=step.reason,
                payload=payload,
                pathway_id=step.state.pathway_id,
                pathway_version=step.state.pathway_version,
            )
            # Built before the commit, while PostgreSQL still works through the writes
            # just sent: the answer is ready when the commit is. (If the commit fails, the
            # view goes with the error.)
            view = episode_view(step.state)
        return step, view

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

    def complete_task(self, episode_id: str, key: str, actor: str, now: datetime) -> dict[str, Any]:
        """A coordinator marks a due item done; audited like an event. Returns the view.

        Raises:
            InvalidEvent: the item is not open, or the episode has ended.
        """
        now = to_utc(now)
        with transaction(self.engine) as store:
            loaded = store.read(episode_id, for_update=True)
            before = loaded.state
            step = complete_task(before, key, now)
            store.save_step(loaded, step, now)
            store.append_audit(
                episode_id=episode_id,
                trigger="event",
                type="task_done",
                actor=actor,
                occurred_at=now,
                recorded_at=now,
                accepted=True,
                configuration_before=before.configuration,
                configuration_after=step.state.configuration,
                rules=step.rules,
                reason=None,
                payload={"task": key},
                pathway_id=before.pathway_id,
                pathway_version=before.pathway_version,
            )
        return episode_view(step.state)

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
        self, now: datetime, limit: int, on_time: bool = False, timeline: bool = False
    ) -> FiredBatch:
        """Claim up to ``limit`` due timers and fire them in one transaction.

        Each timer goes through the engine in due order: its episode's state, due items,
        follow-on timers, the timer marked fired (or a no-op when the episode has moved
        on) and an audit row recording both the due and the fired instant. An episode
        whose earlier timer another worker holds is left for the next batch, and so is
        the rest of an episode whose step booked a timer that is already due: each
        episode's timers apply in due order, whoever claims them. ``timeline`` collects a
        timeline entry per step that changed an episode (the simulation's output).
        """
        now = to_utc(now)
        batch = FiredBatch()
        with transaction(self.engine) as store:
            timers = store.claim_timers(now, limit)
            batch.claimed = len(timers)
            if not timers:
                return batch
            loaded = store.read_many([t["episode_id"] for t in timers])
            changes = {episode_id: EpisodeChanges(one) for episode_id, one in loaded.items()}
            deferred = store.held_elsewhere(timers)
            marks: list[dict[str, Any]] = []
            audit: list[dict[str, Any]] = []
            for timer in timers:
                episode = changes[timer["episode_id"]]
                if timer["episode_id"] in deferred:
                    batch.held += 1
                    continue
                at = timer["due_at"] if on_time else now
                step, mark, facts = self._fire(episode.state, timer, at)
                marks.append(mark)
                audit.append(facts)
                batch.fired += 1
                batch.lags.append((now - timer["due_at"]).total_seconds())
                if step.noop:
                    batch.noops += 1
                    continue
                episode.absorb(step)
                if timeline:  # the simulation's; the worker has no use for it
                    entry = timeline_entry(step, timer["due_at"], "timer", facts["type"])
                    batch.entries.append(entry)
                if any(request.due_at <= now for request in step.timers):
                    deferred.add(timer["episode_id"])
            store.write_batch(list(changes.values()), marks, now)
            # The chain's head is locked last and only for the appends: workers queue for
            # it for the length of an insert, not of a batch.
            chain = store.audit_chain()
            for facts in audit:
                chain.append(**facts)
            chain.close()
        return batch

    def _fire(
        self, state: EpisodeState, timer: Mapping[str, Any], now: datetime
    ) -> tuple[Step, dict[str, Any], dict[str, Any]]:
        """Run one timer through the engine: the step, the timer's row as fired (or found
        stale), and the facts of its audit row."""
        kind, payload, due_at = timer["kind"], dict(timer["payload"] or {}), timer["due_at"]
        step = fire_timer(state, kind, payload, due_at, max(now, due_at), self.defaults)
        type_ = kind
        if "key" in payload:
            type_ = f"{kind}:{payload['key']}"
        elif "to" in payload:
            type_ = f"{kind}:{payload['to']}"
        mark = {
            "b_id": timer["id"],
            "status": "noop" if step.noop else "fired",
            "fired_at": now,
            "outcome": (step.reason or "no-op") if step.noop else ", ".join(step.rules) or "fired",
        }
        facts = {
            "episode_id": state.id,
            "trigger": "timer",
            "type": type_,
            "actor": "scheduler",
            "occurred_at": due_at,
            "recorded_at": now,
            "accepted": True,
            "configuration_before": list(state.configuration),
            "configuration_after": step.state.configuration,
            "rules": step.rules,
            "reason": step.reason if step.noop else None,
            "payload": {"kind": kind, "ref": timer["ref"], "payload": payload},
            "pathway_id": state.pathway_id,
            "pathway_version": state.pathway_version,
        }
        return step, mark, facts


# Timers fired per transaction: enough to amortise the commit, few enough that a batch
# holds its episodes' locks only briefly.
FIRE_BATCH = 100


@dataclass
class FiredBatch:
    """What one batch did: timers claimed, fired (no-ops included), and left for later."""

    claimed: int = 0
    fired: int = 0
    noops: int = 0
    held: int = 0
    lags: list[float] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)


__all__ = [
    "EpisodeRepository",
    "InvalidConfiguration",
    "opening_json",
    "timeline_entry",
]
