"""The coordinator's worklist: open due items, the most pressing first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Dialect, Engine, Table, and_, bindparam, case, or_, select, update

from models.db import read_only
from models.idempotency import KeyedWrite, answered, keyed_read
from models.statements import Prepared
from models.store import Store, run_step
from models.tables import Episode, Task

TASK = cast(Table, Task.__table__)
EPISODE = cast(Table, Episode.__table__)
# Escalated items on top, then overdue, due, and what falls due within the window.
PRESSING = ("escalated", "overdue", "due", "upcoming")


@dataclass(frozen=True)
class Position:
    """Where a page of the worklist ended: its last item's rank, due instant and id."""

    rank: int
    due_at: datetime
    task_id: int


def worklist(
    engine: Engine, coordinator: str, now: datetime, window: timedelta
) -> list[dict[str, Any]]:
    """The coordinator's open items: all that are due or late, and upcoming ones whose due
    date falls within ``window``."""
    rows = _items(engine, coordinator, now, window, None, None)
    for row in rows:
        del row["position"]
    return rows


def worklist_page(
    engine: Engine,
    coordinator: str,
    now: datetime,
    window: timedelta,
    limit: int,
    after: Position | None = None,
) -> tuple[list[dict[str, Any]], Position | None]:
    """:func:`worklist` a page at a time: ``limit`` items after ``after``, and where the
    next page starts (None at the end)."""
    rows = _items(engine, coordinator, now, window, limit + 1, after)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1]["position"] if more else None
    for row in rows:
        del row["position"]
    return rows, last


def _items(
    engine: Engine,
    coordinator: str,
    now: datetime,
    window: timedelta,
    limit: int | None,
    after: Position | None,
) -> list[dict[str, Any]]:
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
        .add_columns(rank.label("rank"))
        .order_by(rank, TASK.c.due_at, TASK.c.id)
    )
    if after is not None:
        query = query.where(
            or_(
                rank > after.rank,
                and_(rank == after.rank, TASK.c.due_at > after.due_at),
                and_(rank == after.rank, TASK.c.due_at == after.due_at, TASK.c.id > after.task_id),
            )
        )
    if limit is not None:
        query = query.limit(limit)
    with read_only(engine) as connection:
        rows = [dict(row) for row in connection.execute(query).mappings()]
    for row in rows:
        row["position"] = Position(row.pop("rank"), row["due_at"], row["task_id"])
        row["acknowledged"] = row.pop("acknowledged_status") == row["status"]
        for key in ("window_start", "due_at", "escalate_at", "acknowledged_at"):
            row[key] = row[key].isoformat() if row[key] else None
    return rows


def find_task(engine: Engine, task_id: int) -> dict[str, Any] | None:
    query = select(TASK.c.episode_id, TASK.c.key, TASK.c.owner, TASK.c.status)
    with read_only(engine) as connection:
        row = connection.execute(query.where(TASK.c.id == task_id)).mappings().first()
    return dict(row) if row else None


def acknowledge(
    engine: Engine, task_id: int, actor: str, now: datetime, keyed: KeyedWrite | None = None
) -> None:
    """Record that ``actor`` has seen the item in its current status (with ``keyed``, once
    per idempotency key).

    Raises:
        Replayed: ``keyed`` was answered before (nothing is written).
    """

    def seen(store: Store) -> None:
        keyed_read(store, keyed, now, lambda: None)
        values = {"b_id": task_id, "now": now, "actor": actor}
        store.cursor.run(_acknowledge(store.sql.dialect), values)
        answered(store, keyed, None)

    run_step(engine, seen)


@cache
def _acknowledge(dialect: Dialect) -> Prepared:
    statement = (
        update(TASK)
        .where(TASK.c.id == bindparam("b_id"))
        .values(
            acknowledged_at=bindparam("now"),
            acknowledged_by=bindparam("actor"),
            acknowledged_status=TASK.c.status,
        )
    )
    return Prepared(statement, dialect)
