"""The coordinator's pages: sign in, the worklist, an episode. Server-rendered, no script.

Sign-in takes the coordinator's token once and opens a server-side session
(:mod:`api.sessions`); the cookie (HttpOnly, SameSite=Strict, Path=/, Secure over TLS)
names the session and never holds the token. Every form (sign-in, sign-out, acknowledge,
done) renders ``csrf_field()`` from ``templates/_forms.html`` and its route declares
:func:`api.security.checked_form`: the post's origin and CSRF token are checked before the
route runs, and a refused form is a 403 page, with nothing changed. A new form does the
same two things.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import Field

import pathways
from api.access import ACCESS_LOGGED, reads
from api.care_team import check_episode, check_item, scope
from api.deps import CHALLENGE, NotSignedIn, ServicesDep, require
from api.handover import hand_over
from api.problems import problem
from api.schemas import AssignIn, Severity, SnoozeIn
from api.security import FormRefused, WebSettings, checked_form, cookie_is_secure, form_token
from api.sessions import SESSION_COOKIE, SIGNIN_COOKIE
from api.sign_in_links import PATH as LINK_PATH
from api.sign_in_links import redeem
from api.task_actions import check_reach, check_snooze, take_back
from api.tokens import Principal, principal_for
from api.wording import CONTACT_WORDS, RED_FLAGS, clinic_time, how_late, standing
from api.worklist import (
    NEEDS_OUTCOME,
    OpenStatus,
    TaskId,
    cursor_of,
    mark_done,
    own_task,
    parse_contact,
    parse_done,
    parsed_body,
    position_of,
    queue_for,
)
from engine.definition import RULE_ID, rules_for
from engine.episode import OPEN_TASK_STATUSES, SEVERITIES
from engine.errors import InvalidEvent
from engine.settings import PathwayDefaults
from models.history import clinic_timezone, timeline_page
from models.teams import Scope, members, teams_of
from models.worklist import (
    Filters,
    Queue,
    acknowledge,
    find_task,
    log_contact,
    snooze,
    worklist_page,
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
Coordinator = Annotated[Principal, Depends(require("coordinator"))]
SignedInForm = Depends(checked_form(SESSION_COOKIE))
SignInForm = Depends(checked_form(SIGNIN_COOKIE))
PAGE_ROLES = ("coordinator", "admin")
WINDOW_DAYS = 7
PAGE_ITEMS = 50  # items a page of the list shows
PLACE_KEYS = ("coordinator", "team", "patient_ref", "status", "rule", "severity", "sort",
              "cursor")  # fmt: skip
SNOOZE_HOURS = (1, 4, 24, 72, 168)  # the page's choices: an hour to a week
ACTION_WORDS = {"snooze": "Snoozed", "done": "Marked done", "reopen": "Reopened"}
TIMELINE_STEPS = 50  # an episode page's steps; "Earlier steps" shows the 50 before
ENDED = "Your session has ended: sign in again."
PAGES = "/pages/"
PAGE_PATH = re.compile(r"/pages/[A-Za-z0-9/_.~%-]*\Z")  # as quote() leaves a path


def install(app: FastAPI) -> None:
    """The pages, and their answers to a refused form and to a browser not signed in."""
    app.include_router(router)

    @app.exception_handler(FormRefused)
    async def form_refused(request: Request, exc: FormRefused) -> Response:
        context = {"who": None, "reason": exc.reason}
        return _render(request, "refused.html", context, None, status_code=403)

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        page = request.url.path.startswith(PAGES)
        if not page or "text/html" not in request.headers.get("accept", ""):
            detail = str(exc.detail)  # the API, or the page's drawing: a problem as ever
            return problem(401, "unauthenticated", detail, detail, headers=dict(CHALLENGE))
        here = quote(request.url.path) if request.method == "GET" else None
        if here and request.headers.get("sec-fetch-site") == "cross-site":
            # A link followed from another site (a web calendar) comes without the
            # SameSite=Strict cookie. Opened again from this page, it comes with it.
            return templates.TemplateResponse(request, "opening.html", {"here": here})
        notice = ENDED if exc.ended else None
        return _sign_in_page(request, notice=notice, status_code=401, next_page=here)


@router.get("/", response_class=HTMLResponse, openapi_extra=ACCESS_LOGGED)
def home(
    request: Request, parts: ServicesDep,
    coordinator: Annotated[str | None, Query(max_length=128)] = None,
    did: Annotated[str | None, Query(max_length=16)] = None,
    item: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    count: Annotated[int, Query(ge=1, le=100)] = 1,
    patient_ref: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[OpenStatus | Literal[""] | None, Query()] = None,
    severity: Annotated[Severity | Literal[""] | None, Query()] = None,
    sort: Annotated[Literal["urgency", "due"], Query()] = "urgency",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    rule: Annotated[str | None, Query(pattern=f"^({RULE_ID.pattern})?$")] = None,
    team: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:  # fmt: skip
    """The worklist: the coordinator's own with the lists they cover (an admin's: any
    coordinator's, by name), then the unassigned queues of their teams and the clinic's;
    searched by patient reference, filtered by status and severity, in urgency or due
    order, :data:`PAGE_ITEMS` a page; ``team``: every item of that team's patients. Every
    form on it returns here, to the same place."""
    session_id = request.cookies.get(SESSION_COOKIE)
    who = parts.sessions.resolve(session_id) if session_id else None
    if session_id is None or who is None:
        return _sign_in_page(request, notice=ENDED if session_id else None)
    request.state.principal = who  # the actor of the page's access-log record
    reach = scope(parts, who)
    queue = queue_for(who, reach, coordinator, team or None, False)
    name = queue.owners[0] if queue.owners else coordinator or who.subject
    now = parts.clock.now()
    window = timedelta(days=WINDOW_DAYS)
    rank = SEVERITIES.index(severity) if severity else None
    filters = Filters(status or None, rule or None, rank, patient_ref or None)
    after = position_of(cursor, sort)
    found, last = worklist_page(parts.engine, queue, now, window, PAGE_ITEMS, after, sort,
                                filters)  # fmt: skip
    items = _shown(found, now)
    # The viewer's teams, not the list's: a coordinator covering a colleague sees the
    # colleague's items, never the queues of a team they are not in.
    teams = sorted(reach.teams) if reach is not None else teams_of(parts.engine, name)

    def unassigned(team: str | None) -> tuple[list[dict[str, Any]], bool]:
        listed, more = worklist_page(parts.engine, Queue(team=team), now, window, PAGE_ITEMS,
                                     None, sort, filters)  # fmt: skip
        return _shown(listed, now), more is not None

    queues = [(team, *unassigned(team)) for team in [*teams, None]]
    shown = items + [entry for _, listed, _ in queues for entry in listed]
    reads(request, (entry["episode_id"] for entry in shown))
    context = {
        "who": who,
        "confirmation": _confirmation(parts, reach, did, item, count),
        "undo": item if did == "done" else None,
        "admin": who.role == "admin",
        "queues": queues,
        "coordinator": name,
        "covering": queue.owners[1:],
        "colleagues": _colleagues(parts, teams, {name, who.subject}),
        "as_of": now.strftime("%Y-%m-%d %H:%M UTC"),
        "window": WINDOW_DAYS,
        "items": items,
        "place": _place(request.query_params),
        "asked": {"patient_ref": patient_ref or "", "status": status or "",
                  "severity": severity or "", "sort": sort, "rule": rule or "",
                  "team": team or ""},
        "team": team or None,
        "teams": teams if who.role != "admin" else sorted({m["team"] for m in
                                                           members(parts.engine)}),
        "statuses": OPEN_TASK_STATUSES,
        "severities": SEVERITIES,
        "next_page": _place({**request.query_params, "cursor": cursor_of(last)}) if last else None,
    }  # fmt: skip
    return _render(request, "worklist.html", context, session_id)


def _place(params: Mapping[str, str]) -> str:
    """Where the list stands, as its query string: whose list, its filters, order and page
    (never what an action said: that is the redirect's to add)."""
    return urlencode([(key, params[key]) for key in PLACE_KEYS if params.get(key)])


def _back_to(back: str, did: str, item: int, count: int = 1) -> RedirectResponse:
    """Back to the list where the form was posted from, saying what was done (to how many
    items, when more than one)."""
    place = _place(dict(parse_qsl(back)))
    said = urlencode({"did": did, "item": item, **({"count": count} if count > 1 else {})})
    return RedirectResponse(f"/?{place}&{said}" if place else f"/?{said}", status_code=303)


def _colleagues(parts: ServicesDep, teams: list[str], but: set[str]) -> list[str]:
    """Whom an item may be handed to from this list: the members of the viewer's teams
    (an admin: of the list's coordinator's), but ``but``."""
    names = {m["coordinator"] for team in teams for m in members(parts.engine, team)}
    return sorted(names - but)


@router.get(LINK_PATH + "{code}", response_class=HTMLResponse)
def sign_in_link(request: Request, code: str) -> Response:
    """A sign-in link opened: the sign-in button that uses it (nothing is used by opening)."""
    return _sign_in_page(request, link=code)


DONE_WORDS = {"ack": "acknowledged", "done": "marked done", "contact": "contact logged for",
              "claim": "claimed: now on your list", "assign": "handed over",
              "snooze": "snoozed", "reopen": "reopened: back on the list"}  # fmt: skip


def _confirmation(
    parts: ServicesDep, reach: Scope | None, did: str | None, item: int | None, count: int = 1
) -> str | None:
    """What the last action did, said in the list's words: ``referral for P-31 marked
    done``; nothing for an action or item this coordinator could not have taken."""
    if did not in DONE_WORDS or item is None:
        return None
    if did == "ack" and count > 1:
        return f"{count} items acknowledged."
    task = find_task(parts.engine, item)
    if task is None:
        return None
    try:
        check_item(reach, task)
    except HTTPException:
        return None
    name = task["key"].replace("_", " ")
    if did == "contact":
        return f"Contact logged for {name}, {task['patient_ref']}."
    if did == "assign":
        return f"{name.capitalize()} for {task['patient_ref']} handed over to {task['owner']}."
    if did == "snooze" and task["snoozed_until"] is not None:
        until = clinic_time(task["snoozed_until"].isoformat(), task["clinic_timezone"])
        return f"{name.capitalize()} for {task['patient_ref']} snoozed until {until}."
    return f"{name.capitalize()} for {task['patient_ref']} {DONE_WORDS[did]}."


def _shown(items: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Worklist items with their times and lateness in the clinic's words."""
    for item in items:
        item["when"] = how_late(item["due_at"], now)
        item["due_local"] = clinic_time(item["due_at"], item["time_zone"])
        if item["acknowledged"]:
            item["seen_when"] = clinic_time(item["acknowledged_at"], item["time_zone"])
        if item["last_action"]:
            done = item["last_action"]
            done["when"] = clinic_time(done["at"], item["time_zone"])
            done["words"] = ACTION_WORDS[done["kind"]]
        if item["last_contact"]:
            contact = item["last_contact"]
            contact["when"] = clinic_time(contact["at"], item["time_zone"])
            contact["said"] = CONTACT_WORDS[contact["outcome"]]
    return items


@router.post("/signin", dependencies=[SignInForm])
def sign_in(
    request: Request,
    parts: ServicesDep,
    token: Annotated[str, Form()] = "",
    link: Annotated[str, Form()] = "",
    next_page: Annotated[str, Form(alias="next")] = "",
) -> Response:
    if link:
        who = redeem(parts.engine, link, parts.clock.now())
        if who is None or who.role not in PAGE_ROLES:
            error = ("That sign-in link has been used, has expired, or its token was revoked: "
                     "ask for a new one, or sign in with your token.")  # fmt: skip
            return _sign_in_page(request, error=error, status_code=401)
    else:
        # Looked up afresh, not through the token cache: a token revoked a moment ago opens
        # no session.
        who = principal_for(parts.engine, token.strip()) if token.strip() else None
    if who is None or who.role not in PAGE_ROLES:
        error = "That token is not a coordinator's live token."
        return _sign_in_page(request, error=error, status_code=401, next_page=next_page)
    session_id = parts.sessions.start(who)
    # Back to the page that asked for sign-in: one of ours, never an address given.
    answer = RedirectResponse(next_page if PAGE_PATH.match(next_page) else "/", status_code=303)
    lifetime = int(parts.web.session.absolute.total_seconds())
    _set_cookie(answer, request, parts.web, SESSION_COOKIE, session_id, lifetime)
    _forget_cookie(answer, request, parts.web, SIGNIN_COOKIE)
    return answer


@router.post("/signout", dependencies=[SignedInForm])
def sign_out(request: Request, parts: ServicesDep) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:  # always, past the form check
        parts.sessions.end(session_id)
    answer = RedirectResponse("/", status_code=303)
    _forget_cookie(answer, request, parts.web, SESSION_COOKIE)
    return answer


@router.post("/pages/tasks/ack", dependencies=[SignedInForm], openapi_extra=ACCESS_LOGGED)
def acknowledge_selected(
    request: Request, parts: ServicesDep, who: Coordinator,
    task: Annotated[list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None, Form()] = None,
    back: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """The items ticked on the list, acknowledged together (all or none)."""
    ids = list(dict.fromkeys(task or []))
    if not ids or len(ids) > 100:
        raise InvalidEvent("task", "tick from 1 to 100 items to acknowledge")
    reads(request, check_reach(parts, who, ids))
    acknowledge(parts.engine, ids, who.subject, parts.clock.now())
    return _back_to(back, "ack", ids[0], len(ids))


@router.post("/pages/tasks/{task_id}/{action}", dependencies=[SignedInForm],
             openapi_extra=ACCESS_LOGGED)  # fmt: skip
def task_action(
    task_id: TaskId, action: str, request: Request, parts: ServicesDep, who: Coordinator,
    outcome: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "",
    assignee: Annotated[str, Form()] = "", hours: Annotated[int, Form()] = 0,
    reason: Annotated[str, Form()] = "", back: Annotated[str, Form(max_length=1000)] = "",
) -> Response:  # fmt: skip
    task = own_task(parts, who, task_id)
    reads(request, [task["episode_id"]])
    now = parts.clock.now()
    if action == "ack":
        acknowledge(parts.engine, task_id, who.subject, now)
    elif action == "done":
        done = parse_done({"outcome": outcome or None, "note": note or None})
        mark_done(parts, who, task_id, task, done)
    elif action == "contact":
        given = parse_contact({"outcome": outcome, "note": note or None})
        log_contact(parts.engine, task_id, who.subject, given.outcome, given.note, now)
    elif action == "snooze":
        _snooze_for(parts, who, task_id, task, hours, reason)
    elif action == "reopen":
        take_back(parts, who, task_id, task, None)
    elif action in ("claim", "assign"):
        to = who.subject if action == "claim" else parsed_body(AssignIn, {"to": assignee}).to
        if action == "claim" and task["owner"] is not None:
            raise HTTPException(409, f"the item is already on {task['owner']}'s list")
        step, _ = hand_over(parts, who, task, to, note or None)
        if not step.accepted:
            raise HTTPException(409, step.reason or "the item changed hands meanwhile")
    else:
        raise HTTPException(404, f"no action {action!r}")
    # Back to the list, which says what was done (by code: the page writes the words).
    return _back_to(back, action, task_id)


def _snooze_for(
    parts: ServicesDep, who: Principal, task_id: int, task: dict[str, Any], hours: int,
    reason: str,
) -> None:  # fmt: skip
    """The page's snooze: one of :data:`SNOOZE_HOURS` from now, held to the API's rules."""
    if hours not in SNOOZE_HOURS:
        raise InvalidEvent("hours", f"must be one of {', '.join(map(str, SNOOZE_HOURS))}")
    now = parts.clock.now()
    asked = parsed_body(SnoozeIn, {"until": (now + timedelta(hours=hours)).isoformat(),
                                   "reason": reason})  # fmt: skip
    check_snooze(task, asked.until, now)
    snooze(parts.engine, task_id, task["status"], who.subject, asked.until, asked.reason, None,
           now)  # fmt: skip


@router.get("/pages/tasks/{task_id}/done", response_class=HTMLResponse, openapi_extra=ACCESS_LOGGED)
def confirm_done(
    task_id: TaskId, request: Request, parts: ServicesDep, who: Coordinator,
    back: Annotated[str, Query(max_length=1000)] = "",
) -> Response:  # fmt: skip
    """Marking an item done, confirmed: what came of it (required where it matters); then
    back to the list where it stood (``back``)."""
    task = own_task(parts, who, task_id)
    reads(request, [task["episode_id"]])
    severity = SEVERITIES[task["severity"]]
    context = {
        "who": who, "task_id": task_id, "task": task, "severity": severity,
        "needs_outcome": severity in NEEDS_OUTCOME,
        "due_local": clinic_time(task["due_at"].isoformat(), task["clinic_timezone"]),
        "place": _place(dict(parse_qsl(back))),
    }  # fmt: skip
    return _render(request, "confirm_done.html", context, request.cookies.get(SESSION_COOKIE))


@router.get(
    "/pages/episodes/{episode_id}", response_class=HTMLResponse, openapi_extra=ACCESS_LOGGED
)
def episode_page(
    episode_id: str,
    request: Request,
    parts: ServicesDep,
    who: Coordinator,
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    """The episode, its most recent steps (``TIMELINE_STEPS``, newest first), and a link
    to the steps before them (``cursor``)."""
    check_episode(parts, who, episode_id)
    if cursor is None:
        episode = parts.repo.view_with_timeline(episode_id, TIMELINE_STEPS)
        timeline, earlier = episode.pop("timeline"), episode.pop("timeline_next_cursor")
    else:
        episode = parts.repo.view(episode_id)
        timeline, earlier = timeline_page(parts.engine, episode_id, cursor, TIMELINE_STEPS)
    zone = clinic_timezone(parts.engine, episode_id)
    now = parts.clock.now()
    for item in episode["due"]:
        item["due_local"] = clinic_time(item["due_at"], zone)
        if item["status"] in OPEN_TASK_STATUSES:
            item["when"] = how_late(item["due_at"], now)
    context: dict[str, Any] = {
        "who": who, "episode": episode, "timeline": timeline, "earlier": earlier,
        "newest": cursor is None, "standing": standing(episode),
        "flag": _flag(episode, parts.repo.defaults), "zone": zone,
    }  # fmt: skip
    return _render(request, "episode.html", context, request.cookies.get(SESSION_COOKIE))


def _flag(episode: dict[str, Any], defaults: PathwayDefaults) -> dict[str, Any] | None:
    """Under a red flag, what the page leads with: the flag in words, what its rule says
    to do, and the work-up's deadline in the clinic's time with what remains of it."""
    flag = episode["red_flag"]
    if not flag:
        return None
    pinned = pathways.definition(episode["pathway"]["id"], episode["pathway"]["version"])
    rule = rules_for(pinned, defaults).get(flag["rule"])
    work_up = next((d for d in episode["due"] if d["rule"] == flag["rule"]
                    and d["status"] in OPEN_TASK_STATUSES), None)  # fmt: skip
    return {
        "name": RED_FLAGS.get(flag["kind"], flag["kind"]),
        "level": flag["level"],
        "rule": flag["rule"],
        "instruction": rule.text if rule else None,
        "work_up": work_up,
    }


def _render(
    request: Request, name: str, context: dict[str, Any], binding: str | None,
    status_code: int = 200,
) -> Response:  # fmt: skip
    """A page whose forms carry the CSRF token bound to the cookie value ``binding``."""
    token = form_token(binding) if binding else ""
    return templates.TemplateResponse(
        request, name, {**context, "csrf_token": token}, status_code=status_code
    )


def _sign_in_page(
    request: Request, error: str | None = None, notice: str | None = None,
    status_code: int = 200, next_page: str | None = None, link: str | None = None,
) -> Response:  # fmt: skip
    """The sign-in form, bound to this browser's pre-session cookie (set here if new), and
    leading on to ``next_page`` when that is one of the pages."""
    web: WebSettings = request.app.state.services.web
    presession = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)
    next_page = next_page if next_page and PAGE_PATH.match(next_page) else None
    context = {"who": None, "error": error, "notice": notice, "next": next_page, "link": link}
    answer = _render(request, "signin.html", context, presession, status_code)
    if request.cookies.get(SIGNIN_COOKIE) != presession:
        _set_cookie(answer, request, web, SIGNIN_COOKIE, presession)
    if SESSION_COOKIE in request.cookies:  # an ended session's cookie: drop it
        _forget_cookie(answer, request, web, SESSION_COOKIE)
    return answer


def _set_cookie(
    answer: Response, request: Request, web: WebSettings, name: str, value: str,
    max_age: int | None = None,
) -> None:  # fmt: skip
    answer.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                      samesite="strict", secure=cookie_is_secure(request, web))  # fmt: skip


def _forget_cookie(answer: Response, request: Request, web: WebSettings, name: str) -> None:
    answer.delete_cookie(name, path="/", httponly=True, samesite="strict",
                         secure=cookie_is_secure(request, web))  # fmt: skip
