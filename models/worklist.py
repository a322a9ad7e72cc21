"""The coordinator's worklist: open due items, the most pressing first."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, case, or_, select, update

from models.db import read_only
from models.tables import Episode, Task

TASK = cast(Table, Task.__table__)
EPISODE = cast(Table, Episode.__table__)
# Escalated items on top, then overdue, due, and what falls due within the window.
PRESSING = ("escalated", "overdue", "due", "upcoming")


def worklist(
    engine: Engine, coordinator: str, now: datetime, window: timedelta
) -> list[dict[str, Any]]:
    """The coordinator's open items: all that are due or late, and upcoming ones whose due
    date falls within ``window``."""
    rank = case({status: i for i, status in enumerate(PRESSING)}, value=TASK.c.status)
    query = (
        select(
            TASK.c.id.label("task_id"),
            TASK.c.episode_id,
            EPISODE.c.patient_ref,
            TASK.c.key,
            TASK.c.rule,
            TASK.c.status,
            TASK.c.window_start,
            TASK.c.due_at,
            TASK.c.escalate_at,
            TASK.c.acknowledged_at,
            TASK.c.acknowledged_status,
        )
        .join(EPISODE, EPISODE.c.id == TASK.c.episode_id)
        .where(
            TASK.c.owner == coordinator,
            TASK.c.status.in_(PRESSING),
            or_(TASK.c.status != "upcoming", TASK.c.due_at <= now + window),
        )
        .order_by(rank, TASK.c.due_at, TASK.c.id)
    )
    with read_only(engine) as connection:
        rows = [dict(row) for row in connection.execute(query).mappings()]
    for row in rows:
        row["acknowledged"] = row.pop("acknowledged_status") == row["status"]
        for key in ("window_start", "due_at", "escalate_at", "acknowledged_at"):
            row[key] = row[key].isoformat() if row[key] else None
    return rows


def find_task(engine: Engine, task_id: int) -> dict[str, Any] | None:
    query = select(TASK.c.episode_id, TASK.c.key, TASK.c.owner, TASK.c.status)
    with read_only(engine) as connection:
        row = connection.execute(query.where(TASK.c.id == task_id)).mappings().first()
    return dict(row) if row else None


def acknowledge(engine: Engine, task_id: int, actor: str, now: datetime) -> None:
    """Record that ``actor`` has seen the item in its current status."""
    with engine.begin() as connection:
        connection.execute(
            update(TASK)
            .where(TASK.c.id == task_id)
            .values(acknowledged_at=now, acknowledged_by=actor, acknowledged_status=TASK.c.status)
        )
