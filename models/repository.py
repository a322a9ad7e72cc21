"""The unit of work: load an episode, run the engine on it, commit everything in one go.

One transaction per step: the episode row, its tasks, the timers it sets or cancels, the
event as received and the audit row are written together or not at all. Timers fire the same
way, one transaction per timer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from engine.chart import validate_configuration
from engine.clinic_time import to_utc
from engine.episode import EpisodeState, Patient, Step, TaskItem, iso
from engine.errors import EpisodeNotFound, InvalidConfiguration, StaleEpisode
from engine.events import Opening, check_event_time, event_payload_json, parse_event
from engine.pathway import apply_event, fire_timer, open_episode
from engine.settings import PathwayDefaults
from engine.view import episode_view
from models.audit import append_audit
from models.tables import ClinicalEventRow, DueTimer, Episode, Task


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def opening_json(opening: Opening) -> dict[str, Any]:
    """The opening as received, in JSON form, for the audit digest."""
    return {
        "patient": opening.patient.model_dump(mode="json"),
        "onset": opening.onset.isoformat(),
        "enrolled_at": iso(opening.enrolled_at),
        "coordinator": opening.coordinator,
        "clinic_timezone": opening.clinic_timezone,
    }


def timeline_entry(step: Step, at: datetime, trigger: str, type_: str) -> dict[str, Any]:
    """One entry of a simulation timeline (CONTRACT section 4), also the `event` result."""
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


def state_from_row(row: Episode, tasks: list[Task]) -> EpisodeState:
    """Rebuild the engine's value from stored rows, refusing an impossible configuration."""
    configuration = list(row.configuration)
    validate_configuration(configuration)
    patient = row.patient or {}
    return EpisodeState(
        id=row.id,
        patient=Patient(
            row.patient_ref, patient.get("age"), patient.get("sex"), dict(patient.get("flags", {}))
        ),
        onset=row.onset,
        enrolled_at=row.enrolled_at,
        clinic_timezone=row.clinic_timezone,
        coordinator=row.coordinator,
        status=row.status,
        configuration=configuration,
        history={k: list(v) for k, v in (row.history or {}).items()},
        facts=dict(row.facts or {}),
        tasks={
            t.key: TaskItem(
                key=t.key,
                rule=t.rule,
                due_at=t.due_at,
                window_start=t.window_start,
                escalate_at=t.escalate_at,
                status=t.status,
                completed_at=t.completed_at,
            )
            for t in tasks
        },
        version=row.version,
        pathway_id=row.pathway_id,
        pathway_version=row.pathway_version,
    )


