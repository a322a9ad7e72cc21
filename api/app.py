"""The HTTP API: FastAPI, problem+json errors, bearer tokens with roles.

``create_app`` wires the routes to one database; ``carepath serve`` runs it with the
scheduler worker sweeping in the same process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from sqlalchemy import Engine

from api import audit, calendar_feed, episodes, ops, pages, problems, worklist
from api.deps import Services
from engine.clinic_time import Clock, SystemClock
from engine.settings import PathwayDefaults
from models.repository import EpisodeRepository
from schedulers.channels import Channel
from schedulers.metrics import WorkerMetrics
from schedulers.reminders import deliver_due
from schedulers.worker import Worker

DESCRIPTION = """\
The lumbosacral radiculopathy pathway over HTTP. Every request but `/healthz` needs a
bearer token (`carepath token create --role …`); errors are RFC 9457 problem details.
"""


def create_app(
    engine: Engine,
    clock: Clock | None = None,
    defaults: PathwayDefaults | None = None,
    worker_interval: float | None = None,
    channels: Sequence[Channel] = (),
) -> FastAPI:
    """The API on ``engine``; with ``worker_interval`` the worker sweeps in-process and
    sends reminders through ``channels``."""
    clock = clock or SystemClock()
    repo = EpisodeRepository(engine, defaults)
    parts = Services(engine, repo, clock, WorkerMetrics())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = None
        if worker_interval is not None:
            deliver = partial(deliver_due, engine, channels) if channels else None
            worker = Worker(repo, clock, deliver=deliver, metrics=parts.metrics)
            stop = worker.start(worker_interval)
        try:
            yield
        finally:
            if stop is not None:
                stop()

    app = FastAPI(
        title="carepath",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = parts
    problems.install(app)
    app.include_router(episodes.router)
    app.include_router(pages.router)
    app.include_router(worklist.router)
    app.include_router(calendar_feed.router)
    app.include_router(audit.router)
    app.include_router(ops.router)
    return app
