"""An episode's history a page at a time: its steps (the audit rows) and its due items.

The episode view lists only what the episode stands on now: its current due items (the
open ones and the last closed one of each kind, :func:`engine.due.current_items`) and the
most recent :data:`TIMELINE_STEPS` steps of its timeline. What came before is read from
here, newest first, a page at a time, each page ending with a cursor for the next.

From 1.1.0 (EVENTS-AT-OCCURRED) the timeline is in the order things happened: by ``at``,
newest first (a visit documented late among the steps of its day), the sequence number
breaking ties; before, in the order the steps were recorded.

A timeline step is an audit row as the coordinator's page shows it: its sequence number,
when it happened (``at``: an event's occurred_at, a timer's due instant), the trigger
(``open``, ``event``, ``timer``), the event or timer type, who, whether it was accepted,
the rules that acted and the reason (a refusal's, or a documented override's). The audit
row itself (``GET /audit/transitions?episode=``) has the rest: when it was recorded, the
configurations before and after, the payload's digest and the chain's hashes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal, cast

from sqlalchemy import (
    Dialect,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

import pathways
from engine.episode import OPEN_TASK_STATUSES, EpisodeState, iso
from engine.errors import EpisodeNotFound, InvalidEvent
from models.db import read_only
from models.statements import Prepared
from models.step_sql import READ_EPISODE
from models.store import Store, transaction
from models.stored import state_from_rows
from models.tables import AuditEntry, Episode, Task
from models.types import PortableJSON

AUDIT_LOG = cast(Table, AuditEntry.__table__)
EPISODE = cast(Table, Episode.__table__)
TASK = cast(Table, Task.__table__)

TIMELINE_STEPS = 10  # the steps the episode view carries (our default)
PAGE_SIZE = 50  # a page of GET /episodes/{id}/timeline or /due, unless asked otherwise
MAX_PAGE_SIZE = 500
CLOSED_STATUSES = ("done", "cancelled")
DueFilter = Literal["open", "closed"]
NOT_OURS = "not a cursor this API gave out"
EVENTS_AT_OCCURRED = "EVENTS-AT-OCCURRED"  # the correction that orders timelines by time
_EPISODE_ID = select(EPISODE.c.id, EPISODE.c.pathway_id, EPISODE.c.pathway_version).where(
    EPISODE.c.id == bindparam("b_id")
)

# What a step shows, and no more: the view carries ten of them on the busiest route.
_STEP_COLUMNS = ("seq", "occurred_at", "trigger", "type", "actor", "accepted", "rules", "reason")


def _steps(dialect: Dialect, before: bool, by_occurrence: bool = False) -> Any:
    """The episode's ``b_steps`` most recent steps (those before ``b_before``) as one JSON
    array of ``_STEP_COLUMNS`` arrays, a scalar subquery for a column of the episode's own
    read; most recent by recording, or ``by_occurrence`` (those before ``b_before_at``,
    ``b_before``).

    A query of their own cost the busiest route, ``GET /episodes/{id}``, more than the
    rest of the timeline's reading: as a column they cost the database an index scan and
    the driver one JSON value.
    """
    postgres = dialect.name == "postgresql"
    recent = select(*(AUDIT_LOG.c[name] for name in _STEP_COLUMNS)).where(
        AUDIT_LOG.c.episode_id == bindparam("b_id")
    )
    order = [AUDIT_LOG.c.seq.desc()]
    if by_occurrence:
        order.insert(0, AUDIT_LOG.c.occurred_at.desc())
    if before and by_occurrence:
        at = bindparam("b_before_at", type_=AUDIT_LOG.c.occurred_at.type)
        recent = recent.where(
            tuple_(AUDIT_LOG.c.occurred_at, AUDIT_LOG.c.seq) < tuple_(at, bindparam("b_before"))
        )
    elif before:
        recent = recent.where(AUDIT_LOG.c.seq < bindparam("b_before"))
    rows = recent.order_by(*order).limit(bindparam("b_steps")).subquery()
    columns: dict[str, ColumnElement[Any]] = {name: rows.c[name] for name in _STEP_COLUMNS}
    if postgres:
        # The instant as ISO 8601 text in UTC, whatever the session's time zone.
        columns["occurred_at"] = func.to_char(
            func.timezone("UTC", rows.c.occurred_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
        )
    else:
        # SQLite keeps the UTC wall time as "YYYY-MM-DD HH:MM:SS.ffffff", and JSON as
        # text: json() embeds the rule list as JSON, not as a string.
        columns["occurred_at"] = func.replace(rows.c.occurred_at, " ", "T").concat("Z")
        columns["rules"] = func.json(rows.c.rules)
    values = list(columns.values())
    step = func.json_build_array(*values) if postgres else func.json_array(*values)
    steps = func.json_agg(step) if postgres else func.json_group_array(step)
    return select(steps).scalar_subquery()


def _newest(dialect: Dialect) -> Any:
    """The episode's newest steps in the order its version gives: one read either way, as
    both databases evaluate only the CASE branch the episode's row takes."""
    # One equality per version, not IN: a statement compiled once takes no expanding list.
    happened = [
        and_(EPISODE.c.pathway_id == pathway_id, EPISODE.c.pathway_version == version)
        for pathway_id, versions in _versions_by_occurrence().items()
        for version in versions
    ]
    by_recording = _steps(dialect, before=False)
    if not happened:
        return by_recording
    return case((or_(*happened), _steps(dialect, False, by_occurrence=True)), else_=by_recording)


