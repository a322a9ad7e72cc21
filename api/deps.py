"""What every route gets: the service's parts, and the caller checked against its roles.

A caller is a bearer token (API clients), or the coordinator page's session cookie. The
cookie opens pages and reads (GET, HEAD); a post made with it must be a page form that
passed :func:`api.security.checked_form`, so no route can be driven by another site
through a signed-in browser.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.security import FORM_CHECKED, WebSettings
from api.sessions import SESSION_COOKIE, Sessions
from api.tokens import Principal, Tokens
from engine.clinic_time import Clock
from models.repository import EpisodeRepository
from schedulers.metrics import WorkerMetrics


@dataclass
class Services:
    engine: Engine
    repo: EpisodeRepository
    clock: Clock
    metrics: WorkerMetrics
    tokens: Tokens
    sessions: Sessions
    web: WebSettings


# Dependencies that do no I/O are async: FastAPI runs a plain function in its thread pool,
# and the hop there and back costs more than the function.
async def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(services)]
READS = ("GET", "HEAD")
CHALLENGE = {"WWW-Authenticate": "Bearer"}
_bearer = HTTPBearer(auto_error=False, description="A token from `carepath token create`")


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting a live token, or a live page session, of one of ``roles``
    (admin is always admitted)."""
    allowed = {*roles, "admin"}

    async def check(
        request: Request,
        parts: ServicesDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            who = await _page_session(request, parts)
        else:
            # A token seen live a moment ago is answered here; otherwise the database is
            # asked off the event loop.
            token = credentials.credentials
            found = parts.tokens.remembered(token) or await run_in_threadpool(
                parts.tokens.principal, token
            )
            if found is None:
                raise HTTPException(401, "unknown or revoked token", headers=CHALLENGE)
            who = found
        request.state.principal = who  # the actor of an access-log record, 403s included
        if who.role not in allowed:
            raise HTTPException(403, f"the {who.role} role may not do this")
        return who

    return check


class NotSignedIn(HTTPException):
    """No bearer token and no live page session; ``ended`` when the cookie named a session
    that is over (signed out, expired, its token revoked). The pages answer it with the
    sign-in form, the API with a 401 problem."""

    def __init__(self, ended: bool) -> None:
        detail = "the session has ended: sign in again" if ended else "a bearer token is required"
        super().__init__(401, detail, headers=CHALLENGE)
        self.ended = ended


async def _page_session(request: Request, parts: Services) -> Principal:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise NotSignedIn(ended=False)
    if request.method not in READS and not request.scope.get(FORM_CHECKED):
        raise HTTPException(401, "a bearer token is required", headers=CHALLENGE)
    who = await run_in_threadpool(parts.sessions.resolve, session_id)
    if who is None:
        raise NotSignedIn(ended=True)
    return who
