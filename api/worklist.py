"""For care coordinators: their worklist, and acknowledging or completing an item."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ValidationError

from api.access import ACCESS_LOGGED, reads
from api.care_team import check_item, scope
from api.deps import ServicesDep, require
from api.problems import documented
from api.schemas import (
    Acknowledged,
    Completed,
    Contacted,
    ContactIn,
    DoneIn,
    Severity,
    Worklist,
)
from api.tokens import Principal
from api.writes import (
    JsonBody,
    KeyHeader,
    OptionalJsonBody,
    answer,
    documented_body,
    json_object,
    keyed_answer,
    keyed_write,
    send,
)
from engine.definition import RULE_ID
from engine.episode import SEVERITIES
from engine.errors import InvalidEvent
from engine.events import check_payload_text
from models.idempotency import Answer, KeyedWrite
from models.store import Store
from models.teams import Scope
from models.worklist import (
    Filters,
    Position,
    Queue,
    acknowledge,
    find_task,
    log_contact,
    record_action,
    worklist_page,
)

router = APIRouter(tags=["worklist"])
Coordinator = Annotated[Principal, Depends(require("coordinator"))]
WINDOW = re.compile(r"([1-9]\d?)d")
# Ids are 32-bit integers in the database: a larger number cannot name an item.
TaskId = Annotated[int, Path(ge=1, le=2**31 - 1)]
OpenStatus = Literal["upcoming", "due", "overdue", "escalated"]
# Items a coordinator says the outcome of when marking them done.
NEEDS_OUTCOME = ("emergency", "urgent", "referral")
# Where an episode's referral stands while it is still to be made.
PENDING_REFERRAL = ("due", "overdue")
Body = TypeVar("Body", bound=BaseModel)


@router.get(
    "/worklist",
    summary="A coordinator's open due items, the most pressing first",
    response_model=None,
    responses={200: {"model": Worklist}, **documented(401, 403, 422, 503)},
    openapi_extra=ACCESS_LOGGED,
)
def read_worklist(
    request: Request,
    parts: ServicesDep,
    who: Coordinator,
    coordinator: Annotated[
        str | None,
        Query(description="whose list (default: the token's subject, with the lists they "
                          "cover); another's: an admin, or the colleague covering it"),
    ] = None,  # fmt: skip
    team: Annotated[
        str | None,
        Query(description="a care team's list: every item of its episodes, or with "
                          "unassigned=true its unassigned queue", max_length=128),
    ] = None,  # fmt: skip
    unassigned: Annotated[
        bool,
        Query(
            description="the unassigned queue instead: items of episodes in nobody's charge, "
            "of the team named or, without one, of no team's (open to every coordinator)"
        ),
    ] = False,  # fmt: skip
    window: Annotated[str, Query(description="how far ahead upcoming items show, e.g. 7d")] = "7d",
    sort: Annotated[
        Literal["urgency", "due"],
        Query(
            description="urgency: the most severe first, then the nearest deadline; due: by "
            "deadline alone"
        ),
    ] = "urgency",  # fmt: skip
    status: Annotated[OpenStatus | None, Query(description="only items in this status")] = None,
    rule: Annotated[
        str | None, Query(description="only items the rule set", pattern=f"^{RULE_ID.pattern}$")
    ] = None,
    severity: Annotated[Severity | None, Query(description="only items this severe")] = None,
    patient_ref: Annotated[
        str | None, Query(description="only this patient's items", max_length=128)
    ] = None,
    with_snoozed: Annotated[
        bool, Query(description="snoozed items too (each says until when)")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Open items in urgency order (by default): severity first (an emergency above an
    urgent red flag, a referral deadline, a review and a routine follow-up), then the
    deadline, the most overdue first; escalated, overdue and due items, and those falling
    due within ``window``, a page at a time. Each item carries its severity, ``overdue_by``
    or ``due_in`` (ISO 8601 durations), its assignee, and its times in the clinic's time
    zone (``time_zone``). A coordinator's own list holds the lists they cover too; they
    open their teams' lists and unassigned queues, and no other coordinator's list."""
    queue = queue_for(who, scope(parts, who), coordinator, team, unassigned)
    match = WINDOW.fullmatch(window)
    if match is None:
        raise InvalidEvent("window", f"must be a number of days such as 7d, not {window!r}")
    now = parts.clock.now()
    days = timedelta(days=int(match.group(1)))
    filters = Filters(status, rule, None if severity is None else SEVERITIES.index(severity),
                      patient_ref, with_snoozed)  # fmt: skip
    after = position_of(cursor, sort)
    items, last = worklist_page(parts.engine, queue, now, days, limit, after, sort, filters)
    next_cursor = cursor_of(last) if last else None
    reads(request, (item["episode_id"] for item in items))
    name = queue.owners[0] if queue.owners else None
    return {"coordinator": name, "covering": list(queue.owners[1:]), "team": team,
            "as_of": now.isoformat(), "sort": sort, "items": items,
            "next_cursor": next_cursor}  # fmt: skip


