"""For operators: is the service healthy, and its Prometheus metrics.

``/healthz`` is degraded (503) while incidents are open or the oldest due timer waits
longer than the threshold (:data:`DEFAULT_MAX_LAG_SECONDS`, ``CAREPATH_HEALTH_MAX_LAG_SECONDS``):
a load balancer or monitor sees it without a token. It gives counts, never episode ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from api.deps import ServicesDep, require
from api.problems import documented
from api.schemas import Health
from api.tokens import Principal
from models.db import read_only
from models.incidents import INCIDENT, open_counts
from models.tables import DueTimer

router = APIRouter(tags=["operations"])
DEFAULT_MAX_LAG_SECONDS = 300.0
MAX_LAG_ENV = "CAREPATH_HEALTH_MAX_LAG_SECONDS"


@dataclass(frozen=True)
class HealthSettings:
    """``max_lag_seconds``: a lag past it is degraded. ``database_clock``: the lag is
    measured by the database's clock (PostgreSQL), as the worker decides what is due."""

    max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS
    database_clock: bool = False

    @classmethod
    def from_env(cls, database_clock: bool = False) -> HealthSettings:
        return cls(float(os.environ.get(MAX_LAG_ENV, DEFAULT_MAX_LAG_SECONDS)), database_clock)


@router.get(
    "/healthz",
    summary="Database reachable, and how far the worker lags",
    response_class=JSONResponse,
    responses={
        200: {"model": Health, "description": "The database answers; no incident, no lag"},
        503: {
            "model": Health,
            "description": "degraded (open incidents, or the lag past its threshold), or the "
            "database does not answer",
        },
    },
)
def healthz(parts: ServicesDep, request: Request) -> JSONResponse:
    """No token needed, and nothing about patients: 200 when the database answers, no
    incident is open and the oldest due timer waits less than the threshold; 503
    ``degraded`` otherwise (with the reasons), or ``unavailable`` without a database."""
    settings: HealthSettings = getattr(request.app.state, "health", HealthSettings())
    pending = (DueTimer.status == "pending",)
    try:
        with read_only(parts.engine) as connection:
            if settings.database_clock and parts.engine.dialect.name == "postgresql":
                age = func.extract("epoch", func.now() - func.min(DueTimer.due_at))
                due = DueTimer.due_at <= func.now()
                seconds = connection.scalar(select(age).where(*pending, due))
                lag = max(0.0, float(seconds)) if seconds is not None else 0.0
            else:
                now = parts.clock.now()
                oldest: datetime | None = connection.scalar(
                    select(func.min(DueTimer.due_at)).where(*pending, DueTimer.due_at <= now)
                )
                lag = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
            incidents = connection.scalar(
                select(func.count()).select_from(INCIDENT).where(INCIDENT.c.resolved_at.is_(None))
            ) or 0
    except DBAPIError:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
    reasons = []
    if incidents:
        reasons.append(f"{incidents} open incident(s)")
    if lag > settings.max_lag_seconds:
        reasons.append(f"the oldest due timer has waited {lag:.0f} s")
    body: dict[str, Any] = {
        "status": "degraded" if reasons else "ok",
        "database": "ok",
        "timer_lag_seconds": lag,
        "open_incidents": incidents,
        "lag_threshold_seconds": settings.max_lag_seconds,
        "reasons": reasons,
    }
    return JSONResponse(body, 503 if reasons else 200)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {CONTENT_TYPE_LATEST: {"example": "carepath_timers_fired_total 1042.0\n"}},
        },
        **documented(401, 403),
    },
)
def metrics(parts: ServicesDep, _: Annotated[Principal, Depends(require("service"))]) -> Response:
    # Open incidents as the database has them now, whichever process's worker saw them.
    for kind, count in open_counts(parts.engine).items():
        parts.metrics.open_incidents.labels(kind).set(count)
    return Response(generate_latest(parts.metrics.registry), media_type=CONTENT_TYPE_LATEST)
