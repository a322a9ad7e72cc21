"""For operators: is the service healthy, and its Prometheus metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from api.deps import ServicesDep, require
from api.problems import documented
from api.schemas import Health
from api.tokens import Principal
from models.db import read_only
from models.tables import DueTimer

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Database reachable, and how far the worker lags",
    response_class=JSONResponse,
    responses={
        200: {"model": Health, "description": "The database answers"},
        503: {"model": Health, "description": "The database does not answer"},
    },
)
def healthz(parts: ServicesDep) -> JSONResponse:
    """No token needed, and nothing about patients: 200 when the database answers, with the
    age of the oldest due timer not yet fired; 503 when it does not."""
    now = parts.clock.now()
    try:
        with read_only(parts.engine) as connection:
            oldest: datetime | None = connection.scalar(
                select(func.min(DueTimer.due_at)).where(
                    DueTimer.status == "pending", DueTimer.due_at <= now
                )
            )
    except DBAPIError:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
    lag = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    body: dict[str, Any] = {"status": "ok", "database": "ok", "timer_lag_seconds": lag}
    return JSONResponse(body)


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
    return Response(generate_latest(parts.metrics.registry), media_type=CONTENT_TYPE_LATEST)
