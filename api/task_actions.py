"""Snoozing an item, reopening one marked done, and acknowledging several at once: the
worklist's actions that keep a deadline from being silenced by accident.

- A snooze takes the item off the list until a time, with a reason, and only while it stays
  in the status it was snoozed in: one that falls due, overdue or escalated meanwhile is
  back at once, and its reminders are never held. An emergency or urgent item cannot be
  snoozed past its deadline; no item for more than :data:`LONGEST_SNOOZE` (our default).
- Reopening takes back an item a coordinator marked done (the undo of "done"): open again
  in the status its dates give it now, its reminders and escalation with it.
- Acknowledging many is all or nothing: every item must be within the caller's reach.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request, Response

from api.access import ACCESS_LOGGED, reads
from api.care_team import check_item, scope
from api.deps import ServicesDep
from api.problems import documented
from api.schemas import (
    AcknowledgedMany,
    AcknowledgeIn,
    Reopened,
    ReopenIn,
    Snoozed,
    SnoozeIn,
)
from api.tokens import Principal
from api.worklist import Coordinator, TaskId, own_task, parsed_body
from api.writes import (
    JsonBody,
    KeyHeader,
    OptionalJsonBody,
    answer,
    documented_body,
    keyed_answer,
    keyed_write,
    send,
)
from engine.episode import OPEN_TASK_STATUSES, SEVERITIES
from engine.errors import InvalidEvent
from models.idempotency import Answer, KeyedWrite
from models.store import Store
from models.worklist import acknowledge, find_task, last_action, record_action, snooze, wake

router = APIRouter(tags=["worklist"])
LONGEST_SNOOZE = timedelta(days=30)
# Items that wait for nothing past their deadline.
HELD_TO_DEADLINE = ("emergency", "urgent")


@router.post(
    "/tasks/{task_id}/snooze",
    summary="Take an item off the list until a time, saying why",
    response_model=None,
    responses={200: {"model": Snoozed}, **documented(401, 403, 404, 409, 413, 415, 422, 503)},
    openapi_extra={**ACCESS_LOGGED, **documented_body({"after lunch": {
        "summary": "Call back this afternoon",
        "value": {"until": "2026-02-05T14:00:00-06:00",
                  "reason": "patient asked to be called after 2"}}})},
)  # fmt: skip
def snooze_task(
    task_id: TaskId,
    request: Request,
    parts: ServicesDep,
    who: Coordinator,
    body: JsonBody,
    idempotency_key: KeyHeader = None,
) -> Response:
    """``{"until", "reason", "note"?}``: off the list until ``until``, while it stays in
    its status (one that falls due, overdue or escalated is back at once). An emergency or
    urgent item is not snoozed past its deadline; no item for more than 30 days (422 on
    ``until``)."""
    task = own_task(parts, who, task_id)
    reads(request, [task["episode_id"]])
    given = parsed_body(SnoozeIn, body)
    now = parts.clock.now()
    check_snooze(task, given.until, now)
    until = given.until.astimezone(ZoneInfo(task["clinic_timezone"]))

    def respond(_: None) -> Answer:
        return answer(200, {"task_id": task_id, "status": task["status"],
                            "snoozed_until": until.isoformat()})  # fmt: skip

    keyed = keyed_write(request, who, idempotency_key, body, respond)
    snooze(parts.engine, task_id, task["status"], who.subject, given.until, given.reason,
           given.note, now, keyed)  # fmt: skip
    return send(keyed_answer(keyed, None, respond))


def check_snooze(task: dict[str, Any], until: datetime, now: datetime) -> None:
    """Refuse a snooze that would hide what must not wait.

    Raises:
        HTTPException: 409, the item is closed.
        InvalidEvent: on ``until``: not later than now, too far off, or past an emergency's
            or urgent item's deadline.
    """
    if task["status"] not in OPEN_TASK_STATUSES:
        raise HTTPException(409, f"the item is {task['status']}: only an open item is snoozed")
    if until <= now:
        raise InvalidEvent("until", "must be later than now")
    if until > now + LONGEST_SNOOZE:
        raise InvalidEvent("until", "an item is snoozed for 30 days at most")
    severity = SEVERITIES[task["severity"]]
    if severity in HELD_TO_DEADLINE and until > task["due_at"]:
        deadline = task["due_at"].astimezone(ZoneInfo(task["clinic_timezone"]))
        passed = "has passed" if task["due_at"] <= now else "would pass"
        raise InvalidEvent(
            "until", f"an {severity} item is not snoozed past its deadline, which {passed} "
            f"({deadline.isoformat()}): act on it now",
        )  # fmt: skip


@router.post(
    "/tasks/{task_id}/reopen",
    summary="Take back an item marked done: open again, audited",
    response_model=None,
    responses={200: {"model": Reopened}, **documented(401, 403, 404, 409, 413, 415, 422, 503)},
    openapi_extra=ACCESS_LOGGED,
)
def reopen(
    task_id: TaskId,
    request: Request,
    parts: ServicesDep,
    who: Coordinator,
    body: OptionalJsonBody,
    idempotency_key: KeyHeader = None,
) -> Response:
    """``{"reason"?}``: the item a coordinator marked done is open again, in the status
    its dates give it now (overdue or escalated if its deadline passed), with its reminders.
    409 for an item not marked done by a coordinator (the pathway closed it)."""
    task = own_task(parts, who, task_id)
    reads(request, [task["episode_id"]])
    given = parsed_body(ReopenIn, {} if body is None else body)

    def respond(view: dict[str, Any]) -> Answer:
        item = next(i for i in view["due"] if i["key"] == task["key"])
        return answer(200, {"task_id": task_id, "status": item["status"], "episode": view})

    keyed = keyed_write(request, who, idempotency_key, body, respond)
    view = take_back(parts, who, task_id, task, given.reason, keyed)
    return send(keyed_answer(keyed, view, respond))


def take_back(
    parts: ServicesDep, who: Principal, task_id: int, task: dict[str, Any],
    reason: str | None, keyed: KeyedWrite | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Reopen the item with why, in one transaction; the episode view after it.

    Raises:
        HTTPException: 409, the item was not marked done by a coordinator.
    """
    last = last_action(parts.engine, task_id)
    if task["status"] != "done" or last is None or last["kind"] != "done":
        raise HTTPException(409, "only an item a coordinator marked done is reopened: this "
                                 f"one is {task['status']}")  # fmt: skip
    now = parts.clock.now()

    def why(store: Store) -> None:
        record_action(store, task_id, "reopen", who.subject, reason or "reopened", None, now)
        wake(store, task_id)

    return parts.repo.reopen_task(task["episode_id"], task["key"], who.subject, now, keyed,
                                  also=why)  # fmt: skip


