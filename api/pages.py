"""The coordinator's pages: sign in, the worklist, an episode. Server-rendered, no script.

Sign-in takes the coordinator's token once and keeps it in an HttpOnly, SameSite=Strict
cookie, so the forms below (acknowledge, done, sign out) work without JavaScript and a
page on another site cannot post them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.deps import COOKIE, ServicesDep, require
from api.tokens import Principal
from api.worklist import TaskId
from models.history import timeline_page
from models.worklist import acknowledge, find_task, worklist

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
Coordinator = Annotated[Principal, Depends(require("coordinator"))]
WINDOW_DAYS = 7
TIMELINE_STEPS = 50  # an episode page's steps; "Earlier steps" shows the 50 before


def _signed_in(request: Request, parts: ServicesDep) -> Principal | None:
    token = request.cookies.get(COOKIE)
    who = parts.tokens.principal(token) if token else None
    return who if who and who.role in ("coordinator", "admin") else None


@router.get("/", response_class=HTMLResponse)
def home(request: Request, parts: ServicesDep) -> Response:
    who = _signed_in(request, parts)
    if who is None:
        return templates.TemplateResponse(request, "signin.html", {"who": None, "error": None})
    now = parts.clock.now()
    items = worklist(parts.engine, who.subject, now, timedelta(days=WINDOW_DAYS))
    context = {
        "who": who,
        "coordinator": who.subject,
        "as_of": now.strftime("%Y-%m-%d %H:%M UTC"),
        "window": WINDOW_DAYS,
        "items": items,
    }
    return templates.TemplateResponse(request, "worklist.html", context)


@router.post("/signin")
def sign_in(request: Request, parts: ServicesDep, token: Annotated[str, Form()]) -> Response:
    who = parts.tokens.principal(token.strip())
    if who is None or who.role not in ("coordinator", "admin"):
        context = {"who": None, "error": "That token is not a coordinator's live token."}
        return templates.TemplateResponse(request, "signin.html", context, status_code=401)
    answer = RedirectResponse("/", status_code=303)
    answer.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict",
                      secure=request.url.scheme == "https")  # fmt: skip
    return answer


@router.post("/signout")
def sign_out() -> Response:
    answer = RedirectResponse("/", status_code=303)
    answer.delete_cookie(COOKIE)
    return answer


@router.post("/pages/tasks/{task_id}/{action}")
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


@router.get("/pages/episodes/{episode_id}", response_class=HTMLResponse)
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
    return templates.TemplateResponse(request, "episode.html", context)
