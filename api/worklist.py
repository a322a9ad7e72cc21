"""For care coordinators: their worklist, and acknowledging or completing an item."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from api.deps import ServicesDep, require
from api.tokens import Principal
from engine.errors import InvalidEvent
from models.worklist import acknowledge, find_task, worklist

router = APIRouter(tags=["worklist"])
Coordinator = Annotated[Principal, Depends(require("coordinator"))]
WINDOW = re.compile(r"([1-9]\d?)d")
# Ids are 32-bit integers in the database: a larger number cannot name an item.
TaskId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/worklist", summary="A coordinator's open due items, escalations first")
def read_worklist(
    parts: ServicesDep,
    who: Coordinator,
    coordinator: Annotated[str | None, Query(description="default: the token's subject")] = None,
    window: Annotated[str, Query(description="how far ahead upcoming items show, e.g. 7d")] = "7d",
) -> dict[str, Any]:
    """Escalated, overdue and due items, then those falling due within ``window``. A
    coordinator sees their own list only."""
    name = coordinator or who.subject
    if who.role != "admin" and name != who.subject:
        raise HTTPException(403, "a coordinator sees their own worklist only")
    match = WINDOW.fullmatch(window)
    if match is None:
        raise InvalidEvent("window", f"must be a number of days such as 7d, not {window!r}")
    now = parts.clock.now()
    items = worklist(parts.engine, name, now, timedelta(days=int(match.group(1))))
    return {"coordinator": name, "as_of": now.isoformat(), "items": items}


def _own_task(parts: ServicesDep, who: Principal, task_id: int) -> dict[str, Any]:
    task = find_task(parts.engine, task_id)
    if task is None:
        raise HTTPException(404, f"no due item with id {task_id}")
    if who.role != "admin" and task["owner"] != who.subject:
        raise HTTPException(403, "the item is on another coordinator's list")
    return task


@router.post("/tasks/{task_id}/ack", summary="Acknowledge an item in its current status")
def ack_task(task_id: TaskId, parts: ServicesDep, who: Coordinator) -> dict[str, Any]:
    task = _own_task(parts, who, task_id)
    acknowledge(parts.engine, task_id, who.subject, parts.clock.now())
    return {"task_id": task_id, "status": task["status"], "acknowledged": True}


@router.post("/tasks/{task_id}/done", summary="Mark an item done (audited)")
def complete(task_id: TaskId, parts: ServicesDep, who: Coordinator) -> dict[str, Any]:
    task = _own_task(parts, who, task_id)
    view = parts.repo.complete_task(task["episode_id"], task["key"], who.subject, parts.clock.now())
    return {"task_id": task_id, "status": "done", "episode": view}
