"""An episode's history a page at a time: its steps (the audit rows) and its due items.

The episode view lists only what the episode stands on now: its current due items (the
open ones and the last closed one of each kind, :func:`engine.due.current_items`) and the
most recent :data:`TIMELINE_STEPS` steps of its timeline. What came before is read from
here, newest first, a page at a time, each page ending with a cursor for the next.

A timeline step is an audit row as the coordinator's page shows it: when it happened
(``at``) and was recorded, the trigger (``open``, ``event``, ``timer``), the event or timer
type, who, whether it was accepted, the rules that acted, the reason (a refusal's, or a
documented override's) and the configuration after it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from functools import cache
from typing import Any, Literal, cast

from sqlalchemy import Dialect, Engine, Table, bindparam, select

from engine.episode import OPEN_TASK_STATUSES, iso
from engine.errors import EpisodeNotFound, InvalidEvent
from models.db import read_only
from models.statements import Prepared
from models.store import EpisodeStore, Loaded, transaction
from models.tables import AuditEntry, Episode, Task

AUDIT_LOG = cast(Table, AuditEntry.__table__)
EPISODE = cast(Table, Episode.__table__)
TASK = cast(Table, Task.__table__)

TIMELINE_STEPS = 10  # the steps the episode view carries (our default)
PAGE_SIZE = 50  # a page of GET /episodes/{id}/timeline or /due, unless asked otherwise
MAX_PAGE_SIZE = 500
CLOSED_STATUSES = ("done", "cancelled")
DueFilter = Literal["open", "closed"]

_STEP_COLUMNS = (
    "seq", "occurred_at", "recorded_at", "trigger", "type", "actor", "accepted", "rules",
    "reason", "configuration_after",
)  # fmt: skip
_NEWEST_STEPS = (
    select(*(AUDIT_LOG.c[name] for name in _STEP_COLUMNS))
    .where(AUDIT_LOG.c.episode_id == bindparam("b_id"))
    .order_by(AUDIT_LOG.c.seq.desc())
    .limit(bindparam("b_limit"))
)
_EPISODE_EXISTS = select(EPISODE.c.id).where(EPISODE.c.id == bindparam("b_id"))


class _Statements:
    def __init__(self, dialect: Dialect) -> None:
        self.newest = Prepared(_NEWEST_STEPS, dialect)
        self.older = Prepared(_NEWEST_STEPS.where(AUDIT_LOG.c.seq < bindparam("b_before")), dialect)
        self.exists = Prepared(_EPISODE_EXISTS, dialect)


@cache
def _statements(dialect: Dialect) -> _Statements:
    return _Statements(dialect)


def cursor_for(position: int) -> str:
    """The opaque cursor of a page that continues before ``position``."""
    return base64.urlsafe_b64encode(str(position).encode()).decode()


def position_of(cursor: str) -> int:
    """The position a cursor given out by :func:`cursor_for` stands for.

    Raises:
        InvalidEvent: not a cursor this service gave out (field ``cursor``).
    """
    try:
        text = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    # Positions are row keys, which the databases keep below 2**31.
    if not text.isascii() or not text.isdigit() or int(text) >= 2**31:
        raise InvalidEvent("cursor", "not a cursor this API gave out")
    return int(text)


def timeline_step(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "at": iso(row["occurred_at"]),
        "recorded_at": iso(row["recorded_at"]),
        "trigger": row["trigger"],
        "type": row["type"],
        "actor": row["actor"],
        "accepted": bool(row["accepted"]),
        "rules": list(row["rules"] or []),
        "reason": row["reason"],
        "configuration": list(row["configuration_after"] or []),
    }


def _page(rows: Sequence[Mapping[str, Any]], limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` steps from ``limit + 1`` rows read, and the cursor past them."""
    steps = [timeline_step(row) for row in rows[:limit]]
    more = len(rows) > limit
    return steps, (cursor_for(steps[-1]["seq"]) if more else None)


def read_with_timeline(
    store: EpisodeStore, dialect: Dialect, episode_id: str, steps: int = TIMELINE_STEPS
) -> tuple[Loaded, list[dict[str, Any]], str | None]:
    """The episode as a step reads it, its ``steps`` most recent steps and the cursor to
    the ones before, in a read-only transaction of :func:`models.store.transaction`.

    On PostgreSQL the three reads (episode, due items, steps) go in one round trip, in a
    transaction of their own so that they see one snapshot (SQLite's reader already does).

    Raises:
        EpisodeNotFound: no such episode.
    """
    postgres = dialect.name == "postgresql"
    cursor = store.cursor
    with cursor.connection.pipeline() if postgres else nullcontext():
        if postgres:
            cursor.writer.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        values = {"b_id": episode_id, "b_limit": steps + 1}
        newest = cursor.query(_statements(dialect).newest, values)
        loaded = store.read(episode_id)
        rows = newest.all()
        if postgres:
            cursor.writer.execute("COMMIT")
    return (loaded, *_page(rows, steps))


def timeline_page(
    engine: Engine, episode_id: str, cursor: str | None = None, limit: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the episode's steps, newest first, from ``cursor`` (None: the newest).

    Raises:
        EpisodeNotFound: no such episode.
        InvalidEvent: a cursor this service did not give out.
    """
    sql = _statements(engine.dialect)
    values: dict[str, Any] = {"b_id": episode_id, "b_limit": limit + 1}
    if cursor is not None:
        values["b_before"] = position_of(cursor)
    with transaction(engine, read_only=True) as store:
        exists = store.cursor.query(sql.exists, {"b_id": episode_id})
        rows = store.cursor.query(sql.newest if cursor is None else sql.older, values).all()
        if exists.first() is None:
            raise EpisodeNotFound(episode_id)
    return _page(rows, limit)


def due_page(
    engine: Engine,
    episode_id: str,
    status: DueFilter | None = None,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the episode's due items, archived ones included, newest first (in the
    order they were first set): ``open`` ones, ``closed`` ones (done or cancelled), or
    all of them.

    Raises:
        EpisodeNotFound: no such episode.
        InvalidEvent: a cursor this service did not give out.
    """
    query = (
        select(TASK.c.id, TASK.c.key, TASK.c.rule, TASK.c.window_start, TASK.c.due_at,
               TASK.c.status, TASK.c.completed_at)
        .where(TASK.c.episode_id == episode_id)
        .order_by(TASK.c.id.desc())
        .limit(limit + 1)
    )  # fmt: skip
    if status is not None:
        query = query.where(
            TASK.c.status.in_(OPEN_TASK_STATUSES if status == "open" else CLOSED_STATUSES)
        )
    if cursor is not None:
        query = query.where(TASK.c.id < position_of(cursor))
    with read_only(engine) as connection:
        rows = list(connection.execute(query).mappings())
        if not rows and connection.execute(_EPISODE_EXISTS, {"b_id": episode_id}).first() is None:
            raise EpisodeNotFound(episode_id)
    items = [
        {
            "key": row["key"],
            "rule": row["rule"],
            "window_start": iso(row["window_start"]),
            "due_at": iso(row["due_at"]),
            "status": row["status"],
            "completed_at": iso(row["completed_at"]),
        }
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    return items, (cursor_for(rows[limit - 1]["id"]) if more else None)
