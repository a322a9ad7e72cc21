"""The coordinator's worklist: open due items, the most pressing first.

In urgency order (the default) items rank by severity (an emergency first: the rank each
item keeps, :data:`engine.episode.SEVERITIES`), then by their deadline, the most overdue
first; in due order by their deadline alone. Both read an index of the coordinator's items
and page by keyset (:class:`Position`). Each item says how pressing it is in words a
coordinator works with: its severity, how long it is overdue or until it falls due, who it
is assigned to, and its times in the clinic's time zone, named.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Dialect,
    Engine,
    Table,
    and_,
    bindparam,
    insert,
    literal,
    or_,
    select,
    update,
)

from engine.episode import OPEN_TASK_STATUSES, SEVERITIES
from models.db import read_only
from models.idempotency import KeyedWrite, answered, keyed_read
from models.statements import Prepared
from models.store import Store, run_step
from models.tables import Episode, Task, TaskAction

TASK = cast(Table, Task.__table__)
EPISODE = cast(Table, Episode.__table__)
ACTION = cast(Table, TaskAction.__table__)
SORTS = ("urgency", "due")
_TIMES = ("window_start", "due_at", "escalate_at", "acknowledged_at", "snoozed_until")


@dataclass(frozen=True)
class Queue:
    """Whose items a worklist holds.

    ``owners`` named: the items in those coordinators' charge (a coordinator's own and those
    of the colleagues they cover), within ``team`` when named. None named: the unassigned
    queue, items of episodes in nobody's charge, of ``team`` or (no team) the clinic-wide
    queue of episodes among no team's. ``whole_team``: every item of ``team``'s episodes,
    whoever has them.
    """

    owners: tuple[str, ...] = ()
    team: str | None = None
    whole_team: bool = False

    def where(self) -> list[Any]:
        """The conditions on a task row, each served by an index in urgency order (a
        single owner; a team's unassigned queue; several owners are read and sorted)."""
        if self.whole_team:
            return [TASK.c.team == self.team]
        team = TASK.c.team == self.team if self.team is not None else None
        if not self.owners:
            return [TASK.c.owner.is_(None), TASK.c.team.is_(None) if team is None else team]
        if len(self.owners) == 1:
            owned = TASK.c.owner == self.owners[0]
        else:
            owned = TASK.c.owner.in_(self.owners)
        return [owned] if team is None else [owned, team]


@dataclass(frozen=True)
class Filters:
    """What a worklist is narrowed to (None: anything): an item status, the rule that set
    the item, its severity's rank, the patient's reference (exact); snoozed items are left
    out unless ``with_snoozed``."""

    status: str | None = None
    rule: str | None = None
    severity: int | None = None
    patient_ref: str | None = None
    with_snoozed: bool = False


@dataclass(frozen=True)
class Position:
    """Where a page of the worklist ended: the order it was read in, its last item's rank
    in that order (its severity, in urgency order; 0 in due order), due instant and id."""

    sort: str
    rank: int
    due_at: datetime
    task_id: int


def worklist(
    engine: Engine, queue: Queue, now: datetime, window: timedelta, sort: str = "urgency",
) -> list[dict[str, Any]]:  # fmt: skip
    """The queue's open items: all that are due or late, and upcoming ones whose due date
    falls within ``window``."""
    rows = _items(engine, queue, now, window, sort, Filters(), None, None)
    for row in rows:
        del row["position"]
    return rows


def worklist_page(
    engine: Engine,
    queue: Queue,
    now: datetime,
    window: timedelta,
    limit: int,
    after: Position | None = None,
    sort: str = "urgency",
    filters: Filters = Filters(),
) -> tuple[list[dict[str, Any]], Position | None]:
    """:func:`worklist` a page at a time, narrowed by ``filters``: ``limit`` items after
    ``after``, and where the next page starts (None at the end).

    Raises:
        ValueError: ``after`` was a position in another order.
    """
    if after is not None and after.sort != sort:
        raise ValueError(f"the cursor is of the worklist in {after.sort} order, not {sort}")
    rows = _items(engine, queue, now, window, sort, filters, limit + 1, after)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1]["position"] if more else None
    for row in rows:
        del row["position"]
    return rows, last


