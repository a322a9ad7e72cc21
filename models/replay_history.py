"""What a replay reads of an episode's recorded history, and the inputs it rebuilds from it.

The history is read in one read-only snapshot per batch of episodes (PostgreSQL: a
``REPEATABLE READ READ ONLY`` transaction; SQLite: one read transaction), so that an episode
being written meanwhile is seen whole or not at all: its row, its due items, its audit rows
in chain order, its events as received and its timers that fired. Nothing is written.

Each step's input is rebuilt from what the tables keep, and picked by the audit row's
payload digest where the stored rows leave a choice:

- the opening, from the episode row (patient, onset, enrolment, coordinator, team, time
  zone) and the version of its ``open`` row (the coordinator it opened with is the first
  accepted handover's ``from``, when it was handed over since); the opening either named
  its enrolment instant or took "now" (its recorded instant), and the digest tells which;
- an event, from its ``clinical_event`` row (type, data, actor, occurred_at); it either
  named when it happened or took "now", and the digest tells which;
- a due item marked done (trigger ``event``, type ``task_done``, payload ``{"task": key}``)
  or reopened (type ``task_reopened``, payload ``{"reopen": key}``): the key is not stored
  beside the row, so it is the one of the episode's items whose digest is the row's;
- a timer: its ``due_timer`` row (kind, ref, payload), the one due at the row's
  ``occurred_at``, fired at its ``recorded_at``, whose digest is the row's.

The episode's pending timers are read too (a migration compares them with its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from pydantic import ValidationError
from sqlalchemy import Engine, Table, func, select

from engine.decision import TASK_REOPENED, opening_json
from engine.episode import EpisodeState, iso
from engine.errors import EpisodeNotFound, InvalidEvent
from engine.events import (
    ClinicalEvent,
    Opening,
    PatientIn,
    event_payload_json,
    parse_event,
)
from engine.handover import HANDOVER
from models.audit import payload_digest
from models.db import read_only
from models.stored import state_from_rows
from models.tables import AuditEntry, ClinicalEventRow, DueTimer, Episode, Task

EPISODE = cast(Table, Episode.__table__)
TASK = cast(Table, Task.__table__)
AUDIT_LOG = cast(Table, AuditEntry.__table__)
EVENT = cast(Table, ClinicalEventRow.__table__)
TIMER = cast(Table, DueTimer.__table__)
Row = Mapping[str, Any]
_Input = TypeVar("_Input")


class NotReplayable(Exception):
    """A step that cannot be replayed from what is stored: ``problem`` says why."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


@dataclass
class EpisodeHistory:
    """One episode's rows as a snapshot saw them."""

    episode: Row
    tasks: list[Row] = field(default_factory=list)  # every due item, archived ones too
    steps: list[Row] = field(default_factory=list)  # audit rows, in chain order
    events: list[Row] = field(default_factory=list)  # clinical_event rows, as received
    timers: list[Row] = field(default_factory=list)  # due_timer rows fired or found stale
    pending: list[Row] = field(default_factory=list)  # due_timer rows still to fire

    @property
    def episode_id(self) -> str:
        return str(self.episode["id"])

    def state(self) -> EpisodeState:
        """The episode as stored now: what its replay must end on.

        Raises:
            UnreadableEpisode: the stored row cannot be read.
        """
        current = [t for t in self.tasks if t["archived_at"] is None]
        return state_from_rows(self.episode, current)


def episode_ids(engine: Engine, among: Sequence[str] | None = None) -> list[str]:
    """Every episode's id in the order the audit log saw them opened, or those of
    ``among``, in its order (each once).

    Raises:
        EpisodeNotFound: the first of ``among`` that has no episode row.
    """
    with read_only(engine) as connection:
        if among is None:
            first = (
                select(AUDIT_LOG.c.episode_id, func.min(AUDIT_LOG.c.seq).label("seq"))
                .group_by(AUDIT_LOG.c.episode_id)
                .subquery()
            )
            opened = (
                select(EPISODE.c.id)
                .outerjoin(first, first.c.episode_id == EPISODE.c.id)
                .order_by(func.coalesce(first.c.seq, 0), EPISODE.c.created_at, EPISODE.c.id)
            )
            return list(connection.scalars(opened))
        wanted = list(dict.fromkeys(among))
        found = set(connection.scalars(select(EPISODE.c.id).where(EPISODE.c.id.in_(wanted))))
    for episode_id in wanted:
        if episode_id not in found:
            raise EpisodeNotFound(episode_id)
    return wanted


# What a migration reads of an audit row: the step, not its recorded outcome or its chain.
STEP_COLUMNS = ("seq", "episode_id", "trigger", "type", "actor", "occurred_at", "recorded_at",
                "accepted", "payload_digest", "pathway_id", "pathway_version")  # fmt: skip


