"""Reading the audit log out: filtered pages, and exports streamed in constant memory.

An export first reads the chain's head, then every row up to it, a batch at a time by key
(never OFFSET), and ends with that head's sequence number and hash: an auditor can check
that the last row exported carries the head's hash, so nothing was cut off the end.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine, String, Table, select
from sqlalchemy import cast as sql_cast

from engine.errors import InvalidEvent
from models.db import read_only
from models.tables import AuditEntry, AuditHead

AUDIT_LOG = cast(Table, AuditEntry.__table__)
HEAD = cast(Table, AuditHead.__table__)
COLUMNS = tuple(c.key for c in AUDIT_LOG.columns)
FORMATS = ("csv", "jsonl")
BATCH = 5000
RULE_ID = re.compile(r"[A-Z]+(-[A-Z0-9]+)+")


@dataclass(frozen=True)
class AuditFilter:
    """Which rows: recorded in [since, until), of an episode, by an actor, naming a rule."""

    since: datetime | None = None
    until: datetime | None = None
    episode_id: str | None = None
    actor: str | None = None
    rule: str | None = None

    def __post_init__(self) -> None:
        if self.rule is not None and not RULE_ID.fullmatch(self.rule):
            raise InvalidEvent("rule", f"not a rule ID: {self.rule!r}")
        if self.since and self.until and self.since >= self.until:
            raise InvalidEvent("until", "must be after since")

    def apply(self, query: Any) -> Any:
        if self.since is not None:
            query = query.where(AUDIT_LOG.c.recorded_at >= self.since)
        if self.until is not None:
            query = query.where(AUDIT_LOG.c.recorded_at < self.until)
        if self.episode_id is not None:
            query = query.where(AUDIT_LOG.c.episode_id == self.episode_id)
        if self.actor is not None:
            query = query.where(AUDIT_LOG.c.actor == self.actor)
        if self.rule is not None:
            # The rule list as JSON text; a rule ID has no LIKE wildcards (checked above).
            query = query.where(sql_cast(AUDIT_LOG.c.rules, String).like(f'%"{self.rule}"%'))
        return query


def head(engine: Engine) -> tuple[int, str]:
    with read_only(engine) as connection:
        row = connection.execute(select(HEAD.c.last_seq, HEAD.c.last_hash)).one()
    return int(row.last_seq), str(row.last_hash)


def page(
    engine: Engine, where: AuditFilter, after: int = 0, limit: int = 100
) -> tuple[list[dict[str, Any]], int | None]:
    """Rows after sequence number ``after``; returns them and the next cursor (or None)."""
    query = where.apply(select(AUDIT_LOG).where(AUDIT_LOG.c.seq > after))
    with read_only(engine) as connection:
        rows = [
            _jsonable(dict(row))
            for row in connection.execute(
                query.order_by(AUDIT_LOG.c.seq).limit(limit + 1)
            ).mappings()
        ]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["seq"] if more else None)


def rows_up_to_head(
    engine: Engine, where: AuditFilter
) -> tuple[tuple[int, str], Iterator[dict[str, Any]]]:
    """The head, and an iterator over the matching rows up to it, a batch at a time."""
    last_seq, last_hash = head(engine)

    def walk() -> Iterator[dict[str, Any]]:
        after = 0
        while True:
            query = where.apply(
                select(AUDIT_LOG).where(AUDIT_LOG.c.seq > after, AUDIT_LOG.c.seq <= last_seq)
            )
            with read_only(engine) as connection:
                batch = [
                    dict(row)
                    for row in connection.execute(
                        query.order_by(AUDIT_LOG.c.seq).limit(BATCH)
                    ).mappings()
                ]
            yield from (_jsonable(row) for row in batch)
            if len(batch) < BATCH:
                return
            after = batch[-1]["seq"]

    return (last_seq, last_hash), walk()


def export(engine: Engine, fmt: str, where: AuditFilter) -> Iterator[str]:
    """The export as chunks of text: CSV (header first) or JSON lines, then the head.

    Raises:
        InvalidEvent: an unknown format.
    """
    if fmt not in FORMATS:
        raise InvalidEvent("format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
    (last_seq, last_hash), rows = rows_up_to_head(engine, where)
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(row, sort_keys=True) + "\n"
        yield json.dumps({"chain_head": {"seq": last_seq, "hash": last_hash}}) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [json.dumps(row[c]) if isinstance(row[c], list) else row[c] for c in COLUMNS]
        )
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    writer.writerow(["#chain_head", last_seq, last_hash])
    yield buffer.getvalue()


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("occurred_at", "recorded_at"):
        if isinstance(row.get(key), datetime):
            row[key] = row[key].isoformat()
    return row