def _items(
    engine: Engine,
    queue: Queue,
    now: datetime,
    window: timedelta,
    sort: str,
    filters: Filters,
    limit: int | None,
    after: Position | None,
) -> list[dict[str, Any]]:
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    rank = TASK.c.severity if sort == "urgency" else literal(0)
    query = (
        select(
            TASK.c.id.label("task_id"),
            TASK.c.episode_id,
            EPISODE.c.patient_ref,
            EPISODE.c.clinic_timezone,
            TASK.c.key,
            TASK.c.rule,
            TASK.c.status,
            TASK.c.severity,
            TASK.c.owner,
            TASK.c.team,
            TASK.c.window_start,
            TASK.c.due_at,
            TASK.c.escalate_at,
            TASK.c.acknowledged_at,
            TASK.c.acknowledged_by,
            TASK.c.acknowledged_status,
            TASK.c.snoozed_until,
            TASK.c.snoozed_status,
        )
        .join(EPISODE, EPISODE.c.id == TASK.c.episode_id)
        .where(
            *queue.where(),
            TASK.c.status.in_(OPEN_TASK_STATUSES),
            or_(TASK.c.status != "upcoming", TASK.c.due_at <= now + window),
        )
        .order_by(*([TASK.c.severity] if sort == "urgency" else []), TASK.c.due_at, TASK.c.id)
    )
    for column, wanted in (
        (TASK.c.status, filters.status),
        (TASK.c.rule, filters.rule),
        (TASK.c.severity, filters.severity),
        (EPISODE.c.patient_ref, filters.patient_ref),
    ):
        if wanted is not None:
            query = query.where(column == wanted)
    if not filters.with_snoozed:
        query = query.where(_awake(now))
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
        contacts, others = _last_actions(connection, [row["task_id"] for row in rows])
    items = [_item(row, sort, now) for row in rows]
    for item in items:
        item["last_contact"] = contacts.get(item["task_id"])
        item["last_action"] = others.get(item["task_id"])
    return items


Latest = dict[int, dict[str, Any]]


def _last_actions(connection: Any, task_ids: list[int]) -> tuple[Latest, Latest]:
    """Each item's latest contact attempt (outcome, note, who and when, UTC), and its
    latest other action (snoozed, done, reopened: kind, what was said, who, when), in one
    read."""
    if not task_ids:
        return {}, {}
    query = (
        select(ACTION.c.task_id, ACTION.c.kind, ACTION.c.outcome, ACTION.c.note,
               ACTION.c.actor, ACTION.c.at, ACTION.c.until)  # fmt: skip
        .where(ACTION.c.task_id.in_(task_ids))
        .order_by(ACTION.c.task_id, ACTION.c.at.desc(), ACTION.c.id.desc())
    )
    contacts: Latest = {}
    others: Latest = {}
    for row in connection.execute(query).mappings():
        task_id, kind = row["task_id"], row["kind"]
        if kind == "contact" and task_id not in contacts:
            contacts[task_id] = {"outcome": row["outcome"], "note": row["note"],
                                 "by": row["actor"], "at": row["at"].isoformat()}  # fmt: skip
        elif kind != "contact" and task_id not in others:
            until = row["until"].isoformat() if row["until"] else None
            others[task_id] = {"kind": kind, "said": row["outcome"], "by": row["actor"],
                               "at": row["at"].isoformat(), "until": until}  # fmt: skip
    return contacts, others


def _item(row: dict[str, Any], sort: str, now: datetime) -> dict[str, Any]:
    """One row as the worklist gives it: how pressing, whose, and when in the clinic."""
    severity = row["severity"]
    row["position"] = Position(sort, severity if sort == "urgency" else 0, row["due_at"],
                               row["task_id"])  # fmt: skip
    row["acknowledged"] = row.pop("acknowledged_status") == row["status"]
    snoozed_in, until = row.pop("snoozed_status"), row["snoozed_until"]
    if until is not None and (snoozed_in != row["status"] or until <= now):
        row["snoozed_until"] = None  # its snooze no longer holds
    row["severity"] = SEVERITIES[severity]
    row["assignee"] = row.pop("owner")
    late = now - row["due_at"]
    row["overdue_by"] = iso_duration(late) if late >= timedelta(0) else None
    row["due_in"] = iso_duration(-late) if late < timedelta(0) else None
    zone = row.pop("clinic_timezone")
    clinic = ZoneInfo(zone)
    row["time_zone"] = zone
    for key in _TIMES:
        row[key] = row[key].astimezone(clinic).isoformat() if row[key] else None
    return row


def iso_duration(span: timedelta) -> str:
    """``span`` as an ISO 8601 duration to the minute, days and hours and minutes
    (``P2DT3H15M``, ``PT45M``, ``PT0M``)."""
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    time = f"{hours}H" if hours else ""
    if minutes or not (days or hours):
        time += f"{minutes}M"
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


def _awake(now: datetime) -> Any:
    """Not snoozed, or no longer: its snooze is over, or its status moved since (an item
    that falls due, overdue or escalated comes back whatever its snooze said)."""
    return or_(
        TASK.c.snoozed_until.is_(None),
        TASK.c.snoozed_until <= now,
        TASK.c.snoozed_status != TASK.c.status,
    )


