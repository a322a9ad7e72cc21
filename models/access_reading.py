"""Reading the access log: verifying its chain, and listing it by time, actor and episode.

Verifying walks the rows in ``seq`` order as :func:`models.audit.verify_chain` walks the
audit log, and also checks the episode index against each row, so a read cannot be hidden
from "who read this episode" without the chain saying so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, or_, select

from engine.errors import InvalidEvent
from models.access_log import ACCESS_HEAD, ACCESS_INDEX, ACCESS_LOG, BULK, access_hash
from models.audit import GENESIS_HASH
from models.db import read_only


@dataclass(frozen=True)
class AccessCheck:
    """What :func:`verify_access_log` found: ``problem`` names the first bad row in words."""

    ok: bool
    rows_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None


def _check_row(
    row: Mapping[Any, Any], expected_seq: int, prev_hash: str, indexed: set[str]
) -> tuple[int, str] | None:
    seq = row["seq"]
    if seq != expected_seq:
        if expected_seq == 1:
            return 1, f"row 1 missing: the log starts at row {seq}"
        return expected_seq, (
            f"row {expected_seq} missing: the log goes from row {expected_seq - 1} to row {seq}"
        )
    label = f"row {seq} ({row['actor']}, {row['route']})"
    if row["prev_hash"] != prev_hash:
        link_to = "the genesis hash" if seq == 1 else f"row {seq - 1}"
        return seq, f"{label}: prev_hash does not match {link_to}"
    if access_hash(row, prev_hash) != row["hash"]:
        return seq, f"{label}: hash mismatch: the row was altered"
    ids = row["episode_ids"]
    expected = {BULK} if ids is None else set(ids)
    if indexed != expected:
        missing = ", ".join(sorted(expected - indexed)) or "none"
        extra = ", ".join(sorted(indexed - expected)) or "none"
        return seq, (
            f"{label}: the episode index does not match the row (missing: {missing}; "
            f"extra: {extra})"
        )
    return None


def verify_access_log(engine: Engine, batch_size: int = 5000) -> AccessCheck:
    """Walk the access log in ``seq`` order: recompute every hash, check every link, check
    the episode index against each row, and the head against the last row.

    Reads ``batch_size`` rows at a time by key, so memory stays flat. Stops at the first
    problem. Rows appended meanwhile (by a running service) are walked too.
    """
    last_seq, last_hash, checked = 0, GENESIS_HASH, 0
    with read_only(engine) as connection:
        while True:
            batch = (
                connection.execute(
                    select(ACCESS_LOG)
                    .where(ACCESS_LOG.c.seq > last_seq)
                    .order_by(ACCESS_LOG.c.seq)
                    .limit(batch_size)
                )
                .mappings()
                .all()
            )
            indexed: dict[int, set[str]] = {}
            if batch:
                for seq, episode in connection.execute(
                    select(ACCESS_INDEX.c.seq, ACCESS_INDEX.c.episode_id).where(
                        ACCESS_INDEX.c.seq > last_seq, ACCESS_INDEX.c.seq <= batch[-1]["seq"]
                    )
                ):
                    indexed.setdefault(seq, set()).add(episode)
            for row in batch:
                checked += 1
                bad = _check_row(row, last_seq + 1, last_hash, indexed.get(row["seq"], set()))
                if bad is not None:
                    return AccessCheck(False, checked, *bad)
                last_seq, last_hash = row["seq"], row["hash"]
            if len(batch) == batch_size:
                continue
            head = connection.execute(
                select(ACCESS_HEAD.c.last_seq, ACCESS_HEAD.c.last_hash)
            ).one_or_none()
            if head is None:
                return AccessCheck(False, checked, last_seq + 1, "access_head row is missing")
            if head.last_seq > last_seq and _has_rows_after(connection, last_seq):
                continue  # appended and committed while we walked: walk on
            if head.last_seq != last_seq:
                problem = f"access_head says {head.last_seq} rows, log has {last_seq}"
                return AccessCheck(False, checked, min(head.last_seq, last_seq) + 1, problem)
            if head.last_hash != last_hash:
                problem = f"access_head hash does not match row {last_seq}"
                return AccessCheck(False, checked, last_seq or None, problem)
            return AccessCheck(True, checked)


def _has_rows_after(connection: Connection, seq: int) -> bool:
    found = connection.execute(select(ACCESS_LOG.c.seq).where(ACCESS_LOG.c.seq > seq).limit(1))
    return found.first() is not None


@dataclass(frozen=True)
class AccessFilter:
    """Which reads: recorded in [since, until), by an actor, of an episode.

    ``episode`` matches the reads that listed it and the reads that covered more than they
    could list (exports, large feeds): those may have shown it too.
    """

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    episode_id: str | None = None

    def __post_init__(self) -> None:
        for field, value in (("episode", self.episode_id), ("actor", self.actor)):
            if value is not None and "\x00" in value:
                raise InvalidEvent(field, "must not contain a NUL character")
        for field, instant in (("since", self.since), ("until", self.until)):
            if instant is not None and instant.utcoffset() is None:
                raise InvalidEvent(field, "needs a UTC offset, e.g. 2026-01-01T00:00:00Z")
        if self.since and self.until and self.since >= self.until:
            raise InvalidEvent("until", "must be after since")

    def apply(self, query: Any) -> Any:
        if self.since is not None:
            query = query.where(ACCESS_LOG.c.recorded_at >= self.since)
        if self.until is not None:
            query = query.where(ACCESS_LOG.c.recorded_at < self.until)
        if self.actor is not None:
            query = query.where(ACCESS_LOG.c.actor == self.actor)
        if self.episode_id is not None:
            named = select(ACCESS_INDEX.c.seq).where(
                or_(ACCESS_INDEX.c.episode_id == self.episode_id, ACCESS_INDEX.c.episode_id == BULK)
            )
            query = query.where(ACCESS_LOG.c.seq.in_(named))
        return query


def page(
    engine: Engine, where: AccessFilter, after: int = 0, limit: int = 100
) -> tuple[list[dict[str, Any]], int | None]:
    """Reads after sequence number ``after``, oldest first; returns them and the next
    cursor (None at the end)."""
    query = where.apply(select(ACCESS_LOG).where(ACCESS_LOG.c.seq > after))
    with read_only(engine) as connection:
        rows = [
            dict(row)
            for row in connection.execute(
                query.order_by(ACCESS_LOG.c.seq).limit(limit + 1)
            ).mappings()
        ]
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        row["recorded_at"] = row["recorded_at"].isoformat()
    return rows, (rows[-1]["seq"] if more else None)


def episodes_named(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The episodes a page of access-log rows names, for recording that page's own read (a
    row that listed none, such as an export's, shows no episode)."""
    named: dict[str, None] = {}
    for row in rows:
        named.update(dict.fromkeys(row["episode_ids"] or ()))
    return list(named)
