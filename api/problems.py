"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error names what went wrong in terms a caller can act on: the field for bad input,
the rules for a refusal (with whether an override is possible and when time lifts it), the
version for a stale write, and when to try again for a database that did not answer in
time. HTTP errors are made here and nowhere below ``api/``; :mod:`api.edge` answers what
gets past these handlers.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import Problem
from engine.errors import (
    EpisodeNotFound,
    InvalidConfiguration,
    InvalidEvent,
    StaleEpisode,
    UnreadableEpisode,
)
from models.idempotency import Replayed
from models.timeouts import DatabaseTimeout

PROBLEM_TYPES = "https://carepath.example/problems/"
MEDIA_TYPE = "application/problem+json"
# Seconds a caller is asked to wait: a lock is usually released within one; a database that
# is not answering at all needs longer.
RETRY_AFTER_BUSY = "1"
RETRY_AFTER_UNAVAILABLE = "5"
log = logging.getLogger("carepath.api")

# For the OpenAPI document: what each error status means here, with an example body.
_MEANINGS: dict[int, tuple[str, dict[str, Any]]] = {
    401: ("No token, or an unknown or revoked one", {
        "type": PROBLEM_TYPES + "unauthenticated", "title": "a bearer token is required",
        "status": 401, "detail": "a bearer token is required"}),
    403: ("The token's role may not do this", {
        "type": PROBLEM_TYPES + "forbidden", "title": "the auditor role may not do this",
        "status": 403, "detail": "the auditor role may not do this"}),
    404: ("No such episode or item", {
        "type": PROBLEM_TYPES + "not-found", "title": "No such episode", "status": 404,
        "detail": "no episode with id 583dab66-f42c-419e-bcac-4411bd0d0469"}),
    409: ("Refused by a guideline rule (recorded in the audit log)", {
        "type": PROBLEM_TYPES + "refused-by-rule", "title": "Refused by the guideline",
        "status": 409, "detail": "imaging before 6 weeks without a red flag",
        "rules": ["IMG-NO-EARLY"], "reason": "imaging before 6 weeks without a red flag",
        "override_possible": True, "eligible_from": "2026-02-16"}),
    412: ("If-Match named a version the episode has moved past", {
        "type": PROBLEM_TYPES + "stale-version", "title": "Episode changed", "status": 412,
        "detail": "episode 583dab66-f42c-419e-bcac-4411bd0d0469 is at version 4, the request "
                  "expected 3", "current_version": 4}),
    413: ("The body is larger than the limit (1 MiB by default); it was not read", {
        "type": PROBLEM_TYPES + "too-large", "title": "Request body too large", "status": 413,
        "detail": "the request body is larger than the limit of 1048576 bytes"}),
    415: ("The body is not declared as JSON", {
        "type": PROBLEM_TYPES + "unsupported-media-type", "title": "Unsupported media type",
        "status": 415, "detail": "the body must be application/json, not 'text/plain'"}),
    422: ("Invalid input: field names the first field at fault", {
        "type": PROBLEM_TYPES + "invalid-input", "title": "Invalid input", "status": 422,
        "detail": "data.vas_leg: must be between 0 and 10, got 14", "field": "data.vas_leg"}),
    500: ("The episode's stored record cannot be read (named; an incident for operators)", {
        "type": PROBLEM_TYPES + "unreadable-episode", "title": "Stored episode cannot be read",
        "status": 500, "detail": "stored episode 583dab66-f42c-419e-bcac-4411bd0d0469 cannot "
                  "be read: configuration is not a list of state ids",
        "episode_id": "583dab66-f42c-419e-bcac-4411bd0d0469"}),
    503: ("The database did not answer in time, or not at all: nothing was applied unless "
          "the detail says the outcome is unknown; retry after Retry-After (with the same "
          "Idempotency-Key)", {
        "type": PROBLEM_TYPES + "database-timeout", "title": "Database did not answer in time",
        "status": 503, "detail": "timed out waiting for the database at db:5432/carepath: a "
                                 "lock held by another transaction for more than 5000 ms "
                                 "(CAREPATH_DB_LOCK_TIMEOUT_MS); nothing was applied"}),
}  # fmt: skip


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries for these error statuses, as problem details."""
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": _MEANINGS[status][0],
            "content": {MEDIA_TYPE: {"schema": schema, "example": _MEANINGS[status][1]}},
        }
        for status in statuses
    }


def problem(
    status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:  # fmt: skip
    body = {"type": PROBLEM_TYPES + slug, "title": title, "status": status, "detail": detail}
    return JSONResponse(
        {**body, **extra}, status_code=status, media_type=MEDIA_TYPE, headers=headers
    )


def refusal(
    rules: list[str], reason: str | None, override_possible: bool, eligible_from: date | None
) -> dict[str, Any]:
    """The 409 problem of an event the guideline refused (recorded in the audit log)."""
    return {
        # No rule: refused by the engine itself (a handover from someone no longer in charge).
        "type": PROBLEM_TYPES + ("refused-by-rule" if rules else "refused"),
        "title": "Refused by the guideline" if rules else "Refused",
        "status": 409,
        "detail": reason or ", ".join(rules),
        "rules": rules,
        "reason": reason,
        "override_possible": override_possible,
        "eligible_from": eligible_from.isoformat() if eligible_from else None,
    }


_TITLES = {
    409: "Not done: it conflicts with where the item stands",
    413: "Request body too large",
    415: "Unsupported media type",
}


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(location[-1] if location else "body")


def install(app: FastAPI) -> None:
    """Answer every carepath, validation and HTTP error as a problem."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e["loc"])), "reason": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "reason": "invalid"}
        detail = f"{first['field']}: {first['reason']}"
        return problem(422, "invalid-input", "Invalid input", detail, field=first["field"],
                       errors=errors)  # fmt: skip

    @app.exception_handler(InvalidEvent)
    async def invalid_event(_: Request, exc: InvalidEvent) -> JSONResponse:
        detail = f"{exc.field}: {exc.reason}"
        return problem(422, "invalid-input", "Invalid input", detail, field=exc.field)

    @app.exception_handler(StaleEpisode)
    async def stale(_: Request, exc: StaleEpisode) -> JSONResponse:
        return problem(412, "stale-version", "Episode changed", str(exc),
                       current_version=exc.actual)  # fmt: skip

    @app.exception_handler(EpisodeNotFound)
    async def not_found(_: Request, exc: EpisodeNotFound) -> JSONResponse:
        return problem(404, "not-found", "No such episode", str(exc))

    @app.exception_handler(UnreadableEpisode)
    async def unreadable(_: Request, exc: UnreadableEpisode) -> JSONResponse:
        # The reason names what is damaged, never a stored value beyond state ids.
        return problem(500, "unreadable-episode", "Stored episode cannot be read", str(exc),
                       episode_id=exc.episode_id)  # fmt: skip

    @app.exception_handler(InvalidConfiguration)
    async def corrupt(_: Request, exc: InvalidConfiguration) -> JSONResponse:
        return problem(500, "corrupt-episode", "Stored episode is not valid", str(exc))

    @app.exception_handler(DataError)
    async def unstorable(_: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot hold or compare (a NUL byte, a year out of range):
        # bad input, even though it got past validation.
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "out of range"
        return problem(422, "invalid-input", "Invalid input", reason, field="query")

    @app.exception_handler(DatabaseTimeout)
    async def timed_out(request: Request, exc: DatabaseTimeout) -> JSONResponse:
        detail = str(exc)
        if exc.maybe_applied:
            detail += "; retry with the same Idempotency-Key to get its answer"
        log.warning("database did not answer in time", extra={
            **_where(request), "reason": exc.reason, "maybe_applied": exc.maybe_applied})
        return problem(503, "database-timeout", "Database did not answer in time", detail,
                       headers={"Retry-After": RETRY_AFTER_BUSY})  # fmt: skip

    @app.exception_handler(DBAPIError)
    async def database(request: Request, exc: DBAPIError) -> JSONResponse:
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
        log.error("database error", extra={**_where(request), "error": reason[:300]})
        return problem(503, "database-unavailable", "Database unavailable",
                       "the database could not complete the request; try again",
                       headers={"Retry-After": RETRY_AFTER_UNAVAILABLE})  # fmt: skip

    @app.exception_handler(Replayed)
    async def replayed(_: Request, exc: Replayed) -> Response:
        headers = {**exc.answer.headers, "Idempotent-Replayed": "true"}
        return Response(exc.answer.body.encode("utf-8"), exc.answer.status, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        slugs = {401: "unauthenticated", 403: "forbidden", 404: "not-found", 405: "method",
                 413: "too-large", 415: "unsupported-media-type"}  # fmt: skip
        return problem(
            exc.status_code,
            slugs.get(exc.status_code, "http-error"),
            str(exc.detail) if exc.status_code in (401, 403) else _TITLES.get(
                exc.status_code, "Request failed"),
            str(exc.detail),
            headers=dict(exc.headers or {}),
        )


def _where(request: Request) -> dict[str, Any]:
    """The request in a log line: method and route template (never the path's ids)."""
    route = getattr(request.scope.get("route"), "path", None) or "unmatched"
    return {"method": request.method, "route": route}