@router.post(
    "/tasks/ack",
    summary="Acknowledge several items at once (all or none)",
    response_model=None,
    responses={200: {"model": AcknowledgedMany},
               **documented(401, 403, 404, 413, 415, 422, 503)},
    openapi_extra={**ACCESS_LOGGED, **documented_body({"three": {
        "summary": "Three items seen", "value": {"task_ids": [12, 14, 15]}}})},
)  # fmt: skip
def acknowledge_many(
    request: Request,
    parts: ServicesDep,
    who: Coordinator,
    body: JsonBody,
    idempotency_key: KeyHeader = None,
) -> Response:
    """``{"task_ids": [...]}``, up to 100: each seen in its current status. One missing
    (404) or out of reach (403) and none is acknowledged."""
    ids = list(dict.fromkeys(parsed_body(AcknowledgeIn, body).task_ids))
    reads(request, check_reach(parts, who, ids))

    def respond(_: None) -> Answer:
        return answer(200, {"acknowledged": ids})

    keyed = keyed_write(request, who, idempotency_key, body, respond)
    acknowledge(parts.engine, ids, who.subject, parts.clock.now(), keyed)
    return send(keyed_answer(keyed, None, respond))


def check_reach(parts: ServicesDep, who: Principal, task_ids: list[int]) -> list[str]:
    """Every item exists and is within ``who``'s reach; their episodes.

    Raises:
        HTTPException: 404 naming the first missing item, 403 the first out of reach.
    """
    reach = scope(parts, who)
    episodes: list[str] = []
    for task_id in task_ids:
        task = find_task(parts.engine, task_id)
        if task is None:
            raise HTTPException(404, f"no due item with id {task_id}: none was acknowledged")
        check_item(reach, task)
        episodes.append(task["episode_id"])
    return list(dict.fromkeys(episodes))
