"""What a step decides, whole: the engine's answer that the unit of work only writes.

Each way an episode moves — its opening, an event, a timer, a coordinator marking an item
done — goes through one function here that takes the pathway's code
(:class:`~engine.pathway.PathwayCode`), the episode as loaded, the input and the clock
reading, runs the pathway's step (under the rules of the episode's pinned version) and
returns a :class:`Decision`: the step (new state, timers to set and
cancel, due items), the facts of its audit row (rules, reason, the input's digest source,
pathway id and version) and, on demand, the episode view. :mod:`models.repository` loads,
calls one of these, writes the decision and commits; it decides nothing of the step's
meaning, so the same step taken again (a replay, a simulation) means the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.due import reopen_task
from engine.episode import EpisodeState, Step, iso
from engine.events import (
    ClinicalEvent,
    Opening,
    check_event_time,
    check_opening_time,
    event_payload_json,
)
from engine.handover import HANDOVER, hand_over
from engine.pathway import PathwayCode
from engine.settings import PathwayDefaults
from engine.view import episode_view

TASK_DONE, TASK_REOPENED = "task_done", "task_reopened"  # the worklist's steps, audited


@dataclass
class Decision:
    """One step's complete outcome.

    Attributes:
        step: the new state, the verdict, the timers to set and cancel.
        audit: the audit row's facts (:func:`models.audit.chain_row`'s keyword arguments);
            its ``payload`` is the input whose digest the row keeps.
        event: the event row as received (events only).
        outcome: a timer's outcome as its row keeps it (timers only).
    """

    step: Step
    audit: dict[str, Any]
    code: PathwayCode
    defaults: PathwayDefaults
    event: dict[str, Any] | None = None
    outcome: str | None = None
    _view: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def state(self) -> EpisodeState:
        return self.step.state

    @property
    def view(self) -> dict[str, Any]:
        """The episode view after the step, built once, when first asked for (the worker
        never asks: it answers nobody)."""
        if self._view is None:
            self._view = episode_view(self.code, self.step.state, self.defaults)
        return self._view


def _audit(
    before: EpisodeState | None, after: EpisodeState, step: Step, *, trigger: str, type_: str,
    actor: str, occurred_at: datetime, now: datetime, payload: Mapping[str, Any],
    reason: str | None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "episode_id": after.id,
        "trigger": trigger,
        "type": type_,
        "actor": actor,
        "occurred_at": occurred_at,
        "recorded_at": now,
        "accepted": step.accepted,
        "configuration_before": [] if before is None else list(before.configuration),
        "configuration_after": after.configuration,
        "rules": step.rules,
        "reason": reason,
        "payload": payload,
        # The version that decided the step: the episode's own.
        "pathway_id": after.pathway_id,
        "pathway_version": after.pathway_version,
    }


def opening_json(opening: Opening) -> dict[str, Any]:
    """The opening as received, in JSON form, for the audit digest."""
    return {
        "patient": opening.patient.model_dump(mode="json"),
        "onset": opening.onset.isoformat(),
        "enrolled_at": iso(opening.enrolled_at),
        "coordinator": opening.coordinator,
        "clinic_timezone": opening.clinic_timezone,
        # Named only when given, so that an opening recorded before teams keeps its digest.
        **({"team": opening.team} if opening.team is not None else {}),
    }


def decide_opening(
    code: PathwayCode, opening: Opening, episode_id: str, now: datetime,
    defaults: PathwayDefaults, actor: str | None,
) -> Decision:  # fmt: skip
    """Enrol a patient.

    Raises:
        InvalidEvent: onset or enrolment more than a day after ``now``.
    """
    check_opening_time(opening, now)
    step = code.open_episode(opening, episode_id, now, defaults)
    state = step.state
    audit = _audit(
        None, state, step, trigger="open", type_="open", actor=actor or "system",
        occurred_at=state.enrolled_at, now=now, payload=opening_json(opening), reason=None,
    )  # fmt: skip
    return Decision(step, audit, code, defaults)


def decide_event(
    code: PathwayCode, before: EpisodeState, event: ClinicalEvent, now: datetime,
    defaults: PathwayDefaults,
) -> Decision:  # fmt: skip
    """Apply one clinical event; a refusal is a decision too (the episode unchanged, the
    refusal on record).

    A handover is the engine's own (:mod:`engine.handover`): the pathway has no part in who
    is in charge.

    Raises:
        InvalidEvent: bad input (an override reason too short to document anything), or an
            ``occurred_at`` before onset or in the future.
    """
    if event.type != HANDOVER:
        code.check_event(before, event)
    occurred = event.occurred_at or now
    check_event_time(occurred, before.onset, now, before.tz)
    if event.type == HANDOVER:
        step = hand_over(before, event)
    else:
        step = code.apply_event(before, event, now, defaults)
    payload = event_payload_json(event)
    row = {
        "episode_id": before.id, "type": event.type, "data": payload["data"],
        "actor": event.actor, "occurred_at": occurred, "recorded_at": now,
        "accepted": step.accepted, "rules": list(step.rules), "reason": step.reason,
    }  # fmt: skip
    audit = _audit(
        before, step.state, step, trigger="event", type_=event.type, actor=event.actor,
        occurred_at=occurred, now=now, payload=payload, reason=step.reason,
    )  # fmt: skip
    return Decision(step, audit, code, defaults, event=row)


def decide_task_done(
    code: PathwayCode, before: EpisodeState, key: str, actor: str, now: datetime,
    defaults: PathwayDefaults,
) -> Decision:  # fmt: skip
    """A coordinator marks a due item done (the worklist's "done").

    Raises:
        InvalidEvent: the item is not open, or the episode has ended.
    """
    step = code.complete_task(before, key, now)
    audit = _audit(
        before, step.state, step, trigger="event", type_=TASK_DONE, actor=actor,
        occurred_at=now, now=now, payload={"task": key}, reason=None,
    )  # fmt: skip
    return Decision(step, audit, code, defaults)


def decide_task_reopened(
    code: PathwayCode, before: EpisodeState, key: str, actor: str, now: datetime,
    defaults: PathwayDefaults,
) -> Decision:  # fmt: skip
    """A coordinator reopens an item they marked done (the worklist's "reopen"), the
    engine's own step for any pathway (:func:`engine.due.reopen_task`).

    Raises:
        InvalidEvent: the item is not done, or no longer current, or the episode has ended.
    """
    step = reopen_task(before, key, now)
    audit = _audit(
        before, step.state, step, trigger="event", type_=TASK_REOPENED, actor=actor,
        occurred_at=now, now=now, payload={"reopen": key}, reason=None,
    )  # fmt: skip
    return Decision(step, audit, code, defaults)


def decide_timer(
    code: PathwayCode, before: EpisodeState, timer: Mapping[str, Any], now: datetime,
    defaults: PathwayDefaults,
) -> Decision:  # fmt: skip
    """Act on a due timer (``timer``: its row's ``kind``, ``ref``, ``payload``,
    ``due_at``); one whose episode has moved on is a no-op, on record as such."""
    kind, payload, due_at = timer["kind"], dict(timer["payload"] or {}), timer["due_at"]
    step = code.fire_timer(before, kind, payload, due_at, max(now, due_at), defaults)
    type_ = kind
    if "key" in payload:
        type_ = f"{kind}:{payload['key']}"
    elif "to" in payload:
        type_ = f"{kind}:{payload['to']}"
    audit = _audit(
        before, step.state, step, trigger="timer", type_=type_, actor="scheduler",
        occurred_at=due_at, now=now, reason=step.reason if step.noop else None,
        payload={"kind": kind, "ref": timer["ref"], "payload": payload},
    )  # fmt: skip
    outcome = (step.reason or "no-op") if step.noop else ", ".join(step.rules) or "fired"
    return Decision(step, audit, code, defaults, outcome=outcome)