def snooze(
    engine: Engine, task_id: int, status: str, actor: str, until: datetime, reason: str,
    note: str | None, now: datetime, keyed: KeyedWrite | None = None,
) -> None:  # fmt: skip
    """Take the item, in ``status``, off the list until ``until`` (with ``keyed``, once per
    idempotency key); on record with who, when and why.

    Raises:
        Replayed: ``keyed`` was answered before (nothing is written).
    """

    def snoozed(store: Store) -> None:
        keyed_read(store, keyed, now, lambda: None)
        values = {"b_id": task_id, "until": until, "status": status}
        store.cursor.run(_snooze(store.sql.dialect), values)
        record_action(store, task_id, "snooze", actor, reason, note, now, until)
        answered(store, keyed, None)

    run_step(engine, snoozed)


@cache
def _snooze(dialect: Dialect) -> Prepared:
    statement = (
        update(TASK)
        .where(TASK.c.id == bindparam("b_id"))
        .values(snoozed_until=bindparam("until"), snoozed_status=bindparam("status"))
    )
    return Prepared(statement, dialect)


def wake(store: Store, task_id: int) -> None:
    """End the item's snooze, in the store's transaction (a reopened item is back on the
    list, whatever was said before it was done)."""
    store.cursor.run(_snooze(store.sql.dialect), {"b_id": task_id, "until": None,
                                                  "status": None})  # fmt: skip


def last_action(engine: Engine, task_id: int) -> dict[str, Any] | None:
    """The latest of what coordinators did on the item, other than contacts: its kind,
    outcome, who and when."""
    query = (
        select(ACTION.c.kind, ACTION.c.outcome, ACTION.c.actor, ACTION.c.at)
        .where(ACTION.c.task_id == task_id, ACTION.c.kind != "contact")
        .order_by(ACTION.c.at.desc(), ACTION.c.id.desc())
        .limit(1)
    )
    with read_only(engine) as connection:
        row = connection.execute(query).mappings().first()
    return dict(row) if row else None


def log_contact(
    engine: Engine, task_id: int, actor: str, outcome: str, note: str | None, now: datetime,
    keyed: KeyedWrite | None = None,
) -> None:  # fmt: skip
    """Record a contact attempt on the item (with ``keyed``, once per idempotency key).

    Raises:
        Replayed: ``keyed`` was answered before (nothing is written).
    """

    def logged(store: Store) -> None:
        keyed_read(store, keyed, now, lambda: None)
        record_action(store, task_id, "contact", actor, outcome, note, now)
        answered(store, keyed, None)

    run_step(engine, logged)


def record_action(
    store: Store, task_id: int, kind: str, actor: str, outcome: str, note: str | None,
    now: datetime, until: datetime | None = None,
) -> None:  # fmt: skip
    """One row of what a coordinator did on an item, in the store's transaction."""
    values = {"task_id": task_id, "kind": kind, "actor": actor, "at": now,
              "outcome": outcome, "note": note, "until": until}  # fmt: skip
    store.cursor.run(_log_action(store.sql.dialect), values)


@cache
def _log_action(dialect: Dialect) -> Prepared:
    names = ("task_id", "kind", "actor", "at", "outcome", "note", "until")
    return Prepared(insert(ACTION).values({n: bindparam(n) for n in names}), dialect)


def find_task(engine: Engine, task_id: int) -> dict[str, Any] | None:
    """The item's episode, key, owner, team, status and severity, and where its episode's
    referral stands."""
    query = select(
        TASK.c.episode_id,
        TASK.c.key,
        TASK.c.owner,
        TASK.c.team,
        TASK.c.status,
        TASK.c.severity,
        TASK.c.rule,
        TASK.c.due_at,
        TASK.c.snoozed_until,
        EPISODE.c.referral,
        EPISODE.c.patient_ref,
        EPISODE.c.clinic_timezone,
    ).join(EPISODE, EPISODE.c.id == TASK.c.episode_id)
    with read_only(engine) as connection:
        row = connection.execute(query.where(TASK.c.id == task_id)).mappings().first()
    return dict(row) if row else None


def acknowledge(
    engine: Engine, task_ids: int | list[int], actor: str, now: datetime,
    keyed: KeyedWrite | None = None,
) -> None:  # fmt: skip
    """Record that ``actor`` has seen the items in their current status, all in one
    transaction (with ``keyed``, once per idempotency key).

    Raises:
        Replayed: ``keyed`` was answered before (nothing is written).
    """
    ids = [task_ids] if isinstance(task_ids, int) else task_ids

    def seen(store: Store) -> None:
        keyed_read(store, keyed, now, lambda: None)
        for task_id in ids:
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
