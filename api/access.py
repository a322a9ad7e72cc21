"""The access log over HTTP: reads on record before they are answered, and auditors' view.

A route that shows episode data is marked ``openapi_extra=ACCESS_LOGGED``. For such a route,
:class:`AccessLogMiddleware` holds the start of the answer, appends the read to the access
log through the process's group-commit writer (:mod:`models.access_writer`) and lets the
answer go only once that is committed; when it cannot be written the answer is replaced by a
503 problem. What a record says:

- the actor and role: the principal the route authenticated (``request.state.principal``,
  set by :func:`api.deps.require` and by the routes that check a token themselves);
- the route template (``GET /episodes/{episode_id}``), which is the read's purpose;
- the episodes: those the route named with :func:`reads`, else the path's
  ``{episode_id}``; the query string, its ``token`` removed;
- the outcome: ``answered`` (2xx/3xx), ``forbidden`` (403) or ``not_found`` (404).
  Nothing is recorded without a known actor (401: anyone could fill the log) nor for
  answers that show nothing (422, 5xx).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Query, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import ServicesDep, require
from api.problems import documented, problem
from api.schemas import AccessPage, LogCheck
from api.tokens import Principal
from engine.clinic_time import Clock
from models.access_log import AccessEntry, AccessLogUnavailable, read_of
from models.access_reading import AccessFilter, episodes_named, page, verify_access_log
from models.access_writer import AccessLogWriter

MARK = "x-carepath-access-log"
ACCESS_LOGGED = {MARK: "each answer is recorded in the access log before it is sent"}
_SHOWN = "carepath_episodes_read"  # the request state's key that reads() sets
_OUTCOMES = {403: "forbidden", 404: "not_found"}


def reads(request: Request, episode_ids: Iterable[str] | None) -> None:
    """Name the episodes this answer shows; None when it covers more than can be listed
    up front (an export: the record then keeps its query)."""
    request.state.carepath_episodes_read = None if episode_ids is None else list(episode_ids)


class _Withdrawn(Exception):
    """The answer was replaced by a 503: whatever the route still sends is refused."""


class AccessLogMiddleware:
    """Holds each answer of an access-logged route until its read is on record.

    A plain ASGI middleware (see :mod:`api.http_metrics`): the route template, the status
    and what the route put in the request's state are all known when the answer starts.
    """

    def __init__(self, app: ASGIApp, writer: AccessLogWriter, clock: Clock) -> None:
        self.app = app
        self.writer = writer
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        withdrawn = False

        async def recorded(message: Message) -> None:
            nonlocal withdrawn
            if withdrawn:
                raise _Withdrawn
            if message["type"] == "http.response.start":
                entry = self._entry(scope, message["status"])
                if entry is not None:
                    try:
                        await self.writer.arecord(entry)
                    except AccessLogUnavailable as exc:
                        withdrawn = True
                        await _unavailable(exc)(scope, receive, send)
                        raise _Withdrawn from None
            await send(message)

        try:
            await self.app(scope, receive, recorded)
        except Exception:
            if not withdrawn:
                raise

    def _entry(self, scope: Scope, status: int) -> AccessEntry | None:
        route = scope.get("route")
        extra = getattr(route, "openapi_extra", None)
        if not extra or MARK not in extra:
            return None
        state = scope.get("state") or {}
        who: Principal | None = state.get("principal")
        outcome = "answered" if status < 400 else _OUTCOMES.get(status)
        if who is None or outcome is None:
            return None
        shown: list[str] | None
        if outcome == "answered" and _SHOWN in state:
            shown = state[_SHOWN]
        else:  # the episode the path names, if any
            episode = scope.get("path_params", {}).get("episode_id")
            shown = [] if episode is None else [episode]
        return read_of(
            who.subject, who.role, f"{scope['method']} {getattr(route, 'path', '?')}",
            self.clock.now(), shown, outcome, _query(scope.get("query_string", b"")),
        )  # fmt: skip


def _query(raw: bytes) -> str | None:
    """The query string, without the calendar feed's token however its name is spelt."""
    if not raw:
        return None
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k != "token"]) or None


def _unavailable(exc: AccessLogUnavailable) -> Any:
    # The reason is the writer's to log (models.access_writer), not the caller's to read.
    return problem(
        503, "access-log-unavailable", "Access log unavailable",
        "this read could not be put on record in the access log, so it is not answered; "
        "try again", headers={"Retry-After": "5"},
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# GET /audit/access

router = APIRouter(prefix="/audit", tags=["audit"])
Auditor = Annotated[Principal, Depends(require("auditor"))]


def access_filter(
    since: Annotated[
        datetime | None,
        Query(description="recorded at or after", examples=["2026-01-01T00:00:00Z"]),
    ] = None,
    until: Annotated[
        datetime | None, Query(description="recorded before", examples=["2026-02-01T00:00:00Z"])
    ] = None,
    actor: Annotated[str | None, Query(description="a token's subject", examples=["alex"])] = None,
    episode: Annotated[
        str | None,
        Query(
            description="reads that showed this episode, and those that covered more than "
            "they could list (exports)",
            examples=["583dab66-f42c-419e-bcac-4411bd0d0469"],
        ),
    ] = None,
) -> AccessFilter:
    return AccessFilter(since, until, actor, episode)


@router.get(
    "/access",
    summary="The access log: who read which episodes, when, and through which route",
    response_model=None,
    responses={200: {"model": AccessPage}, **documented(401, 403, 422, 503)},
    openapi_extra=ACCESS_LOGGED,
)
def access_log(
    request: Request,
    parts: ServicesDep,
    _: Auditor,
    where: Annotated[AccessFilter, Depends(access_filter)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="next_cursor of the previous page")
    ] = 0,
) -> dict[str, Any]:
    """Reads oldest first, a page at a time. Reading this log is itself recorded."""
    rows, next_cursor = page(parts.engine, where, cursor, limit)
    reads(request, episodes_named(rows))
    return {"items": rows, "next_cursor": next_cursor}


@router.get(
    "/access/verify",
    summary="Recompute the access log's hash chain; name the first bad row",
    response_model=None,
    responses={200: {"model": LogCheck}, **documented(401, 403, 503)},
)
def verify_access(parts: ServicesDep, _: Auditor) -> dict[str, Any]:
    result = verify_access_log(parts.engine)
    return {
        "ok": result.ok,
        "rows_checked": result.rows_checked,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
    }
