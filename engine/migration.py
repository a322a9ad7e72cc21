"""Moving an episode to another pathway version: its record taken again under the new one.

An episode is the engine's answer to its recorded inputs: its opening, each event (accepted
or refused), each due item a coordinator marked done, each timer that fired. Migrating it
to another version (:func:`rerun`) takes the same inputs again, at the same instants, under
the target version's rules, from the opening on: the episode becomes what it would be had it
run on that version from the start, and its future (due items, timers, recommendations)
follows the corrected rules. Timers are the pathway's own: the target version books its own,
and each fires when the recorded one of the same kind, reference and due instant fired, or
at its due instant when the record has none.

What was decided stays decided. A recorded event the target version would decide the other
way (refuse an order that was placed, or accept one that was refused and never placed), or
a due item marked done that it has no open item for, makes the migration unsafe: the
episode is left on its version, with the reason (:attr:`Rerun.unsafe`).

:func:`changes` says what a migration changes, as a dry run shows it; :func:`decide_migration`
is the step itself, with its audit row (trigger ``migration``, both versions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from engine.clinic_time import to_utc
from engine.decision import (
    TASK_REOPENED,
    Decision,
    decide_event,
    decide_opening,
    decide_task_done,
    decide_task_reopened,
    decide_timer,
)
from engine.due import current_items
from engine.episode import EpisodeState, Step, TaskItem, TimerRequest, iso
from engine.errors import CarepathError
from engine.events import ClinicalEvent, Opening
from engine.pathway import PathwayCode
from engine.settings import PathwayDefaults

TimerKey = tuple[str, str, datetime]  # kind, ref, due instant


def timer_key(kind: str, ref: str, due_at: datetime) -> TimerKey:
    return kind, ref, to_utc(due_at)


@dataclass(frozen=True)
class RecordedStep:
    """One step of an episode's record after its opening, as a migration takes it again.

    Exactly one of ``event``, ``task`` (a due item marked done, or reopened: ``type`` says
    which) and ``timer`` is set.
    """

    seq: int
    at: datetime  # when the step was taken: the audit row's recorded_at
    type: str
    accepted: bool
    actor: str
    event: ClinicalEvent | None = None
    task: str | None = None
    timer: TimerKey | None = None


@dataclass
class Rerun:
    """An episode as its record makes it under a version: the state, its pending timers
    (in the order they fall due), and why the record does not hold there, if it does not."""

    state: EpisodeState
    timers: list[TimerRequest] = field(default_factory=list)
    unsafe: str | None = None


class _Unsafe(Exception):
    pass


class _Timers:
    """The pending timers of a re-run, in due order (ties: the order they were booked),
    each with its due instant in UTC and its key, worked out once."""

    def __init__(self) -> None:
        self.pending: list[tuple[datetime, TimerKey, TimerRequest]] = []

    @property
    def requests(self) -> list[TimerRequest]:
        return [timer for _, _, timer in self.pending]

    def absorb(self, step: Step) -> None:
        if "*" in step.cancel_refs:
            self.pending.clear()
        elif step.cancel_refs:
            refs = set(step.cancel_refs)
            self.pending = [entry for entry in self.pending if entry[2].ref not in refs]
        for timer in step.timers:
            key = timer_key(timer.kind, timer.ref, timer.due_at)
            self.pending.append((key[2], key, timer))
        self.pending.sort(key=lambda entry: entry[0])  # stable: booking order kept

    def take(self, key: TimerKey) -> TimerRequest | None:
        for index, (_, booked, timer) in enumerate(self.pending):
            if booked == key:
                del self.pending[index]
                return timer
        return None

    def next_due(self, by: datetime, reserved: dict[TimerKey, int]) -> TimerRequest | None:
        """The first timer due by ``by`` that no later recorded timer step fires."""
        for index, (due, key, timer) in enumerate(self.pending):
            if due > by:
                return None
            if not reserved.get(key):
                del self.pending[index]
                return timer
        return None


def rerun(
    code: PathwayCode,
    opening: Opening,
    episode_id: str,
    opened_at: datetime,
    opened_by: str | None,
    steps: Sequence[RecordedStep],
    until: datetime,
    version: str,
    defaults: PathwayDefaults,
) -> Rerun:
    """The episode its record makes under ``version``, with every timer due by ``until``
    fired.

    Args:
        code: the pathway's code (its rules are those of ``version``).
        opening: the opening as received (its version is replaced by ``version``).
        opened_at, opened_by: when and by whom it was opened (the ``open`` row's).
        steps: the steps after the opening, in the order the record has them.
        until: the end of the record (the last step's instant): timers due by then fire.
    """
    opened = decide_opening(
        code, replace(opening, pathway_version=version), episode_id, opened_at, defaults,
        opened_by,
    )  # fmt: skip
    state = opened.state
    timers = _Timers()
    timers.absorb(opened.step)
    reserved: dict[TimerKey, int] = {}
    for step in steps:
        if step.timer is not None:
            reserved[step.timer] = reserved.get(step.timer, 0) + 1
    try:
        for step in steps:
            state = _fire_due(code, state, timers, step.at, reserved, defaults)
            if step.timer is not None:
                reserved[step.timer] -= 1
                timer = timers.take(step.timer)
                if timer is not None:
                    state = _fire(code, state, timers, timer, step.at, defaults)
            else:
                state = _take_again(code, state, timers, step, defaults)
        state = _fire_due(code, state, timers, to_utc(until), {}, defaults)
    except _Unsafe as exc:
        return Rerun(state, timers.requests, str(exc))
    return Rerun(state, timers.requests)


def _fire_due(
    code: PathwayCode, state: EpisodeState, timers: _Timers, by: datetime,
    reserved: dict[TimerKey, int], defaults: PathwayDefaults,
) -> EpisodeState:  # fmt: skip
    while (timer := timers.next_due(by, reserved)) is not None:
        state = _fire(code, state, timers, timer, to_utc(timer.due_at), defaults)
    return state


def _fire(
    code: PathwayCode, state: EpisodeState, timers: _Timers, timer: TimerRequest, at: datetime,
    defaults: PathwayDefaults,
) -> EpisodeState:  # fmt: skip
    row = {"kind": timer.kind, "ref": timer.ref, "payload": timer.payload, "due_at": timer.due_at}
    step = decide_timer(code, state, row, at, defaults).step
    if step.noop:
        return state
    timers.absorb(step)
    return step.state


def _take_again(
    code: PathwayCode, state: EpisodeState, timers: _Timers, step: RecordedStep,
    defaults: PathwayDefaults,
) -> EpisodeState:  # fmt: skip
    """One recorded event or done item under the target version; :class:`_Unsafe` when it
    would not be decided as it was."""
    when = f"{step.type} recorded {iso(step.at)} (audit row {step.seq})"
    try:
        if step.task is not None:
            decide = decide_task_reopened if step.type == TASK_REOPENED else decide_task_done
            decided = decide(code, state, step.task, step.actor, step.at, defaults).step
        else:
            assert step.event is not None
            decided = decide_event(code, state, step.event, step.at, defaults).step
    except CarepathError as exc:
        raise _Unsafe(f"the {when} would not be taken: {exc}") from None
    if decided.accepted != step.accepted:
        if step.accepted:
            said = f"refuse it ({', '.join(decided.rules)}: {decided.reason})"
            raise _Unsafe(f"the {when} was accepted; {state.pathway_version} would {said}")
        raise _Unsafe(f"the {when} was refused; {state.pathway_version} would accept it")
    if not decided.accepted or decided.noop:
        return state
    timers.absorb(decided)
    return decided.state


# ------------------------------------------------------------------------------------------
# What a migration changes


@dataclass
class Changes:
    """What moving an episode to the target version changes, as a dry run lists it."""

    configuration: tuple[list[str], list[str]] | None = None
    due_added: list[dict[str, Any]] = field(default_factory=list)
    due_moved: list[dict[str, Any]] = field(default_factory=list)  # key, before, after
    due_cancelled: list[dict[str, Any]] = field(default_factory=list)
    timers_set: list[dict[str, Any]] = field(default_factory=list)
    timers_cancelled: list[dict[str, Any]] = field(default_factory=list)
    recommendations_added: list[str] = field(default_factory=list)
    recommendations_dropped: list[str] = field(default_factory=list)
    recommendations_reworded: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)  # the facts that differ, by name

    @property
    def any(self) -> bool:
        return any(value for value in vars(self).values())

    def as_json(self) -> dict[str, Any]:
        """What changes, and only that: a kind of change that is empty is left out."""
        out: dict[str, Any] = {name: value for name, value in vars(self).items() if value}
        if self.configuration is not None:
            before, after = self.configuration
            out["configuration"] = {"before": before, "after": after}
        return out


def changes(
    code: PathwayCode,
    before: EpisodeState,
    pending: Iterable[TimerRequest],
    after: Rerun,
    defaults: PathwayDefaults,
) -> Changes:
    """What the episode ``before`` (with its ``pending`` timers) becomes as ``after``."""
    found = Changes()
    state = after.state
    if before.configuration != state.configuration:
        found.configuration = (list(before.configuration), list(state.configuration))
    _due_changes(found, before.tasks, state.tasks)
    old = {_timer_identity(t): t for t in pending}
    new = {_timer_identity(t): t for t in after.timers}
    found.timers_set = [_timer_view(t) for k, t in new.items() if k not in old]
    found.timers_cancelled = [_timer_view(t) for k, t in old.items() if k not in new]
    was = {r["rule"]: r["text"] for r in code.recommendations(before, defaults)}
    now = {r["rule"]: r["text"] for r in code.recommendations(state, defaults)}
    found.recommendations_added = [rule for rule in now if rule not in was]
    found.recommendations_dropped = [rule for rule in was if rule not in now]
    found.recommendations_reworded = [r for r in now if r in was and now[r] != was[r]]
    names = dict.fromkeys([*before.facts, *state.facts])
    found.facts = [n for n in names if before.facts.get(n) != state.facts.get(n)]
    return found


def _due_changes(found: Changes, old: dict[str, TaskItem], new: dict[str, TaskItem]) -> None:
    was = {item.key: item for item in current_items(old) if item.is_open}
    now = {item.key: item for item in current_items(new) if item.is_open}
    for key, item in now.items():
        if key not in was:
            found.due_added.append(item.view())
        elif _when(item) != _when(was[key]):
            found.due_moved.append({"key": key, "before": was[key].view(), "after": item.view()})
    for key, item in was.items():
        if key not in now:
            found.due_cancelled.append(item.view())


def _when(item: TaskItem) -> tuple[Any, ...]:
    return item.rule, item.window_start, item.due_at, item.escalate_at, item.status


def _timer_identity(timer: TimerRequest) -> tuple[Any, ...]:
    return timer_key(timer.kind, timer.ref, timer.due_at), repr(sorted(timer.payload.items()))


def _timer_view(timer: TimerRequest) -> dict[str, Any]:
    return {"kind": timer.kind, "ref": timer.ref, "due_at": iso(to_utc(timer.due_at))}


def decide_migration(
    code: PathwayCode, before: EpisodeState, after: Rerun, actor: str, now: datetime,
    defaults: PathwayDefaults,
) -> Decision:  # fmt: skip
    """The migration as a step: the episode as ``after`` has it, its timers replaced by the
    re-run's, and its audit row (trigger ``migration``; the row's version is the target,
    the payload names both)."""
    assert after.unsafe is None, "an unsafe migration is not taken"
    state = after.state
    step = Step(state=state, accepted=True, timers=list(after.timers), cancel_refs=["*"])
    source, target = before.pathway_version, state.pathway_version
    audit = {
        "episode_id": before.id,
        "trigger": "migration",
        "type": f"{source}->{target}",
        "actor": actor,
        "occurred_at": now,
        "recorded_at": now,
        "accepted": True,
        "configuration_before": list(before.configuration),
        "configuration_after": state.configuration,
        "rules": [],
        "reason": f"migrated from {before.pathway_id} {source} to {target}",
        "payload": {"pathway_id": before.pathway_id, "from": source, "to": target},
        "pathway_id": state.pathway_id,
        "pathway_version": target,
    }
    return Decision(step, audit, code, defaults)
