"""Episodes over HTTP: open one, read one, list them, post clinical events, and page
through an episode's timeline and due items.

The writes take an ``Idempotency-Key`` (CONTRACT.md section 8) and read their JSON body
only once the caller's token has been checked (:mod:`api.writes`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Table, select
from starlette.concurrency import run_in_threadpool

from api.access import ACCESS_LOGGED, reads
from api.care_team import check_episode, episodes_within, scope
from api.deps import ServicesDep, require
from api.diagram import highlighted
from api.problems import documented, refusal
from api.schemas import DuePage, EpisodePage, EpisodeRead, EpisodeView, EventAnswer, TimelinePage
from api.tokens import Principal
from api.writes import (
    JsonBody,
    KeyHeader,
    answer,
    documented_body,
    json_object,
    keyed_answer,
    keyed_write,
    send,
)
from engine.episode import Step
from engine.errors import InvalidEvent
from engine.events import ClinicalEvent, HandoverData, parse_event, parse_opening
from engine.handover import HANDOVER
from models.db import read_only
from models.history import MAX_PAGE_SIZE, PAGE_SIZE, due_page, timeline_page
from models.idempotency import Answer
from models.repository import timeline_entry
from models.tables import Episode
from models.teams import known_coordinator, with_care_team

EPISODE = cast(Table, Episode.__table__)
router = APIRouter(tags=["episodes"])
Clinical = Annotated[Principal, Depends(require("service", "coordinator", "clinician"))]
# A clinician's decisions, which a coordinator's token may not record (our default, as
# CONTRACT.md section 9 lists them): orders, clearing or confirming a red flag, and any
# event that asks for an override. Coordinators record the rest (coordination events,
# assessments as the patient reports them, a red flag raised: escalating is always safe).
CLINICIAN_EVENTS = frozenset({"order", "red_flag_cleared", "red_flag_confirmed"})

OPENING_EXAMPLE = {
    "patient": {"ref": "P-17", "age": 52, "sex": "female", "prior_lbp": True},
    "onset": "2026-01-05",
    "enrolled_at": "2026-01-06T09:00:00Z",
    "coordinator": "alex",
    "pathway_version": "1.0.0",
}
EVENT_EXAMPLES = {
    "assessment": {
        "summary": "A follow-up visit",
        "value": {"type": "assessment", "data": {"vas_leg": 7, "odi": 44, "slr_positive": True}},
    },
    "mri": {
        "summary": "An MRI order (refused before six weeks without a red flag)",
        "value": {"type": "order", "data": {"kind": "mri"}},
    },
}
SUMMARY_COLUMNS = (
    "id", "patient_ref", "status", "phase", "management", "referral", "red_flag",
    "coordinator", "team", "version", "updated_at", "pathway_version",
)  # fmt: skip


@router.post(
    "/episodes",
    status_code=201,
    summary="Enrol a patient",
    response_model=None,
    responses={201: {"model": EpisodeView, "description": "The new episode"},
               **documented(401, 403, 413, 415, 422, 503)},
    openapi_extra=documented_body({"opening": {"summary": "A new patient",
                                               "value": OPENING_EXAMPLE}}),
)  # fmt: skip
def open_episode(
    request: Request,
    parts: ServicesDep,
    who: Clinical,
    body: JsonBody,
    idempotency_key: KeyHeader = None,
) -> Response:
    """The simulation's ``patient``, ``onset``, ``enrolled_at`` and ``coordinator``; answers
    the episode view. Timers and due items are set in the same transaction."""
    opening = parse_opening(json_object(body, "opening"))
    reach = scope(parts, who)
    if reach is not None:  # its care team now, to know whether it is theirs
        opening = with_care_team(parts.engine, opening)
    if reach is not None and not reach.sees(opening.coordinator, opening.team):
        raise HTTPException(403, "a coordinator enrols patients for their own care team: name "
                                 "yourself, a colleague you cover, or your team")  # fmt: skip

    def respond(view: dict[str, Any]) -> Answer:
        headers = {"Location": f"/episodes/{view['id']}", "ETag": f'"{view["version"]}"'}
        return answer(201, view, headers)

    keyed = keyed_write(request, who, idempotency_key, body, respond)
    view = parts.repo.open(opening, parts.clock.now(), actor=who.subject, keyed=keyed)
    return send(keyed_answer(keyed, view, respond))


@router.get(
    "/episodes/{episode_id}",
    summary="The episode view, with its most recent steps",
    response_class=JSONResponse,
    responses={200: {"model": EpisodeRead, "description": "The episode; ETag is its version"},
               **documented(401, 403, 404, 422, 500, 503)},
    openapi_extra=ACCESS_LOGGED,
)  # fmt: skip
async def read_episode(episode_id: str, parts: ServicesDep, who: Clinical) -> JSONResponse:
    """The episode view (CONTRACT.md section 3) and its 10 most recent steps, newest first;
    ``timeline_next_cursor`` pages through the rest (``/episodes/{id}/timeline``)."""
    # The busiest route: async, so the database read is the request's only hop to a thread,
    # and the view (plain JSON already) is written out as it is.
    if who.role == "coordinator":
        await run_in_threadpool(check_episode, parts, who, episode_id)
    view = await run_in_threadpool(parts.repo.view_with_timeline, episode_id)
    return JSONResponse(view, headers={"ETag": f'"{view["version"]}"'})


Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]


@router.get(
    "/episodes/{episode_id}/timeline",
    summary="The episode's steps, newest first, a page at a time",
    response_model=None,
    responses={200: {"model": TimelinePage}, **documented(401, 403, 404, 422, 500, 503)},
    openapi_extra=ACCESS_LOGGED,
)
def episode_timeline(
    episode_id: str, parts: ServicesDep, who: Clinical, cursor: Cursor = None,
    limit: PageSize = PAGE_SIZE,
) -> dict[str, Any]:  # fmt: skip
    """Every step from the audit log: events accepted and refused, timers, the opening."""
    check_episode(parts, who, episode_id)
    items, next_cursor = timeline_page(parts.engine, episode_id, cursor, limit)
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/episodes/{episode_id}/due",
    summary="The episode's due items, closed ones included, a page at a time",
    response_model=None,
    responses={200: {"model": DuePage}, **documented(401, 403, 404, 422, 500, 503)},
    openapi_extra=ACCESS_LOGGED,
)
def episode_due(
    episode_id: str,
    parts: ServicesDep,
    who: Clinical,
    status: Annotated[
        Literal["open", "closed"] | None,
        Query(description="open, or closed (done or cancelled); every item when left out"),
    ] = None,
    cursor: Cursor = None,
    limit: PageSize = PAGE_SIZE,
) -> dict[str, Any]:
    """Every due item the episode has had, newest first: the view lists only the open ones
    and the last closed one of each kind."""
    check_episode(parts, who, episode_id)
    items, next_cursor = due_page(parts.engine, episode_id, status, cursor, limit)
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/episodes/{episode_id}/diagram.svg",
    summary="The statechart with this episode's active states highlighted",
    response_class=Response,
    responses={
        200: {
            "description": "SVG; the active states are filled",
            "content": {
                "image/svg+xml": {"example": '<svg xmlns="http://www.w3.org/2000/svg">…</svg>'}
            },
        },
        **documented(401, 403, 404, 422, 500, 503),
    },
    openapi_extra=ACCESS_LOGGED,
)
def episode_diagram(episode_id: str, parts: ServicesDep, who: Clinical) -> Response:
    check_episode(parts, who, episode_id)
    view = parts.repo.view(episode_id)
    return Response(highlighted(view["configuration"]), media_type="image/svg+xml")


@router.get(
    "/episodes",
    summary="Episodes, filtered, a page at a time",
    response_model=None,
    responses={200: {"model": EpisodePage}, **documented(401, 403, 422, 503)},
    openapi_extra=ACCESS_LOGGED,
)
def list_episodes(
    request: Request,
    parts: ServicesDep,
    who: Clinical,
    status: Annotated[str | None, Query(examples=["active"])] = None,
    phase: Annotated[str | None, Query(examples=["subacute"])] = None,
    referral: Annotated[str | None, Query(examples=["overdue"])] = None,
    coordinator: Annotated[str | None, Query(examples=["alex"])] = None,
    red_flag: Annotated[bool | None, Query(examples=[True])] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Summaries in a stable order; ``next_cursor`` fetches the page after (null: the end).
    A coordinator's list holds their care team's episodes only."""
    query = select(*(EPISODE.c[name] for name in SUMMARY_COLUMNS)).order_by(EPISODE.c.id)
    within = episodes_within(scope(parts, who))
    if within is not None:
        query = query.where(within)
    filters = {"status": status, "phase": phase, "referral": referral,
               "coordinator": coordinator, "red_flag": red_flag}  # fmt: skip
    for name, value in filters.items():
        if value is not None:
            query = query.where(EPISODE.c[name] == value)
    if cursor is not None:
        query = query.where(EPISODE.c.id > _after(cursor))
    with read_only(parts.engine) as connection:
        rows = [dict(row) for row in connection.execute(query.limit(limit + 1)).mappings()]
    more = len(rows) > limit
    items = rows[:limit]
    for item in items:
        item["updated_at"] = item["updated_at"].isoformat()
    next_cursor = _cursor(items[-1]["id"]) if more else None
    reads(request, (item["id"] for item in items))
    return {"items": items, "next_cursor": next_cursor}


