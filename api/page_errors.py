"""Errors on the coordinator's pages answered as pages, never as raw JSON.

The API answers every error as a problem (:mod:`api.problems`); a browser on one of the
page routes (``/`` and ``/pages/…``) asking for HTML gets the same problem as a page that
says what happened and what to do next: sign in again, go back to the list, reload because
the item changed, or try again shortly. One seam: :func:`install` wraps each problem
handler once, after all are registered, and only a problem response is turned into a page.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from api.pages import PAGES, templates
from api.problems import MEDIA_TYPE

Handler = Callable[[Request, Any], Response | Awaitable[Response]]
# What to do next, by status: in a coordinator's words.
NEXT_STEP = {
    401: ("Sign in again", "Your sign-in is no longer valid."),
    403: ("Back to your worklist", "This is not on your list, or your role may not do it."),
    404: ("Back to your worklist", "It may have been closed or removed since the page was "
          "loaded."),  # fmt: skip
    409: ("Back to your worklist", "It was refused, for the reason above; nothing was "
          "changed. The list shows where the item stands now."),  # fmt: skip
    412: ("Reload the list", "The item changed since the page was loaded; nothing was "
          "changed. Reload it and look again."),  # fmt: skip
    422: ("Reload the list", "The item changed since the page was loaded (it may have been "
          "done already); nothing was changed. Reload it and look again."),  # fmt: skip
}
TRY_AGAIN = ("Back to your worklist", "carepath could not finish this just now; nothing was "
             "changed. Try again in a moment.")  # fmt: skip


def is_page_request(request: Request) -> bool:
    path = request.url.path
    wants_html = "text/html" in request.headers.get("accept", "")
    return wants_html and (path == "/" or path.startswith(PAGES))


def install(app: FastAPI) -> None:
    """Wrap every exception handler registered so far (call after all are)."""
    for kind, handler in list(app.exception_handlers.items()):
        app.exception_handlers[kind] = _as_page(handler)


def _as_page(handler: Handler) -> Handler:
    async def answered(request: Request, exc: Exception) -> Response:
        response = handler(request, exc)
        if inspect.isawaitable(response):
            response = await response
        if response.media_type != MEDIA_TYPE or not is_page_request(request):
            return response
        problem: dict[str, Any] = json.loads(bytes(response.body))
        return error_page(request, problem, dict(response.headers))

    return answered


def error_page(request: Request, problem: dict[str, Any], headers: dict[str, str]) -> Response:
    status = int(problem["status"])
    action, advice = NEXT_STEP.get(status, TRY_AGAIN)
    context = {
        "who": None,
        "status": status,
        "title": problem.get("title") or "Request failed",
        "detail": problem.get("detail"),
        "advice": advice,
        "action": action,
    }
    kept = {k: v for k, v in headers.items() if k.lower() in ("retry-after", "www-authenticate")}
    return templates.TemplateResponse(
        request, "error.html", context, status_code=status, headers=kept
    )