def read_histories(
    engine: Engine, ids: Sequence[str], whole_steps: bool = True
) -> list[EpisodeHistory]:
    """The histories of ``ids``, in that order, from one read-only snapshot; without
    ``whole_steps``, of each audit row only its :data:`STEP_COLUMNS`.

    Raises:
        EpisodeNotFound: the first of ``ids`` that has no episode row.
    """
    wanted = list(dict.fromkeys(ids))
    with read_only(engine) as connection:
        if engine.dialect.name == "postgresql":
            connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        with connection.begin():

            def rows(table: Table, key: str, order: Any, *where: Any) -> Sequence[Row]:
                columns: list[Any] = list(table.c)
                if table is AUDIT_LOG and not whole_steps:
                    columns = [AUDIT_LOG.c[name] for name in STEP_COLUMNS]
                query = select(*columns).where(table.c[key].in_(wanted), *where).order_by(order)
                return cast(Sequence[Row], connection.execute(query).mappings().all())

            episodes = {r["id"]: EpisodeHistory(r) for r in rows(EPISODE, "id", EPISODE.c.id)}
            missing = [i for i in wanted if i not in episodes]
            if missing:
                raise EpisodeNotFound(missing[0])
            for task in rows(TASK, "episode_id", TASK.c.id):
                episodes[task["episode_id"]].tasks.append(task)
            for step in rows(AUDIT_LOG, "episode_id", AUDIT_LOG.c.seq):
                episodes[step["episode_id"]].steps.append(step)
            for event in rows(EVENT, "episode_id", EVENT.c.id):
                episodes[event["episode_id"]].events.append(event)
            for timer in rows(
                TIMER, "episode_id", TIMER.c.id, TIMER.c.status.in_(("fired", "noop", "pending"))
            ):
                history = episodes[timer["episode_id"]]
                (history.pending if timer["status"] == "pending" else history.timers).append(timer)
    return [episodes[i] for i in wanted]


def opening_of(history: EpisodeHistory, step: Row) -> Opening:
    """The opening the episode row and its ``open`` audit row (``step``) describe.

    Raises:
        NotReplayable: the stored patient does not validate.
    """
    row = history.episode
    patient = row["patient"] if isinstance(row["patient"], Mapping) else {}
    fields = {"ref": row["patient_ref"], "age": patient.get("age"), "sex": patient.get("sex")}
    flags = patient.get("flags")
    try:
        patient_in = PatientIn.model_validate(
            {**fields, **(flags if isinstance(flags, Mapping) else {})}
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise NotReplayable(
            f"the episode row's patient does not validate: {where}: {problem['msg']}"
        ) from None
    named = Opening(
        patient=patient_in,
        onset=row["onset"],
        enrolled_at=row["enrolled_at"],
        coordinator=_opened_with(history),
        clinic_timezone=row["clinic_timezone"],
        pathway_version=step["pathway_version"],
        team=row["team"],
    )
    candidates = [named]
    if row["enrolled_at"] == step["recorded_at"]:
        candidates.append(replace(named, enrolled_at=None))
    return _by_digest(candidates, opening_json, step)


def _opened_with(history: EpisodeHistory) -> str | None:
    """The coordinator the episode opened with: the one its first accepted handover took it
    from, or (never handed over) the one it has."""
    for event in history.events:
        if event["type"] == HANDOVER and event["accepted"]:
            data = event["data"] if isinstance(event["data"], Mapping) else {}
            return cast(str | None, data.get("from"))
    return cast(str | None, history.episode["coordinator"])


def event_of(stored: Row, step: Row) -> ClinicalEvent:
    """The event its ``clinical_event`` row (``stored``) keeps, as the audit row ``step``
    received it.

    Raises:
        NotReplayable: the stored event is not of the row's type or instant (one is
            missing), or does not parse.
    """
    if (stored["type"], stored["recorded_at"]) != (step["type"], step["recorded_at"]):
        raise NotReplayable(
            f"the next stored event, clinical_event {stored['id']} ({stored['type']} received "
            f"at {iso(stored['recorded_at'])}), is not this row's: an event is missing or "
            "out of order"
        )
    given = {"type": stored["type"], "data": stored["data"], "actor": stored["actor"]}
    named = {**given, "occurred_at": iso(stored["occurred_at"])}
    # Each form parsed only when the one before lacks the row's digest; "now" (no
    # occurred_at given) first where it can be, as most events are sent.
    forms = [given, named] if stored["occurred_at"] == step["recorded_at"] else [named]
    for form in forms:
        event = _parsed(stored, form)
        if payload_digest(event_payload_json(event)) == step["payload_digest"]:
            return event
    return _parsed(stored, named)  # neither: the replay then shows the digest differ


def _parsed(stored: Row, payload: Mapping[str, Any]) -> ClinicalEvent:
    try:
        return parse_event(dict(payload))
    except InvalidEvent as exc:
        raise NotReplayable(
            f"the stored event (clinical_event {stored['id']}) does not parse: "
            f"{exc.field}: {exc.reason}"
        ) from None


def task_key_of(history: EpisodeHistory, step: Row) -> str:
    """The due item a ``task_done`` audit row marked done, or a ``task_reopened`` one
    reopened.

    Raises:
        NotReplayable: no item of the episode has the row's digest.
    """
    name = "reopen" if step["type"] == TASK_REOPENED else "task"
    for key in dict.fromkeys(t["key"] for t in history.tasks):
        if payload_digest({name: key}) == step["payload_digest"]:
            return str(key)
    raise NotReplayable(f"no due item of the episode is the one this row {name}s")


def timer_of(history: EpisodeHistory, step: Row) -> Row:
    """The ``due_timer`` row a timer's audit row (``step``) fired.

    Raises:
        NotReplayable: the episode has no such fired timer.
    """
    for timer in history.timers:
        content = {"kind": timer["kind"], "ref": timer["ref"], "payload": timer["payload"] or {}}
        if (
            timer["due_at"] == step["occurred_at"]
            and timer["fired_at"] == step["recorded_at"]
            and payload_digest(content) == step["payload_digest"]
        ):
            return timer
    raise NotReplayable(
        f"due_timer holds no timer of the episode due at {iso(step['occurred_at'])}, fired "
        f"at {iso(step['recorded_at'])}, with this row's payload"
    )


def _by_digest(candidates: list[_Input], as_json: Callable[[_Input], Any], step: Row) -> _Input:
    """The candidate whose JSON form has the row's digest; without one, the first (its
    replay then shows the digest differ)."""
    for candidate in candidates:
        if payload_digest(as_json(candidate)) == step["payload_digest"]:
            return candidate
    return candidates[0]
