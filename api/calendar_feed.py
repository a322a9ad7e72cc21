"""A coordinator's due items as an iCalendar feed, for the calendar they already use.

``kind=events`` (the default) gives one all-day VEVENT per open item on its due date in the
clinic's calendar, an overdue item moved to today and marked so, each with a reminder
(VALARM) at nine in the morning: the event form Google Calendar, Outlook and Apple Calendar
show in a subscribed calendar. ``kind=todos`` gives one VTODO per item instead, for clients
that list to-dos. The feed asks to be refreshed hourly (``REFRESH-INTERVAL``).

A summary names a neutral item kind (its severity: "Emergency item", "Referral deadline",
"Review"...) and the patient's reference, never a diagnosis, drug or rule that would imply
one: a calendar is shared and synced further than the clinic. Each item links to its place
on the episode's page, built from the configured base URL (``CAREPATH_BASE_URL``), never
from the request's Host header; with no base URL configured the items carry no link. The
feed URL carries a token of the ``calendar`` role for that coordinator (``carepath token
create --role calendar --subject NAME``), which opens this feed and nothing else and can be
revoked on its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, Response
from icalendar import Alarm, Calendar, Event, Todo

from api.access import ACCESS_LOGGED, reads
from api.deps import ServicesDep
from api.problems import documented
from models.teams import scope_of
from models.worklist import Queue, worklist

router = APIRouter(tags=["worklist"])
EXAMPLE = (
    "BEGIN:VCALENDAR\r\nPRODID:-//carepath//worklist//EN\r\nVERSION:2.0\r\n"
    "REFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n"
    "BEGIN:VEVENT\r\nUID:task-1@carepath\r\nSUMMARY:Overdue: Follow-up: P-17\r\n"
    "DTSTART;VALUE=DATE:20260205\r\nDTEND;VALUE=DATE:20260206\r\n"
    "DESCRIPTION:Follow-up for P-17\\, overdue by P2DT6H (due 2026-02-03).\r\n"
    "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:PT9H\r\nEND:VALARM\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)
HORIZON = timedelta(days=90)
REFRESH = timedelta(hours=1)
REMINDER = timedelta(hours=9)  # into the item's day: nine in the morning, the clinic's
PRIORITY = {"escalated": 1, "overdue": 3, "due": 5, "upcoming": 9}
# What a calendar may say an item is: how pressing, never what for.
KIND = {
    "emergency": "Emergency item",
    "urgent": "Urgent item",
    "referral": "Referral deadline",
    "review": "Review",
    "routine": "Follow-up",
}


@router.get(
    "/calendar/{coordinator}.ics",
    summary="A coordinator's due items as iCalendar events (or to-dos)",
    response_class=Response,
    responses={
        200: {
            "description": "One all-day VEVENT (or VTODO) per open due item, patient "
            "reference and a neutral item kind only",
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
    kind: Annotated[
        Literal["events", "todos"],
        Query(description="events: all-day events with a reminder; todos: to-dos"),
    ] = "events",
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
    feed.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    feed.add("x-published-ttl", REFRESH)
    # The coordinator's list with those they cover, as their worklist holds them.
    covering = scope_of(parts.engine, coordinator, now).covering
    items = worklist(parts.engine, Queue((coordinator, *sorted(covering))), now, HORIZON)
    reads(request, (item["episode_id"] for item in items))
    for item in items:
        component = _event(item, now) if kind == "events" else _todo(item)
        component.add("uid", f"task-{item['task_id']}@carepath")
        component.add("dtstamp", now)
        if parts.web.base_url is not None:
            page = f"{parts.web.base_url}/pages/episodes/{item['episode_id']}"
            component.add("url", f"{page}#task-{item['key']}")
        feed.add_component(component)
    return Response(feed.to_ical(), media_type="text/calendar; charset=utf-8")


def _name(item: dict[str, Any]) -> str:
    return f"{KIND[item['severity']]}: {item['patient_ref']}"


def _event(item: dict[str, Any], now: datetime) -> Event:
    """The item on its due day in the clinic's calendar; an overdue one on today, marked."""
    clinic = ZoneInfo(item["time_zone"])
    due = datetime.fromisoformat(item["due_at"]).astimezone(clinic).date()
    today = now.astimezone(clinic).date()
    late = item["overdue_by"] is not None
    day = max(due, today) if late else due
    event = Event()
    event.add("summary", ("Overdue: " if late else "") + _name(item))
    event.add("dtstart", day)
    event.add("dtend", day + timedelta(days=1))
    event.add("transp", "TRANSPARENT")  # a reminder, not time the coordinator is busy
    when = f"overdue by {item['overdue_by']}" if late else f"due in {item['due_in']}"
    event.add("description", f"{KIND[item['severity']]} for {item['patient_ref']}, {when} "
                             f"(due {due.isoformat()}).")  # fmt: skip
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", _name(item))
    alarm.add("trigger", REMINDER)
    event.add_component(alarm)
    return event


def _todo(item: dict[str, Any]) -> Todo:
    todo = Todo()
    todo.add("summary", f"{_name(item)} ({item['status']})")
    todo.add("due", datetime.fromisoformat(item["due_at"]))
    todo.add("priority", PRIORITY[item["status"]])
    todo.add("status", "IN-PROCESS" if item["acknowledged"] else "NEEDS-ACTION")
    todo.add("description", f"{KIND[item['severity']]} for {item['patient_ref']}.")
    return todo
