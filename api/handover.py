"""Claiming an item and handing it to a colleague: the episode changes hands, on record.

A patient has one coordinator: claiming an item of an episode in nobody's charge, or
assigning an item to a colleague, hands the whole episode over (its open items and those to
come), so that nobody chases half a patient (our default). Each is a ``handover`` event
(:mod:`engine.handover`) in the audit log, with who and when; one from someone no longer in
charge is refused, so two coordinators claiming the same item cannot both have it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from api.access import ACCESS_LOGGED, reads
from api.deps import ServicesDep
from api.problems import documented, refusal
from api.schemas import AssignIn, HandedOver
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
from engine.episode import Step
from engine.errors import InvalidEvent
from engine.events import parse_event
from models.idempotency import Answer, KeyedWrite
from models.teams import known_coordinator

router = APIRouter(tags=["worklist"])


@router.post(
    "/tasks/{task_id}/claim",
    summary="Take an unassigned item, and its patient, onto your own list",
    response_model=None,
    responses={200: {"model": HandedOver}, **documented(401, 403, 404, 409, 422, 503)},
    openapi_extra=ACCESS_LOGGED,
)
def claim(
    task_id: TaskId,
    request: Request,
    parts: ServicesDep,
    who: Coordinator,
    body: OptionalJsonBody,
    idempotency_key: KeyHeader = None,
) -> Response:
    """The item's episode, in nobody's charge, becomes yours: this item and the ones to
    come are on your list. 409 when it is in someone's charge (by now)."""
    task = own_task(parts, who, task_id)
    if task["owner"] is not None:
        raise HTTPException(409, f"the item is already on {task['owner']}'s list: ask them, or "
                                 "an admin, to assign it to you")  # fmt: skip
    return _hand_over(request, parts, who, task_id, task, who.subject, None, idempotency_key,
                      body)  # fmt: skip


@router.post(
    "/tasks/{task_id}/assign",
    summary="Hand an item, and its patient, to a colleague of the care team",
    response_model=None,
    responses={200: {"model": HandedOver}, **documented(401, 403, 404, 409, 413, 415, 422, 503)},
    openapi_extra={**ACCESS_LOGGED, **documented_body({"to sam": {
        "summary": "Hand over to a colleague", "value": {"to": "sam", "note": "Alex on leave"}}})},
)  # fmt: skip
def assign(
    task_id: TaskId,
    request: Request,
    parts: ServicesDep,
    who: Coordinator,
    body: JsonBody,
    idempotency_key: KeyHeader = None,
) -> Response:
    """``{"to": NAME, "note"?}``: the item's episode goes to NAME (a member of its team;
    without a team, any coordinator), with its open items and those to come."""
    task = own_task(parts, who, task_id)
    given = parsed_body(AssignIn, body)
    return _hand_over(request, parts, who, task_id, task, given.to, given.note,
                      idempotency_key, body)  # fmt: skip


def hand_over(
    parts: ServicesDep, who: Principal, task: dict[str, Any], to: str, note: str | None,
    keyed: KeyedWrite | None = None,
) -> tuple[Step, dict[str, Any]]:  # fmt: skip
    """The item's episode handed from whoever has it to ``to``: the step and the view.

    Raises:
        InvalidEvent: on ``to``, someone who cannot take it.
    """
    why_not = known_coordinator(parts.engine, to, task["team"])
    if why_not is not None:
        raise InvalidEvent("to", why_not)
    data = {"from": task["owner"], "to": to, **({"note": note} if note else {})}
    event = parse_event({"type": "handover", "data": data, "actor": who.subject})
    return parts.repo.apply_parsed(task["episode_id"], event, parts.clock.now(), None, keyed)


def _hand_over(
    request: Request, parts: ServicesDep, who: Principal, task_id: int, task: dict[str, Any],
    to: str, note: str | None, idempotency_key: str | None, body: Any,
) -> Response:  # fmt: skip
    reads(request, [task["episode_id"]])

    def respond(result: tuple[Step, dict[str, Any]]) -> Answer:
        step, view = result
        if not step.accepted:
            return answer(409, refusal([], step.reason, False, None), problem=True)
        return answer(200, {"task_id": task_id, "assignee": to, "episode": view})

    keyed = keyed_write(request, who, idempotency_key, body, respond)
    result = hand_over(parts, who, task, to, note, keyed)
    return send(keyed_answer(keyed, result, respond))
