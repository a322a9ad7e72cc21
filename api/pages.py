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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.access import ACCESS_LOGGED, reads
from api.deps import CHALLENGE, NotSignedIn, ServicesDep, require
from api.problems import problem
from api.security import FormRefused, WebSettings, checked_form, cookie_is_secure, form_token
from api.sessions import SESSION_COOKIE, SIGNIN_COOKIE
from api.tokens import Principal, principal_for
from api.worklist import TaskId
from models.history import timeline_page
from models.worklist import acknowledge, find_task, worklist

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
Coordinator = Annotated[Principal, Depends(require("coordinator"))]
SignedInForm = Depends(checked_form(SESSION_COOKIE))
SignInForm = Depends(checked_form(SIGNIN_COOKIE))
PAGE_ROLES = ("coordinator", "admin")
WINDOW_DAYS = 7
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
def home(request: Request, parts: ServicesDep) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    who = parts.sessions.resolve(session_id) if session_id else None
    if session_id is None or who is None:
        return _sign_in_page(request, notice=ENDED if session_id else None)
    request.state.principal = who  # the actor of the page's access-log record
    now = parts.clock.now()
    items = worklist(parts.engine, who.subject, now, timedelta(days=WINDOW_DAYS))
    reads(request, (item["episode_id"] for item in items))
    for item in items:
        item["when"] = _when(item)
        item["due_local"] = _clinic_time(item["due_at"], item["time_zone"])
    context = {
        "who": who,
        "coordinator": who.subject,
        "as_of": now.strftime("%Y-%m-%d %H:%M UTC"),
        "window": WINDOW_DAYS,
        "items": items,
    }
    return _render(request, "worklist.html", context, session_id)


DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?")


def _when(item: dict[str, Any]) -> str:
    """How late or how soon an item is, in words: ``overdue by 2 d 3 h``, ``due in 45 min``."""
    late = item["overdue_by"]
    duration = late if late is not None else item["due_in"]
    match = DURATION.fullmatch(duration)
    assert match is not None, duration
    days, hours, minutes = (int(part) if part else 0 for part in match.groups())
    # Minutes matter only within the day: an item days late is late by days and hours.
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "",
             f"{minutes} min" if minutes and not days else ""]  # fmt: skip
    words = " ".join(part for part in parts if part) or "less than a minute"
    return f"overdue by {words}" if late is not None else f"due in {words}"


def _clinic_time(instant: str, zone: str) -> str:
    """An instant as the clinic reads it, its zone named: ``Tue 20 Jan 04:00 CST``."""
    return datetime.fromisoformat(instant).astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M %Z")


@router.post("/signin", dependencies=[SignInForm])
def sign_in(
    request: Request,
    parts: ServicesDep,
    token: Annotated[str, Form()] = "",
    next_page: Annotated[str, Form(alias="next")] = "",
) -> Response:
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


@router.post("/pages/tasks/{task_id}/{action}", dependencies=[SignedInForm])
def task_action(task_id: TaskId, action: str, parts: ServicesDep, who: Coordinator) -> Response:
    task = find_task(parts.engine, task_id)
    if task is None:
        raise HTTPException(404, f"no due item with id {task_id}")
    if who.role != "admin" and task["owner"] != who.subject:
        raise HTTPException(403, "the item is on another coordinator's list")
    now = parts.clock.now()
    if action == "ack":
        acknowledge(parts.engine, task_id, who.subject, now)
    elif action == "done":
        parts.repo.complete_task(task["episode_id"], task["key"], who.subject, now)
    else:
        raise HTTPException(404, f"no action {action!r}")
    return RedirectResponse("/", status_code=303)


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
    if cursor is None:
        episode = parts.repo.view_with_timeline(episode_id, TIMELINE_STEPS)
        timeline, earlier = episode.pop("timeline"), episode.pop("timeline_next_cursor")
    else:
        episode = parts.repo.view(episode_id)
        timeline, earlier = timeline_page(parts.engine, episode_id, cursor, TIMELINE_STEPS)
    context: dict[str, Any] = {"who": who, "episode": episode, "timeline": timeline,
                               "earlier": earlier, "newest": cursor is None}  # fmt: skip
    return _render(request, "episode.html", context, request.cookies.get(SESSION_COOKIE))


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
    status_code: int = 200, next_page: str | None = None,
) -> Response:  # fmt: skip
    """The sign-in form, bound to this browser's pre-session cookie (set here if new), and
    leading on to ``next_page`` when that is one of the pages."""
    web: WebSettings = request.app.state.services.web
    presession = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(32)
    next_page = next_page if next_page and PAGE_PATH.match(next_page) else None
    context = {"who": None, "error": error, "notice": notice, "next": next_page}
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
