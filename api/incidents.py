"""For operators: the steps that could not be done for one episode (``carepath incidents``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from api.deps import ServicesDep, require
from api.problems import documented
from api.schemas import IncidentList
from api.tokens import Principal
from models.incidents import list_incidents

router = APIRouter(tags=["operations"])


@router.get(
    "/incidents",
    summary="Timers, episodes and deliveries that failed to process",
    response_model=None,
    responses={200: {"model": IncidentList}, **documented(401, 403, 422, 503)},
)
def incidents(
    parts: ServicesDep,
    _: Annotated[Principal, Depends(require("service"))],
    status: Annotated[Literal["open", "all"], Query(description="open (default) or all")] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Newest first, each with its kind, episode, timer or delivery, the error's first
    line, attempts, when first and last seen, and the next retry. Retried automatically
    after repair (``carepath incidents --retry ID`` to retry at once, ``--resolve ID`` to
    close one by hand)."""
    return {"items": list_incidents(parts.engine, include_resolved=status == "all", limit=limit)}
