"""Due items (tasks) and the timers that move them.

A task is what a person must do by a date. Its status follows the calendar: upcoming until
its window opens, due, overdue once the deadline passes, escalated after the rule's grace.
Each open task has one pending timer, at its next boundary; the timer re-reads the calendar
and books the next one. Deadlines already past when a task is created come up at once as
due, by the end of that day (our default for late enrolment), and only once.

Items are kept for good, but an episode works with its *current* items only
(:func:`current_items`): every open one and, of each kind, the one closed last. That is all
any rule reads (a closed referral or six-week review, never an older periodic review), what
a step loads and what the episode view's ``due`` lists, so neither grows with the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from engine.clinic_time import next_day_start
from engine.episode import SEVERITIES, EpisodeState, Step, TaskItem, TimerRequest
from engine.errors import InvalidEvent


@dataclass(frozen=True)
class Urgency:
    """How pressing an item is, as its pathway's rule says.

    Attributes:
        severity: its rank in :data:`~engine.episode.SEVERITIES` (0, an emergency, first):
            what the coordinator's queue orders by before the deadline.
        grace: how long after its deadline it escalates.
    """

    severity: int
    grace: timedelta

    def __post_init__(self) -> None:
        if not 0 <= self.severity < len(SEVERITIES):
            raise ValueError(f"severity must be a rank of {SEVERITIES}, not {self.severity}")


def task_ref(key: str) -> str:
    return f"task:{key}"


def open_task(
    state: EpisodeState,
    step: Step,
    now: datetime,
    *,
    key: str,
    rule: str,
    urgency: Urgency,
    due_at: datetime,
    window_start: datetime | None = None,
    past_due_stays: bool = False,
) -> TaskItem:
    """Create (or move) an open due item and book the timer for its next boundary; with
    ``past_due_stays``, a ``due_at`` already past stays as it is (the item is overdue)."""
    if due_at <= now and not past_due_stays:
        # Already past when first known: due at once, by the end of the day, once.
        window_start, due_at = now, next_day_start(now, state.tz)
    task = TaskItem(
        key=key,
        rule=rule,
        due_at=due_at,
        window_start=window_start,
        escalate_at=due_at + urgency.grace,
        severity=urgency.severity,
    )
    task.status = task.status_at(now)
    if key in state.tasks:  # moving an item: drop the timer booked for its old dates
        step.cancel_refs.append(task_ref(key))
    state.tasks[key] = task
    _book_next(task, step, now)
    return task


def _book_next(task: TaskItem, step: Step, now: datetime) -> None:
    boundary = task.next_boundary(now)
    if boundary is not None:
        step.timers.append(TimerRequest("task", boundary, task_ref(task.key), {"key": task.key}))


def refresh_task(task: TaskItem, step: Step, now: datetime) -> bool:
    """Bring an open task's status up to ``now``; True when it changed."""
    before = task.status
    task.status = task.status_at(now)
    _book_next(task, step, now)
    return task.status != before


def finish_task(state: EpisodeState, step: Step, key: str, now: datetime, status: str) -> bool:
    """Mark an open task done or cancelled and drop its pending timer."""
    task = state.tasks.get(key)
    if task is None or not task.is_open:
        return False
    task.status = status
    task.completed_at = now
    step.cancel_refs.append(task_ref(key))
    return True


def reopen_task(state: EpisodeState, key: str, now: datetime) -> Step:
    """A coordinator takes back an item they marked done: it is open again, in the status
    its dates give it now (overdue or escalated, if its deadline passed meanwhile, which the
    reminders then say), its timer booked again. Any pathway's items reopen alike.

    Raises:
        InvalidEvent: the episode has ended, or the item is not one done and still current
            (a later item of its kind has replaced it).
    """
    if state.is_final:
        raise InvalidEvent("task", f"the episode is {state.status}: its items are closed")
    task = state.tasks.get(key)
    if task is None or task.status != "done":
        raise InvalidEvent("task", f"{key} is not an item marked done that can be reopened")
    kind = item_kind(key)
    later = [t.key for t in state.tasks.values() if t.is_open and item_kind(t.key) == kind]
    if later:
        raise InvalidEvent("task", f"{key} has been replaced by {later[0]}, which is open")
    step = Step(state=state.clone(), accepted=True)
    task = step.state.tasks[key]
    task.completed_at = None
    task.status = task.status_at(now)
    _book_next(task, step, now)
    step.add_rule(task.rule)
    return step


def open_tasks(state: EpisodeState, prefix: str = "") -> list[TaskItem]:
    return [t for t in state.tasks.values() if t.is_open and t.key.startswith(prefix)]


def item_kind(key: str) -> str:
    """The kind of item a key names: a numbered key (``periodic_review_3``) is one of a
    series (``periodic_review``); any other key is the one item of its kind."""
    return key.rstrip("0123456789_")


def current_items(tasks: Mapping[str, TaskItem]) -> list[TaskItem]:
    """Every open item, and of each kind the closed one that closed last, in ``tasks``'s
    order: the items the rules read, a step loads and the view lists (our default for the
    view's recently closed items: one per kind).

    A kind's other closed items (earlier periodic reviews) are history: no rule reads them,
    and their keys are never used again (a series numbers its items onwards).
    """
    closed = [item_kind(t.key) for t in tasks.values() if not t.is_open]
    if len(set(closed)) == len(closed):  # the usual case: nothing superseded
        return list(tasks.values())
    last_closed: dict[str, tuple[tuple[datetime, int], str]] = {}
    for position, task in enumerate(tasks.values()):
        if task.is_open:
            continue
        kind = item_kind(task.key)
        # When it closed (an item closed without saying when sorts first), then the order.
        order = (task.completed_at or datetime.min.replace(tzinfo=UTC), position)
        if kind not in last_closed or order >= last_closed[kind][0]:
            last_closed[kind] = (order, task.key)
    kept = {key for _, key in last_closed.values()}
    return [t for t in tasks.values() if t.is_open or t.key in kept]
