"""The HTTP API: FastAPI, problem+json errors, bearer tokens with roles.

``create_app`` wires the routes to one database; ``carepath serve`` runs it with the
scheduler worker sweeping in the same process. Each process has one access-log writer
(:mod:`models.access_writer`), started and stopped with the app.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from sqlalchemy import Engine

from api import (
    access,
    assets,
    audit,
    calendar_feed,
    episodes,
    handover,
    incidents,
    ops,
    page_errors,
    pages,
    pathway_versions,
    problems,
    task_actions,
    worklist,
)
from api.access import AccessLogMiddleware
from api.deps import Services
from api.edge import EdgeMiddleware, max_body_from_env
from api.http_metrics import HttpMetrics, HttpMetricsMiddleware
from api.security import SecurityHeaders, WebSettings
from api.sessions import Sessions
from api.tokens import Tokens
from engine.clinic_time import Clock, SystemClock
from engine.settings import PathwayDefaults
from models.access_writer import AccessLogWriter
from models.audit_keys import process_key
from models.checkpointing import (
    CHECKPOINT_INTERVAL_ENV,
    DEFAULT_CHECKPOINT_INTERVAL,
    CheckpointSchedule,
)
from models.db import database_url, make_engine
from models.repository import EpisodeRepository
from schedulers import logs
from schedulers.channels import Channel, channels_from_env
from schedulers.metrics import WorkerMetrics
from schedulers.reminders import deliver_due
from schedulers.worker import Worker

DESCRIPTION = """\
The lumbosacral radiculopathy pathway over HTTP. Every request but `/healthz` needs a
bearer token (`carepath token create --role …`); errors are RFC 9457 problem details.
Writes take an `Idempotency-Key` header and are then safe to retry; bodies over 1 MiB are
refused (413); a 503 carries `Retry-After`.
"""


def create_app(
    engine: Engine,
    clock: Clock | None = None,
    defaults: PathwayDefaults | None = None,
    worker_interval: float | None = None,
    channels: Sequence[Channel] = (),
    token_cache_seconds: float = 0.0,
    owns_engine: bool = False,
    web: WebSettings | None = None,
    database_clock: bool = False,
    max_body_bytes: int | None = None,
    checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
) -> FastAPI:
    """The API on ``engine``; with ``worker_interval`` the worker sweeps in-process, sends
    reminders through ``channels`` and, when the process has the audit key
    (``CAREPATH_AUDIT_KEY_FILE``), signs the audit chain's head every
    ``checkpoint_interval`` seconds it has moved. A live token is remembered for
    ``token_cache_seconds`` (see :class:`api.tokens.Tokens`). With ``owns_engine`` the
    engine is disposed when the app shuts down. ``web`` is the base URL and the page
    sessions' limits (:class:`api.security.WebSettings`). With ``database_clock``
    (``carepath serve``) the database's clock decides what is due, for the worker and
    ``/healthz``'s lag (PostgreSQL; SQLite's clock is ``clock``). A request body over
    ``max_body_bytes`` (default ``CAREPATH_MAX_BODY_BYTES``, else 1 MiB) is answered 413
    unread."""
    clock = clock or SystemClock()
    web = web or WebSettings()
    repo = EpisodeRepository(engine, defaults)
    tokens = Tokens(engine, token_cache_seconds)
    sessions = Sessions(engine, clock, web.session)
    parts = Services(engine, repo, clock, WorkerMetrics(), tokens, sessions, web)
    access_log = AccessLogWriter(engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        access_log.start()
        stop = None
        if worker_interval is not None:
            # Each reminder links to its item at the address people reach carepath at.
            deliver = (partial(deliver_due, engine, channels, base_url=web.base_url)
                       if channels else None)  # fmt: skip
            key = process_key()
            checkpoints = CheckpointSchedule(engine, key, checkpoint_interval) if key else None
            worker = Worker(repo, clock, deliver=deliver, metrics=parts.metrics,
                            database_clock=database_clock, checkpoint=checkpoints)  # fmt: skip
            stop = worker.start(worker_interval)
        try:
            yield
        finally:
            if stop is not None:
                stop()
            access_log.stop()
            if owns_engine:
                engine.dispose()

    app = FastAPI(
        title="carepath",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by api.assets, from carepath's own copy of Swagger UI
        redoc_url=None,
    )
    app.state.services = parts
    app.state.health = ops.HealthSettings.from_env(database_clock)
    app.state.access_log = access_log
    # Added first, so it runs inside the metrics: a read refused for want of its record
    # is counted as the 503 it was answered with.
    app.add_middleware(AccessLogMiddleware, writer=access_log, clock=clock)
    # Outside the access log, inside the metrics: 413s and 500s are counted too.
    app.add_middleware(EdgeMiddleware, max_body_bytes=max_body_bytes or max_body_from_env())
    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(parts.metrics.registry))
    app.add_middleware(SecurityHeaders, hsts=web.https)
    problems.install(app)
    app.include_router(episodes.router)
    pages.install(app)
    # Last of the handlers: a problem on a page route, to a browser, becomes a page.
    page_errors.install(app)
    app.include_router(assets.router)
    app.include_router(worklist.router)
    app.include_router(handover.router)
    app.include_router(task_actions.router)
    app.include_router(calendar_feed.router)
    app.include_router(audit.router)
    app.include_router(access.router)
    app.include_router(ops.router)
    app.include_router(incidents.router)
    app.include_router(pathway_versions.router)
    return app


# How `carepath serve --workers N` hands its settings to each worker process.
SWEEP_INTERVAL_ENV = "CAREPATH_SERVE_INTERVAL"
TOKEN_CACHE_ENV = "CAREPATH_TOKEN_CACHE_SECONDS"
LOG_FORMAT_ENV = "CAREPATH_LOG_FORMAT"


def app_from_env() -> FastAPI:
    """The app of one process of ``carepath serve --workers N``, set up from the environment
    the command leaves for it: the database, the pathway defaults, the reminder channels,
    the sweep and checkpoint intervals, the token cache and the base URL. Each process
    sweeps too, as several ``carepath worker`` processes may: timers are claimed, never
    shared."""
    logs.configure(json_lines=os.environ.get(LOG_FORMAT_ENV, "json") == "json")
    interval = os.environ.get(SWEEP_INTERVAL_ENV)
    checkpoints = os.environ.get(CHECKPOINT_INTERVAL_ENV)
    return create_app(
        make_engine(database_url()),
        SystemClock(),
        PathwayDefaults.from_env(),
        worker_interval=float(interval) if interval else None,
        channels=channels_from_env(),
        token_cache_seconds=float(os.environ.get(TOKEN_CACHE_ENV, "0")),
        owns_engine=True,
        web=WebSettings.from_env(),
        database_clock=True,
        checkpoint_interval=float(checkpoints) if checkpoints else DEFAULT_CHECKPOINT_INTERVAL,
    )