def _versions_by_occurrence() -> dict[str, list[str]]:
    """Each pathway's versions whose timeline is in the order things happened."""
    found = {
        pathway_id: [
            version
            for version in pathways.version_numbers(pathway_id)
            if pathways.definition(pathway_id, version).corrects(EVENTS_AT_OCCURRED)
        ]
        for pathway_id in pathways.PACKAGES
    }
    return {pathway_id: versions for pathway_id, versions in found.items() if versions}


class _Statements:
    def __init__(self, dialect: Dialect) -> None:
        def prepared(read: Any, steps: Any) -> Prepared:
            timeline = type_coerce(steps, PortableJSON).label("timeline")
            return Prepared(read.add_columns(timeline), dialect)

        self.view = prepared(READ_EPISODE, _newest(dialect))
        self.newest = prepared(_EPISODE_ID, _newest(dialect))
        self.older = prepared(_EPISODE_ID, _steps(dialect, before=True))
        self.older_happened = prepared(_EPISODE_ID, _steps(dialect, True, by_occurrence=True))


@cache
def _statements(dialect: Dialect) -> _Statements:
    return _Statements(dialect)


def cursor_for(position: int) -> str:
    """The opaque cursor of a page that continues before ``position``."""
    return cursor_for_text(str(position))


def position_of(cursor: str) -> int:
    """The position a cursor given out by :func:`cursor_for` stands for.

    Raises:
        InvalidEvent: not a cursor this service gave out (field ``cursor``).
    """
    return _row_key(_cursor_text(cursor))


def step_cursor_for(at: str, seq: int) -> str:
    """The cursor of a timeline page in the order things happened, continuing before the
    step recorded as ``seq`` that happened ``at`` (ISO 8601, UTC)."""
    return cursor_for_text(f"{seq}@{at}")