def queue_for(
    who: Principal, reach: Scope | None, coordinator: str | None, team: str | None,
    unassigned: bool,
) -> Queue:  # fmt: skip
    """The list asked for, if ``who`` (reaching ``reach``: :func:`api.care_team.scope`)
    may open it.

    Raises:
        InvalidEvent: on ``unassigned``, asked with a coordinator.
        HTTPException: 403, another coordinator's list or another team's.
    """
    if unassigned and coordinator is not None:
        raise InvalidEvent("unassigned", "the unassigned queue is nobody's: leave coordinator out")
    if team is not None and reach is not None and team not in reach.teams:
        raise HTTPException(403, f"you are not in team {team!r}: an admin opens its list")
    if unassigned:
        return Queue(team=team)
    if coordinator is None and team is not None:
        return Queue(team=team, whole_team=True)
    name = coordinator or who.subject
    if reach is None:  # an admin: any coordinator's list, as it is
        return Queue((name,), team)
    if name == who.subject:
        return Queue((name, *sorted(reach.covering)), team)
    if name in reach.covering:
        return Queue((name,), team)
    raise HTTPException(403, "a coordinator opens their own list and those they cover only")


def cursor_of(position: Position) -> str:
    """Where the next page starts, as an opaque cursor."""
    text = f"{position.sort}|{position.rank}|{position.due_at.isoformat()}|{position.task_id}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def position_of(cursor: str | None, sort: str) -> Position | None:
    """The position a cursor of :func:`cursor_of` names, or 422 on ``cursor``."""
    if cursor is None:
        return None
    try:
        order, rank, due_at, task_id = (
            base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode().split("|")
        )
        position = Position(order, int(rank), datetime.fromisoformat(due_at), int(task_id))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        position = None
    if (
        position is None
        or position.due_at.tzinfo is None
        or not 0 <= position.rank < len(SEVERITIES)
        or not 0 < position.task_id < 2**31
    ):
        raise InvalidEvent("cursor", "not a cursor this API gave out")
    if position.sort != sort:
        raise InvalidEvent("cursor", f"a cursor of the list in {position.sort} order, not {sort}")
    return position


def own_task(parts: ServicesDep, who: Principal, task_id: int) -> dict[str, Any]:
    """The item, if ``who`` may work it: on their list, a list they cover, their team's
    or the clinic-wide unassigned queue (an admin: any).

    Raises:
        HTTPException: 404 no such item, 403 one outside their care team.
    """
    task = find_task(parts.engine, task_id)
    if task is None:
        raise HTTPException(404, f"no due item with id {task_id}")
    check_item(scope(parts, who), task)
    return task


@router.post(
    "/tasks/{task_id}/ack",
    summary="Acknowledge an item in its current status",
    response_model=None,
    responses={200: {"model": Acknowledged}, **documented(401, 403, 404, 422, 503)},
    openapi_extra=ACCESS_LOGGED,
)
def ack_task(
    task_id: TaskId,
    request: Request,
    parts: ServicesDep,
    who: Coordinator,
    idempotency_key: KeyHeader = None,
) -> Response:
    task = own_task(parts, who, task_id)
    reads(request, [task["episode_id"]])

    def respond(_: None) -> Answer:
        return answer(200, {"task_id": task_id, "status": task["status"], "acknowledged": True})

    keyed = keyed_write(request, who, idempotency_key, None, respond)
    acknowledge(parts.engine, task_id, who.subject, parts.clock.now(), keyed)
    return send(keyed_answer(keyed, None, respond))


