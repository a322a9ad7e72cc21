"""The access log: every read of episode data, hash-chained like the audit log.

A row says who read (the token's subject, or ``cli:<user>``), in which role, through which
route (the route template is the purpose of the read: ``GET /episodes/{episode_id}``),
which episodes, with what outcome, and when. Each row's hash covers its content and the
previous row's hash (the audit log's canonical JSON and SHA-256), ``access_head`` holds the
last one, and database triggers refuse UPDATE and DELETE and let the head only move forward.
Rows are appended a batch at a time (:mod:`models.access_writer`): one head lock and one
chain run per batch.

Which episodes a read showed: all of them, up to :data:`MAX_LISTED` distinct ids (our
default; every page the API serves fits). A read that showed more (a calendar feed, an
access-log page) keeps the count but not the ids, and a read that covered what it cannot
count in advance (an export) keeps neither; both are indexed under :data:`BULK`, and the
row's ``query`` says what was asked for. ``access_log_episode`` indexes the rows by
episode, so "who read this episode" is an index lookup; verifying the chain
(:mod:`models.access_reading`) checks that the index agrees with the rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Dialect, Engine, Table, bindparam, insert, select, update

from engine.clinic_time import to_utc
from engine.errors import CarepathError
from models.audit import canonical_json
from models.statements import Prepared
from models.store import transaction
from models.tables import ACCESS_OUTCOMES, AccessHead, AccessLogEntry, AccessLogEpisode

ACCESS_LOG = cast(Table, AccessLogEntry.__table__)
ACCESS_INDEX = cast(Table, AccessLogEpisode.__table__)
ACCESS_HEAD = cast(Table, AccessHead.__table__)

MAX_LISTED = 1000
BULK = "*"
HASHED_FIELDS = (
    "seq",
    "recorded_at",
    "actor",
    "role",
    "route",
    "outcome",
    "episode_ids",
    "episode_count",
    "query",
)
# Stored ids and texts are cut to their columns; an id asked for that is not printable
# (a 404 for "%00") is stored escaped.
_ID_LENGTH = 64
_PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,64}")
_QUERY_LENGTH = 1024


class AccessLogUnavailable(CarepathError):
    """The access log could not be written, so the read it was for must not be answered.

    Args:
        reason: why, in words (the database's first line, or a timeout).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the access log could not be written: {reason}")


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One read, before it has a place in the chain. Build it with :func:`read_of`."""

    recorded_at: datetime
    actor: str
    role: str
    route: str
    outcome: str
    episode_ids: tuple[str, ...] | None
    episode_count: int | None
    query: str | None


def read_of(
    actor: str,
    role: str,
    route: str,
    at: datetime,
    episodes: Iterable[str] | None,
    outcome: str = "answered",
    query: str | None = None,
) -> AccessEntry:
    """A read of ``episodes`` (None: what the read covered cannot be listed, e.g. an
    export) by ``actor`` in ``role`` through ``route`` at ``at``.

    Ids are kept once each, in the order shown; beyond :data:`MAX_LISTED` only their count.
    """
    if outcome not in ACCESS_OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(ACCESS_OUTCOMES)}, not {outcome!r}")
    ids: tuple[str, ...] | None = None
    count: int | None = None
    if episodes is not None:
        distinct = tuple(dict.fromkeys(_clean_id(e) for e in episodes))
        count = len(distinct)
        ids = distinct if count <= MAX_LISTED else None
    return AccessEntry(
        to_utc(at), actor[:128], role[:16], route[:128], outcome, ids, count,
        query[:_QUERY_LENGTH] if query else None,
    )  # fmt: skip


def _clean_id(episode_id: str) -> str:
    if _PRINTABLE_ID.fullmatch(episode_id):
        return episode_id
    return episode_id.encode("unicode_escape", "backslashreplace").decode("ascii")[:_ID_LENGTH]


def access_hash(fields: Mapping[Any, Any], prev_hash: str) -> str:
    """The hash of an access-log row: its :data:`HASHED_FIELDS` plus the previous hash."""
    content = {name: fields[name] for name in HASHED_FIELDS}
    content["prev_hash"] = prev_hash
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


class _Statements:
    """The append's statements, compiled once per dialect (as :mod:`models.step_sql`'s)."""

    def __init__(self, dialect: Dialect) -> None:
        self.read_head = Prepared(
            select(ACCESS_HEAD.c.last_seq, ACCESS_HEAD.c.last_hash)
            .where(ACCESS_HEAD.c.id == 1)
            .with_for_update(),
            dialect,
        )
        self.insert_row = Prepared(
            insert(ACCESS_LOG).values({c.key: bindparam(c.key) for c in ACCESS_LOG.columns}),
            dialect,
        )
        self.insert_index = Prepared(
            insert(ACCESS_INDEX).values(seq=bindparam("seq"), episode_id=bindparam("episode_id")),
            dialect,
        )
        self.move_head = Prepared(
            update(ACCESS_HEAD)
            .where(ACCESS_HEAD.c.id == 1)
            .values(last_seq=bindparam("seq"), last_hash=bindparam("hash")),
            dialect,
        )


_statements = cache(_Statements)
HEAD_MISSING = "access_head row is missing: run `carepath db upgrade`"


def append_reads(
    engine: Engine, entries: Sequence[AccessEntry] | Callable[[], Sequence[AccessEntry]]
) -> list[int]:
    """Append ``entries`` to the chain in one transaction; returns their sequence numbers.

    The head row is locked once for the whole batch, so several processes' batches take
    turns; ``entries`` may be a function giving them, called as late as possible (once the
    head is locked on SQLite) so that reads arriving meanwhile join this batch.

    On PostgreSQL what the head's lock covers sets how many batches a second the chain
    takes, so it covers only the database's own work: the whole batch is one call of the
    function ``access_log_append`` (the migration's), never waiting on the client, and its
    commit does not wait for the disk either (the lock would be held through the fsync);
    a second transaction sent in the same round trip does, and returns only once the log
    is flushed past the batch. carepath hands the function each row's canonical JSON in two
    pieces (:func:`json_pieces`); it puts in the previous hash and the sequence number and
    hashes with SHA-256, as :func:`access_hash` does (``verify_access_log`` recomputes
    every hash in Python). On SQLite ``BEGIN IMMEDIATE`` has already serialised the
    writers, and the chain is linked here (:func:`link`).

    Raises:
        DBAPIError: the database refused or could not be reached; nothing was written.
        AccessLogUnavailable: the head row is missing.
    """
    if not callable(entries) and not entries:
        return []
    if engine.dialect.name == "postgresql":
        return _append_in_database(engine, entries() if callable(entries) else entries)
    sql = _statements(engine.dialect)
    with transaction(engine) as store:
        cursor = store.cursor
        head = cursor.query(sql.read_head, {}).first()
        if head is None:
            raise AccessLogUnavailable(HEAD_MISSING)
        batch = entries() if callable(entries) else entries
        if not batch:
            return []
        rows = link(int(head["last_seq"]), str(head["last_hash"]), batch)
        cursor.run_many(sql.insert_row, rows)
        cursor.run_many(
            sql.insert_index,
            (
                {"seq": row["seq"], "episode_id": episode}
                for row in rows
                for episode in _indexed(row["episode_ids"])
            ),
        )
        cursor.run(sql.move_head, {"seq": rows[-1]["seq"], "hash": rows[-1]["hash"]})
    return [row["seq"] for row in rows]


def _indexed(episode_ids: Sequence[str] | None) -> Sequence[str]:
    return (BULK,) if episode_ids is None else episode_ids


# Each array goes in binary: text arrays are then not quoted element by element.
_APPEND = (
    "SELECT access_log_append(%(recorded_at)b::timestamptz[], %(actor)b::text[], "
    "%(role)b::text[], %(route)b::text[], %(outcome)b::text[], %(episode_ids)b::text[]::jsonb[], "
    "%(episode_count)b::integer[], %(query)b::text[], %(before)b::text[], %(middle)b::text[], "
    "%(index_row)b::integer[], %(index_episode)b::text[])"
)


def _append_in_database(engine: Engine, entries: Sequence[AccessEntry]) -> list[int]:
    if not entries:
        return []
    pieces = [json_pieces(entry) for entry in entries]
    values: dict[str, list[Any]] = {
        "recorded_at": [e.recorded_at for e in entries],
        "actor": [e.actor for e in entries],
        "role": [e.role for e in entries],
        "route": [e.route for e in entries],
        "outcome": [e.outcome for e in entries],
        "episode_ids": [None if e.episode_ids is None else canonical_json(list(e.episode_ids))
                        for e in entries],
        "episode_count": [e.episode_count for e in entries],
        "query": [e.query for e in entries],
        "before": [before for before, _ in pieces],
        "middle": [middle for _, middle in pieces],
        "index_row": [],
        "index_episode": [],
    }  # fmt: skip
    for position, entry in enumerate(entries, start=1):
        for episode in _indexed(entry.episode_ids):
            values["index_row"].append(position)
            values["index_episode"].append(episode)
    with transaction(engine) as store:
        # One round trip: BEGIN, the call and its COMMIT, then a second transaction whose
        # COMMIT (by transaction()) waits for the disk. The batch's own commit does not
        # wait, so the head's lock is free for the next batch as soon as the rows are
        # written, and both processes' flushes can share one fsync; the second commit's
        # record comes after the batch's in the log, so once it is flushed the batch is.
        writer = store.cursor.writer
        writer.execute("SET LOCAL synchronous_commit = off")
        answer = store.cursor.connection.cursor()
        answer.execute(_APPEND, values)
        writer.execute("COMMIT")
        writer.execute("BEGIN")
        writer.execute("SELECT pg_current_xact_id()")  # takes an id, so its COMMIT is flushed
    try:
        last = int(answer.fetchone()[0])
    finally:
        answer.close()
    return list(range(last - len(entries) + 1, last + 1))


def _fields(entry: AccessEntry) -> dict[str, Any]:
    """The hashed fields of ``entry`` but its ``seq``, as :func:`link` hashes them."""
    return {
        "recorded_at": entry.recorded_at,
        "actor": entry.actor,
        "role": entry.role,
        "route": entry.route,
        "outcome": entry.outcome,
        "episode_ids": None if entry.episode_ids is None else list(entry.episode_ids),
        "episode_count": entry.episode_count,
        "query": entry.query,
    }


# The pieces rest on the key order canonical JSON sorts into: prev_hash has keys on both
# sides of it, and seq comes last.
_KEYS = sorted((*HASHED_FIELDS, "prev_hash"))
assert _KEYS[-1] == "seq", _KEYS
assert 0 < _KEYS.index("prev_hash") < len(_KEYS) - 2, _KEYS


def json_pieces(entry: AccessEntry) -> tuple[str, str]:
    """The row's canonical JSON (what :func:`access_hash` hashes) in two pieces: all before
    the previous hash's value, and all between it and the sequence number's value. The
    text hashed is ``before + prev_hash + middle + str(seq) + "}"``."""
    fields = _fields(entry)
    left = canonical_json({k: v for k, v in fields.items() if k < "prev_hash"})
    right = canonical_json({k: v for k, v in fields.items() if k > "prev_hash"})
    return left[:-1] + ',"prev_hash":"', '",' + right[1:-1] + ',"seq":'


def link(last_seq: int, last_hash: str, entries: Iterable[AccessEntry]) -> list[dict[str, Any]]:
    """The rows that follow the head ``(last_seq, last_hash)``, each with its
    ``prev_hash`` and ``hash``."""
    rows = []
    for entry in entries:
        fields = {"seq": last_seq + 1, **_fields(entry)}
        digest = access_hash(fields, last_hash)
        fields["prev_hash"] = last_hash
        fields["hash"] = digest
        rows.append(fields)
        last_seq, last_hash = fields["seq"], digest
    return rows
