"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error names what went wrong in terms a caller can act on: the field for bad input,
the rules for a refusal (with whether an override is possible and when time lifts it), the
version for a stale write. HTTP errors are made here and nowhere below ``api/``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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

PROBLEM_TYPES = "https://carepath.example/problems/"
MEDIA_TYPE = "application/problem+json"

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
    422: ("Invalid input: field names the first field at fault", {
        "type": PROBLEM_TYPES + "invalid-input", "title": "Invalid input", "status": 422,
        "detail": "data.vas_leg: must be between 0 and 10, got 14", "field": "data.vas_leg"}),
    500: ("The episode's stored record cannot be read (named; an incident for operators)", {
        "type": PROBLEM_TYPES + "unreadable-episode", "title": "Stored episode cannot be read",
        "status": 500, "detail": "stored episode 583dab66-f42c-419e-bcac-4411bd0d0469 cannot "
                  "be read: configuration is not a list of state ids",
        "episode_id": "583dab66-f42c-419e-bcac-4411bd0d0469"}),
    503: ("The database could not complete the request; retry after Retry-After", {
        "type": PROBLEM_TYPES + "database-unavailable", "title": "Database unavailable",
        "status": 503, "detail": "the database could not complete the request; try again"}),
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


class Refused(Exception):
    """The engine refused the event (recorded, and answered 409)."""

    def __init__(
        self,
        rules: list[str],
        reason: str | None,
        override_possible: bool,
        eligible_from: date | None,
        version: int,
    ) -> None:
        self.rules = rules
        self.reason = reason
        self.override_possible = override_possible
        self.eligible_from = eligible_from
        self.version = version


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

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return problem(
            409,
            "refused-by-rule",
            "Refused by the guideline",
            exc.reason or ", ".join(exc.rules),
            headers={"ETag": f'"{exc.version}"'},
            rules=exc.rules,
            reason=exc.reason,
            override_possible=exc.override_possible,
            eligible_from=exc.eligible_from.isoformat() if exc.eligible_from else None,
        )

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

    @app.exception_handler(DBAPIError)
    async def database(_: Request, exc: DBAPIError) -> JSONResponse:
        return problem(503, "database-unavailable", "Database unavailable",
                       "the database could not complete the request; try again",
                       headers={"Retry-After": "5"})  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        slugs = {401: "unauthenticated", 403: "forbidden", 404: "not-found", 405: "method"}
        return problem(
            exc.status_code,
            slugs.get(exc.status_code, "http-error"),
            str(exc.detail) if exc.status_code in (401, 403) else "Request failed",
            str(exc.detail),
            headers=dict(exc.headers or {}),
        )
