"""What the browser-facing hardening costs per request, measured in-process.

    .venv/bin/python -m bench.page_security [--requests 20000] [--repeat 5]
        [--backend sqlite|postgresql]

Three figures, each the best of ``--repeat`` interleaved runs of ``--requests`` requests
driven straight through the ASGI app (no sockets, so only the app's own work is counted),
in requests per second of this process's CPU time: on a shared machine the wall clock
measures the neighbours as much as the code.

- the security headers middleware alone, around an app that answers a fixed body;
- ``GET /episodes/{id}`` with a bearer token (the API's hot read), with the middleware and
  with it taken out of the same app;
- the coordinator's episode page opened with a session cookie (one session look-up per
  request, a write at most once a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from api.app import create_app
from api.security import SecurityHeaders
from api.sessions import SESSION_COOKIE
from api.tokens import create_token
from bench.events import drop_database, fresh_database
from engine.clinic_time import FakeClock
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.db import make_engine, upgrade
from models.repository import EpisodeRepository

NOW = datetime(2026, 2, 2, 9, tzinfo=UTC)


def scope(path: str, headers: list[tuple[bytes, bytes]]) -> Scope:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip


async def drive(app: Callable[..., Any], request: Scope, count: int) -> float:
    """Requests per CPU second answering ``request`` ``count`` times, one after another."""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    status = 0

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    began = time.process_time()
    for _ in range(count):
        await app(dict(request), receive, send)
    elapsed = time.process_time() - began
    assert status == 200, f"{request['path']} answered {status}"
    return count / elapsed


async def fixed(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"{}"})


def without_headers(app: FastAPI) -> FastAPI:
    """The same app with the security headers middleware taken out."""
    app.user_middleware = [
        m for m in app.user_middleware if getattr(m, "cls", None) is not SecurityHeaders
    ]
    app.middleware_stack = None
    return app


def best(runs: list[float]) -> str:
    return f"{max(runs):,.0f}/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        url, handle = fresh_database(args.backend, workdir)
        engine = make_engine(url)
        try:
            upgrade(engine)
            run(engine, args.requests, args.repeat)
        finally:
            engine.dispose()
            drop_database(handle)


def run(engine: Any, requests: int, repeat: int) -> None:
    clock = FakeClock(NOW)
    repo = EpisodeRepository(engine, PathwayDefaults())
    opening = parse_opening({"patient": {"ref": "B-1"}, "onset": "2026-01-19",
                             "coordinator": "bench"})  # fmt: skip
    episode = repo.open(opening, NOW)["id"]
    _, service = create_token(engine, "service", "bench", NOW)
    _, coordinator = create_token(engine, "coordinator", "bench", NOW)
    with_mw = create_app(engine, clock, PathwayDefaults())
    bare = without_headers(create_app(engine, clock, PathwayDefaults()))
    session_id = with_mw.state.services.sessions.start(
        with_mw.state.services.tokens.principal(coordinator)
    )
    read = scope(f"/episodes/{episode}", [(b"authorization", f"Bearer {service}".encode())])
    page = scope(f"/pages/episodes/{episode}",
                 [(b"cookie", f"{SESSION_COOKIE}={session_id}".encode())])  # fmt: skip
    middleware = SecurityHeaders(fixed)
    figures: dict[str, list[float]] = {k: [] for k in ("fixed", "mw", "read", "bare", "page")}
    loop = asyncio.new_event_loop()
    try:
        runs: list[tuple[str, Callable[..., Any], Scope, int]] = [
            ("fixed", fixed, read, requests),
            ("mw", middleware, read, requests),
            ("read", with_mw, read, requests // 10),
            ("bare", bare, read, requests // 10),
            ("page", with_mw, page, requests // 50),
        ]
        for n in range(repeat):
            # Each pair in both orders, turn about: a busy machine's drift falls on both.
            for name, app, request, count in runs if n % 2 == 0 else runs[::-1]:
                figures[name].append(loop.run_until_complete(drive(app, request, count)))
    finally:
        loop.close()
    added = 1e6 / max(figures["mw"]) - 1e6 / max(figures["fixed"])
    print(f"fixed answer: {best(figures['fixed'])} bare, {best(figures['mw'])} with the "
          f"security headers ({added:.1f} µs per request)")  # fmt: skip
    cost = (max(figures["bare"]) - max(figures["read"])) / max(figures["bare"]) * 100
    print(f"GET /episodes/{{id}} (bearer): {best(figures['read'])} with the headers, "
          f"{best(figures['bare'])} without (the headers cost {cost:.1f} %)")  # fmt: skip
    print(f"GET /pages/episodes/{{id}} (session cookie): {best(figures['page'])}")


if __name__ == "__main__":
    main()