class EpisodeRepository:
    """Episodes in the database, changed only through the engine.

    Args:
        session_factory: makes sessions on the carepath database.
        defaults: the pathway's configurable numbers (``CAREPATH_DEFAULTS`` when omitted).
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session] | Callable[[], Session],
        defaults: PathwayDefaults | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.defaults = defaults or PathwayDefaults.from_env()

    # ---------------------------------------------------------------------------------------
    # Reading

    def load(self, session: Session, episode_id: str, for_update: bool = False) -> EpisodeState:
        """The episode as the engine sees it.

        Raises:
            EpisodeNotFound: no such episode.
            InvalidConfiguration: the stored configuration cannot be bound to the chart.
        """
        row = self._row(session, episode_id, for_update)
        tasks = list(
            session.scalars(select(Task).where(Task.episode_id == episode_id).order_by(Task.id))
        )
        # Kept for the write of this step, so the tasks are not read twice.
        session.info[("tasks", episode_id)] = {t.key: t for t in tasks}
        return state_from_row(row, tasks)

    def _row(self, session: Session, episode_id: str, for_update: bool) -> Episode:
        query = select(Episode).where(Episode.id == episode_id)
        if for_update and _is_postgres(session):
            query = query.with_for_update()
        row = session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
        if row is None:
            raise EpisodeNotFound(episode_id)
        return row

    def view(self, episode_id: str) -> dict[str, Any]:
        with self.session_factory() as session:
            return episode_view(self.load(session, episode_id))

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
        with self.session_factory() as session, session.begin():
            session.add(
                Episode(
                    id=state.id,
                    patient_ref=state.patient.ref,
                    patient=state.patient.as_json(),
                    onset=state.onset,
                    enrolled_at=state.enrolled_at,
                    clinic_timezone=state.clinic_timezone,
                    coordinator=state.coordinator,
                    pathway_id=state.pathway_id,
                    pathway_version=state.pathway_version,
                    status=state.status,
                    configuration=list(state.configuration),
                    history=state.history,
                    facts=state.facts,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.flush()
            self._sync_tasks(session, state, now)
            self._book_timers(session, state.id, step, now)
            append_audit(
                session,
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
        state.version = 1
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
        now = to_utc(now)
        event = parse_event(payload)
        with self.session_factory() as session, session.begin():
            before = self.load(session, episode_id, for_update=True)
            if expected_version is not None and expected_version != before.version:
                raise StaleEpisode(episode_id, expected_version, before.version)
            occurred = event.occurred_at or now
            check_event_time(occurred, before.onset, now, before.tz)
            step = apply_event(before, event, now, self.defaults)
            configuration_before = list(before.configuration)
            if step.accepted and not step.noop:
                self._save(session, step, now)
            session.add(
                ClinicalEventRow(
                    episode_id=episode_id,
                    type=event.type,
                    data=event.data.model_dump(mode="json", exclude_none=True),
                    actor=event.actor,
                    occurred_at=occurred,
                    recorded_at=now,
                    accepted=step.accepted,
                    rules=list(step.rules),
                    reason=step.reason,
                )
            )
            append_audit(
                session,
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
                payload=event_payload_json(event),
                pathway_id=step.state.pathway_id,
                pathway_version=step.state.pathway_version,
            )
        return step, episode_view(step.state)

    def apply_entry(
        self,
        episode_id: str,
        payload: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """:meth:`apply`, answered as a timeline entry (the `event` command's output)."""
        step, _ = self.apply(episode_id, payload, now, expected_version)
        at = parse_event(payload).occurred_at or now
        entry = timeline_entry(step, at, "event", str(payload.get("type")))
        entry["version"] = step.state.version
        return entry

    # ---------------------------------------------------------------------------------------
    # Timers

    def fire_due(
        self, now: datetime, limit: int | None = None, on_time: bool = False
    ) -> list[dict[str, Any]]:
        """Fire every pending timer due at ``now``, one transaction each.

        Args:
            now: the current instant.
            limit: fire at most this many timers (no limit when None).
            on_time: act as if each timer had fired exactly at its due instant (the
                simulation's clock); otherwise the engine sees ``now``.

        Returns:
            One timeline entry per timer that changed an episode.
        """
        now = to_utc(now)
        entries: list[dict[str, Any]] = []
        fired = 0
        while limit is None or fired < limit:
            with self.session_factory() as session, session.begin():
                query = (
                    select(DueTimer)
                    .where(DueTimer.status == "pending", DueTimer.due_at <= now)
                    .order_by(DueTimer.due_at, DueTimer.id)
                    .limit(1)
                )
                if _is_postgres(session):
                    query = query.with_for_update(skip_locked=True)
                timer = session.execute(query).scalar_one_or_none()
                if timer is None:
                    break
                fired += 1
                entry = self._fire(session, timer, timer.due_at if on_time else now)
            if entry is not None:
                entries.append(entry)
        return entries

    def _fire(self, session: Session, timer: DueTimer, now: datetime) -> dict[str, Any] | None:
        state = self.load(session, timer.episode_id, for_update=True)
        payload = dict(timer.payload or {})
        due_at = timer.due_at
        step = fire_timer(state, timer.kind, payload, due_at, max(now, due_at), self.defaults)
        type_ = timer.kind
        if "key" in payload:
            type_ = f"{timer.kind}:{payload['key']}"
        elif "to" in payload:
            type_ = f"{timer.kind}:{payload['to']}"
        timer.status = "noop" if step.noop else "fired"
        timer.fired_at = now
        timer.outcome = step.reason if step.noop else ", ".join(step.rules) or "fired"
        if not step.noop:
            self._save(session, step, now)
        append_audit(
            session,
            episode_id=state.id,
            trigger="timer",
            type=type_,
            actor="scheduler",
            occurred_at=due_at,
            recorded_at=now,
            accepted=True,
            configuration_before=state.configuration,
            configuration_after=step.state.configuration,
            rules=step.rules,
            reason=step.reason if step.noop else None,
            payload={"kind": timer.kind, "ref": timer.ref, "payload": payload},
            pathway_id=state.pathway_id,
            pathway_version=state.pathway_version,
        )
        if step.noop:
            return None
        return timeline_entry(step, due_at, "timer", type_)

    # ---------------------------------------------------------------------------------------
    # Writing a step

    def _save(self, session: Session, step: Step, now: datetime) -> None:
        state = step.state
        row = session.get(Episode, state.id)  # loaded by this session: no second query
        assert row is not None
        row.configuration = list(state.configuration)
        row.history = {k: list(v) for k, v in state.history.items()}
        row.facts = state.facts
        row.status = state.status
        row.version = row.version + 1
        row.updated_at = now
        state.version = row.version
        self._sync_tasks(session, state, now)
        self._cancel_timers(session, state.id, step.cancel_refs, now)
        self._book_timers(session, state.id, step, now)

    def _sync_tasks(self, session: Session, state: EpisodeState, now: datetime) -> None:
        existing = session.info.get(("tasks", state.id))
        if existing is None:
            existing = {
                t.key: t for t in session.scalars(select(Task).where(Task.episode_id == state.id))
            }
        for key, item in state.tasks.items():
            row = existing.get(key)
            if row is None:
                row = Task(episode_id=state.id, key=key, created_at=now)
                session.add(row)
            elif (
                row.status == item.status
                and row.due_at == item.due_at
                and row.window_start == item.window_start
                and row.escalate_at == item.escalate_at
                and row.completed_at == item.completed_at
                and row.owner == state.coordinator
                and row.rule == item.rule
            ):
                continue
            row.rule = item.rule
            row.status = item.status
            row.due_at = item.due_at
            row.window_start = item.window_start
            row.escalate_at = item.escalate_at
            row.completed_at = item.completed_at
            row.owner = state.coordinator
            row.updated_at = now

    def _cancel_timers(
        self, session: Session, episode_id: str, refs: list[str], now: datetime
    ) -> None:
        if not refs:
            return
        query = update(DueTimer).where(
            DueTimer.episode_id == episode_id, DueTimer.status == "pending"
        )
        if "*" not in refs:
            query = query.where(DueTimer.ref.in_(refs))
        session.execute(
            query.values(status="cancelled", fired_at=now, outcome="cancelled by the engine"),
            execution_options={"synchronize_session": False},
        )

    def _book_timers(self, session: Session, episode_id: str, step: Step, now: datetime) -> None:
        for request in step.timers:
            session.add(
                DueTimer(
                    episode_id=episode_id,
                    kind=request.kind,
                    ref=request.ref,
                    due_at=request.due_at,
                    payload=dict(request.payload),
                    status="pending",
                    set_at=now,
                )
            )
        session.flush()


__all__ = [
    "EpisodeRepository",
    "InvalidConfiguration",
    "opening_json",
    "state_from_row",
    "timeline_entry",
]
