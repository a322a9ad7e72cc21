"""What every request meets before a route: the body limit, and the last word on errors.

A plain ASGI middleware (as :mod:`api.http_metrics`):

- A body over the limit (1 MiB, our default; ``CAREPATH_MAX_BODY_BYTES``) is answered 413
  problem+json without being read: at once when ``Content-Length`` says so, and as soon as
  the limit is crossed when the body comes in chunks, so memory holds at most the limit per
  request however large the body.
- An exception no handler answered becomes a 500 problem that tells the caller nothing of
  the internals, and one JSON log line with the error for the operator.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import MEDIA_TYPE, PROBLEM_TYPES

MAX_BODY_ENV = "CAREPATH_MAX_BODY_BYTES"
MAX_BODY_BYTES = 1024 * 1024  # our default
log = logging.getLogger("carepath.api")


def max_body_from_env() -> int:
    """``CAREPATH_MAX_BODY_BYTES``, or 1 MiB.

    Raises:
        ValueError: not a positive whole number (naming the variable).
    """
    raw = os.environ.get(MAX_BODY_ENV)
    if raw is None or not raw.strip():
        return MAX_BODY_BYTES
    if not raw.strip().isdigit() or int(raw) <= 0:
        raise ValueError(f"{MAX_BODY_ENV} must be a positive whole number, not {raw!r}")
    return int(raw)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        # Connection: close, or the server would go on reading the rest of the body to
        # keep the connection for a next request.
        super().__init__(
            413,
            f"the request body is larger than the limit of {limit} bytes",
            headers={"Connection": "close"},
        )


async def send_problem(send: Send, status: int, slug: str, title: str, detail: str) -> None:
    body = json.dumps(
        {"type": PROBLEM_TYPES + slug, "title": title, "status": status, "detail": detail}
    ).encode()
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", b"%d" % len(body))]
    if status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await send_problem(send, 413, "too-large", "Request body too large",
                               str(BodyTooLarge(self.limit).detail))  # fmt: skip
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except Exception as exc:
            _log_unhandled(scope, exc)
            if started:
                raise  # half an answer sent: the connection must end as a failure
            if isinstance(exc, BodyTooLarge):
                await send_problem(send, 413, "too-large", "Request body too large",
                                   str(exc.detail))  # fmt: skip
                return
            detail = "the request could not be completed; the error has been logged"
            await send_problem(send, 500, "internal-error", "Internal error", detail)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _log_unhandled(scope: Scope, exc: BaseException) -> None:
    if isinstance(exc, BodyTooLarge):
        return
    route: Any = scope.get("route")
    log.error(
        "unhandled error",
        exc_info=exc,
        extra={
            "method": scope.get("method"),
            "route": getattr(route, "path", None) or "unmatched",
            "exception": f"{type(exc).__name__}: {exc}"[:500],
        },
    )
