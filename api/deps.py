"""What every route gets: the service's parts, and the caller checked against its roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

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


# Dependencies that do no I/O are async: FastAPI runs a plain function in its thread pool,
# and the hop there and back costs more than the function.
async def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(services)]
COOKIE = "carepath_token"
_bearer = HTTPBearer(auto_error=False, description="A token from `carepath token create`")


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting a live token of one of ``roles`` (admin is always admitted)."""
    allowed = {*roles, "admin"}

    async def check(
        request: Request,
        parts: ServicesDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        challenge = {"WWW-Authenticate": "Bearer"}
        # The coordinator page signs in once and keeps the token in a cookie.
        token = credentials.credentials if credentials else request.cookies.get(COOKIE)
        if not token:
            raise HTTPException(401, "a bearer token is required", headers=challenge)
        # A token seen live a moment ago is answered here; otherwise the database is asked
        # off the event loop.
        who = parts.tokens.remembered(token) or await run_in_threadpool(
            parts.tokens.principal, token
        )
        if who is None:
            raise HTTPException(401, "unknown or revoked token", headers=challenge)
        request.state.principal = who  # the actor of an access-log record, 403s included
        if who.role not in allowed:
            raise HTTPException(403, f"the {who.role} role may not do this")
        return who

    return check