@router.post(
    "/episodes/{episode_id}/events",
    summary="Record a clinical event",
    response_model=None,
    responses={200: {"model": EventAnswer, "description": "Accepted: the episode and the step"},
               **documented(401, 403, 404, 409, 412, 413, 415, 422, 500, 503)},
    openapi_extra=documented_body(EVENT_EXAMPLES),
)  # fmt: skip
def post_event(
    episode_id: str,
    request: Request,
    parts: ServicesDep,
    who: Clinical,
    body: JsonBody,
    idempotency_key: KeyHeader = None,
    if_match: Annotated[
        str | None, Header(description="The version last read: 412 if it moved since")
    ] = None,
) -> Response:
    """Validated, applied and audited in one transaction. The actor is the token's subject.
    A refusal is recorded and answered 409 with the rules, whether a documented override
    would let it through, and when time lifts it."""
    event = parse_event({**json_object(body, "event"), "actor": who.subject})
    _may_record(who, event)
    check_episode(parts, who, episode_id)
    if event.type == HANDOVER:
        check_handover(parts, episode_id, event)
    now = parts.clock.now()

    def respond(result: tuple[Step, dict[str, Any]]) -> Answer:
        step, view = result
        etag = {"ETag": f'"{view["version"]}"'}
        if not step.accepted:
            problem = refusal(list(step.rules), step.reason, step.override_possible,
                              step.eligible_from)  # fmt: skip
            return answer(409, problem, etag, problem=True)
        transition = timeline_entry(step, event.occurred_at or now, "event", event.type, view)
        return answer(200, {"episode": view, "transition": transition}, etag)

    keyed = keyed_write(request, who, idempotency_key, body, respond)
    result = parts.repo.apply_parsed(episode_id, event, now, _version(if_match), keyed)
    return send(keyed_answer(keyed, result, respond))


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InvalidEvent("If-Match", f"must be an episode version number, not {if_match!r}")
    return int(text)


