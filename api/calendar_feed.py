"""A coordinator's due items as an iCalendar feed, for the calendar they already use.

One VTODO per open item, with its due date, status, rule and a link to the episode's page
for the coordinator, built from the configured base URL (``CAREPATH_BASE_URL``), never
from the request's Host header; with no base URL configured the items carry no link. The
patient appears by reference only. The feed URL carries a token of the ``calendar`` role
for that coordinator (``carepath token create --role calendar --subject NAME``), which
opens this feed and nothing else and can be revoked on its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from icalendar import Calendar, Todo

from api.access import ACCESS_LOGGED, reads
from api.deps import ServicesDep
from api.problems import documented
from models.worklist import worklist

router = APIRouter(tags=["worklist"])
EXAMPLE = (
    "BEGIN:VCALENDAR\r\nPRODID:-//carepath//worklist//EN\r\nVERSION:2.0\r\n"
    "BEGIN:VTODO\r\nUID:task-1@carepath\r\nSUMMARY:first follow up (overdue): P-17\r\n"
    "DUE:20260203T090000Z\r\nPRIORITY:3\r\nSTATUS:NEEDS-ACTION\r\n"
    "DESCRIPTION:Rule FU-FIRST. Episode 583dab66-….\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
)
HORIZON = timedelta(days=90)
PRIORITY = {"escalated": 1, "overdue": 3, "due": 5, "upcoming": 9}


@router.get(
    "/calendar/{coordinator}.ics",
    summary="A coordinator's due items as iCalendar to-dos",
    response_class=Response,
    responses={
        200: {
            "description": "One VTODO per open due item, patient reference only",
            "content": {"text/calendar": {"example": EXAMPLE}},
        },
        **documented(401, 403, 422, 503),
    },
    openapi_extra=ACCESS_LOGGED,
)
def calendar_feed(
    coordinator: str,
    request: Request,
    parts: ServicesDep,
    token: Annotated[str | None, Query(description="the feed's calendar token")] = None,
) -> Response:
    if token is None:
        raise HTTPException(401, "the feed's token is required", {"WWW-Authenticate": "Bearer"})
    who = parts.tokens.principal(token)
    if who is None:
        raise HTTPException(401, "unknown or revoked token", {"WWW-Authenticate": "Bearer"})
    request.state.principal = who  # the actor of the feed's access-log record
    if not (who.role == "admin" or (who.role == "calendar" and who.subject == coordinator)):
        raise HTTPException(403, "this token does not open this feed")
    now = parts.clock.now()
    feed = Calendar()
    feed.add("prodid", "-//carepath//worklist//EN")
    feed.add("version", "2.0")
    feed.add("x-wr-calname", f"carepath: {coordinator}")
    items = worklist(parts.engine, coordinator, now, HORIZON)
    reads(request, (item["episode_id"] for item in items))
    for item in items:
        todo = Todo()
        todo.add("uid", f"task-{item['task_id']}@carepath")
        todo.add("dtstamp", now)
        todo.add(
            "summary", f"{item['key'].replace('_', ' ')} ({item['status']}): {item['patient_ref']}"
        )
        todo.add("due", datetime.fromisoformat(item["due_at"]))
        todo.add("priority", PRIORITY[item["status"]])
        todo.add("status", "IN-PROCESS" if item["acknowledged"] else "NEEDS-ACTION")
        if parts.web.base_url is not None:
            todo.add("url", f"{parts.web.base_url}/pages/episodes/{item['episode_id']}")
        todo.add("description", f"Rule {item['rule']}. Episode {item['episode_id']}.")
        feed.add_component(todo)
    return Response(feed.to_ical(), media_type="text/calendar; charset=utf-8")