def cursor_for_text(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def timeline_position_of(cursor: str) -> tuple[datetime | None, int]:
    """Where a timeline cursor continues: before the step of that sequence number, and for
    a cursor in the order things happened (:func:`step_cursor_for`), of that instant.

    Raises:
        InvalidEvent: not a cursor this service gave out (field ``cursor``).
    """
    text = _cursor_text(cursor)
    if "@" not in text:
        return None, _row_key(text)
    seq, _, at = text.partition("@")
    try:
        instant = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise InvalidEvent("cursor", NOT_OURS)
    return instant.astimezone(UTC), _row_key(seq)


def _cursor_text(cursor: str) -> str:
    try:
        return base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        return ""


def _row_key(text: str) -> int:
    # Positions are row keys, which the databases keep below 2**31.
    if not text.isascii() or not text.isdigit() or int(text) >= 2**31:
        raise InvalidEvent("cursor", NOT_OURS)
    return int(text)


def _instant(text: str) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` as :func:`engine.episode.iso` writes it: without
    the fraction when it is zero."""
    return text.replace(".000000Z", "Z")


def _page(
    arrays: Sequence[Sequence[Any]] | None, limit: int, by_occurrence: bool = False
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` steps, newest first (by recording, or ``by_occurrence``), from
    ``limit + 1`` read, and the cursor past them (None: no more)."""
    # ``at`` is fixed-width ISO 8601 in UTC: as text, in the order of time.
    key = (lambda s: (s[1], int(s[0]))) if by_occurrence else (lambda s: int(s[0]))
    newest_first = sorted(arrays or (), key=key, reverse=True)
    steps = [
        {
            "seq": seq,
            "at": _instant(at),
            "trigger": trigger,
            "type": type_,
            "actor": actor,
            "accepted": bool(accepted),
            "rules": rules or [],
            "reason": reason,
        }
        for seq, at, trigger, type_, actor, accepted, rules, reason in newest_first[:limit]
    ]
    if len(newest_first) <= limit:
        return steps, None
    if by_occurrence:
        last = newest_first[limit - 1]
        return steps, step_cursor_for(str(last[1]), int(last[0]))
    return steps, cursor_for(steps[-1]["seq"])


def read_with_timeline(
    store: Store, dialect: Dialect, episode_id: str, steps: int = TIMELINE_STEPS
) -> tuple[EpisodeState, list[dict[str, Any]], str | None]:
    """The episode as a step reads it, its ``steps`` most recent steps and the cursor to
    the ones before: the episode's two reads, its steps a column of the first.

    Raises:
        EpisodeNotFound: no such episode.
        InvalidConfiguration: the stored configuration cannot be bound to the chart.
    """
    values = {"b_id": episode_id, "b_steps": steps + 1}
    sql = _statements(dialect)
    episode = store.cursor.query(sql.view, values)
    tasks = store.cursor.query(store.sql.read_tasks, {"b_id": episode_id})
    row, task_rows = episode.first(), tasks.all()
    if row is None:
        raise EpisodeNotFound(episode_id)
    return (state_from_rows(row, task_rows), *_page(row["timeline"], steps, _by_occurrence(row)))


def _by_occurrence(row: Mapping[str, Any]) -> bool:
    """Whether the episode's timeline is in the order things happened (from 1.1.0)."""
    pathway = pathways.definition(row["pathway_id"], row["pathway_version"])
    return pathway.corrects(EVENTS_AT_OCCURRED)


def timeline_page(
    engine: Engine, episode_id: str, cursor: str | None = None, limit: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the episode's steps, newest first, from ``cursor`` (None: the newest).

    Raises:
        EpisodeNotFound: no such episode.
        InvalidEvent: a cursor this service did not give out.
    """
    sql = _statements(engine.dialect)
    values: dict[str, Any] = {"b_id": episode_id, "b_steps": limit + 1}
    if cursor is None:
        statement = sql.newest
    else:
        at, values["b_before"] = timeline_position_of(cursor)
        statement = sql.older
        if at is not None:
            statement, values["b_before_at"] = sql.older_happened, at
    with transaction(engine, read_only=True) as store:
        row = store.cursor.query(statement, values).first()
    if row is None:
        raise EpisodeNotFound(episode_id)
    # A cursor carries its order; the newest page is in the order the episode's version gives.
    by_occurrence = _by_occurrence(row) if cursor is None else statement is sql.older_happened
    return _page(row["timeline"], limit, by_occurrence)


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
        if not rows and connection.execute(_EPISODE_ID, {"b_id": episode_id}).first() is None:
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


def clinic_timezone(engine: Engine, episode_id: str) -> str:
    """The time zone the episode's clinic reads its times in (what a page shows them in).

    Raises:
        EpisodeNotFound: no such episode.
    """
    query = select(EPISODE.c.clinic_timezone).where(EPISODE.c.id == episode_id)
    with read_only(engine, single_statement=True) as connection:
        zone = connection.execute(query).scalar_one_or_none()
    if zone is None:
        raise EpisodeNotFound(episode_id)
    return str(zone)