@router.post(
    "/tasks/{task_id}/done",
    summary="Mark an item done, saying what came of it (audited)",
    response_model=None,
    responses={200: {"model": Completed}, **documented(401, 403, 404, 409, 413, 415, 422, 503)},
    openapi_extra=ACCESS_LOGGED,
)
def complete(
    task_id: TaskId,
    request: Request,
    parts: ServicesDep,
    who: Coordinator,
    body: OptionalJsonBody,
    idempotency_key: KeyHeader = None,
) -> Response:
    """The body, ``{"outcome", "note"}``, says what came of the item: required for an
    emergency, urgent or referral item, optional otherwise. A referral item is not done
    while its episode's referral is still due or overdue (409): recording the referral
    (``referral_sent``) closes it; until then it stays on the list."""
    task = own_task(parts, who, task_id)
    reads(request, [task["episode_id"]])
    given = parse_done(body)

    def respond(view: dict[str, Any]) -> Answer:
        return answer(200, {"task_id": task_id, "status": "done", "episode": view})

    keyed = keyed_write(request, who, idempotency_key, body, respond)
    view = mark_done(parts, who, task_id, task, given, keyed)
    return send(keyed_answer(keyed, view, respond))


def mark_done(
    parts: ServicesDep, who: Principal, task_id: int, task: dict[str, Any], given: DoneIn,
    keyed: KeyedWrite | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Close the item, with what came of it, in one transaction; refused (nothing changes)
    where closing it would silence a deadline the episode still shows.

    Raises:
        InvalidEvent: on ``outcome``, an emergency, urgent or referral item without one.
        HTTPException: 409, a referral item whose episode's referral is still pending.
    """
    severity = SEVERITIES[task["severity"]]
    if severity in NEEDS_OUTCOME and not given.outcome:
        raise InvalidEvent(
            "outcome", f"required for {'an' if severity[0] in 'aeiu' else 'a'} {severity} "
            "item: say what came of it (for example: seen in the emergency department)",
        )  # fmt: skip
    if severity == "referral" and task["referral"] in PENDING_REFERRAL:
        raise HTTPException(
            409, f"the episode's referral is still {task['referral']}: record the referral "
            "(referral_sent) when it is made, which closes this item; it stays on the list "
            "until then",
        )  # fmt: skip
    now = parts.clock.now()

    def outcome(store: Store) -> None:
        # Always on record: reopening takes back only what a coordinator marked done.
        record_action(store, task_id, "done", who.subject, given.outcome or "done",
                      given.note, now)  # fmt: skip

    return parts.repo.complete_task(
        task["episode_id"], task["key"], who.subject, now, keyed, also=outcome
    )


def parse_done(body: Any) -> DoneIn:
    """The body as what came of a done item (none: nothing said), or 422 naming the field."""
    return parsed_body(DoneIn, {} if body is None else body)


@router.post(
    "/tasks/{task_id}/contact",
    summary="Log a contact attempt on an item: its outcome and a note, with who and when",
    response_model=None,
    responses={200: {"model": Contacted}, **documented(401, 403, 404, 413, 415, 422, 503)},
    openapi_extra={**ACCESS_LOGGED, **documented_body({"no answer": {
        "summary": "Rang, no answer", "value": {"outcome": "no_answer", "note": "rang twice"}}})},
)  # fmt: skip
def contact(
    task_id: TaskId,
    request: Request,
    parts: ServicesDep,
    who: Coordinator,
    body: JsonBody,
    idempotency_key: KeyHeader = None,
) -> Response:
    """``outcome``: ``reached``, ``no_answer``, ``left_message`` or ``wrong_number``; the
    item shows its latest contact (outcome, note, who, when) in the worklist."""
    reads(request, [own_task(parts, who, task_id)["episode_id"]])
    given = parse_contact(body)
    now = parts.clock.now()
    last = {"outcome": given.outcome, "note": given.note, "by": who.subject,
            "at": now.isoformat()}  # fmt: skip

    def respond(_: None) -> Answer:
        return answer(200, {"task_id": task_id, "logged": True, "last_contact": last})

    keyed = keyed_write(request, who, idempotency_key, body, respond)
    log_contact(parts.engine, task_id, who.subject, given.outcome, given.note, now, keyed)
    return send(keyed_answer(keyed, None, respond))


def parse_contact(body: Any) -> ContactIn:
    """The body as a contact attempt, or 422 naming the field."""
    return parsed_body(ContactIn, body)


def parsed_body(model: type[Body], body: Any) -> Body:
    """The body as ``model``, or 422 naming the field (nothing is written)."""
    # Held to what both databases can store, as every event is.
    check_payload_text(json_object(body, "body"))
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in problem["loc"]) or "body"
        raise InvalidEvent(field, problem["msg"]) from None