def _cursor(episode_id: str) -> str:
    return base64.urlsafe_b64encode(episode_id.encode()).decode()


def _after(cursor: str) -> str:
    try:
        after = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        after = ""
    if not after:
        raise InvalidEvent("cursor", "not a cursor this API gave out")
    return after


def _may_record(who: Principal, event: ClinicalEvent) -> None:
    """Refuse a coordinator's token a clinician's decision (403, nothing recorded)."""
    if who.role != "coordinator":
        return
    if event.type in CLINICIAN_EVENTS:
        raise HTTPException(403, f"{event.type} is a clinician's decision: a clinician's token "
                                 "records it")  # fmt: skip
    if getattr(event.data, "override_reason", None):
        raise HTTPException(403, "an override is a clinician's decision: a clinician's token "
                                 "records it")  # fmt: skip


def check_handover(parts: ServicesDep, episode_id: str, event: ClinicalEvent) -> None:
    """Refuse a handover to someone who cannot take the episode (422 on ``data.to``)."""
    data = event.data
    assert isinstance(data, HandoverData)
    with read_only(parts.engine, single_statement=True) as connection:
        team = connection.execute(
            select(EPISODE.c.team).where(EPISODE.c.id == episode_id)
        ).scalar()
    why_not = None if data.to is None else known_coordinator(parts.engine, data.to, team)
    if why_not is not None:
        raise InvalidEvent("data.to", why_not)
