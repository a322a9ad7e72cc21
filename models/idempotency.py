"""Idempotency keys: a write sent twice is done once, and both times answered alike.

A caller that may retry (after a timeout, a dropped connection, a 503 whose outcome is
unknown) sends an ``Idempotency-Key`` with the write. The key is taken in the write's own
transaction, first thing, and the answer stored in it, last thing, so the key and what the
write did commit together or not at all:

- the first request with a key does the work, and its answer (status, body, the headers
  that matter) is stored with it;
- a retry with the same key and the same request gets that answer again, changing nothing;
  one that arrives while the first is still running waits for it (PostgreSQL waits on the
  key's unique index; SQLite serialises writers) and then gets its answer;
- the same key with another request is refused (422, naming the header);
- an answer that changed nothing (bad input, not found, a stale version) rolls back with
  its transaction, key included, so the caller may correct the request and reuse the key.
  A refusal by a guideline rule is an answer (it is in the audit log) and is replayed.

Keys are scoped by caller (the token's subject) and route, and kept at least
:data:`RETENTION` (24 hours, CONTRACT.md section 8): each keyed write also removes up to
:data:`PURGE_BATCH` keys older than that, so the table stays the size of a day's writes
without a sweep of its own.

Any write joins with two calls in its transaction: :func:`keyed_read` around its reads
(or first thing, if it reads nothing) and :func:`answered` on its result before commit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypeVar, cast

from sqlalchemy import Dialect, Table, bindparam, delete, select, tuple_, update

from engine.errors import CarepathError, InvalidEvent
from models.statements import Prepared, Rows
from models.store import Store
from models.store_adapters import store_for
from models.tables import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_LENGTH = 128
# Letters, digits and the punctuation of UUIDs, ULIDs and base64: nothing a log line or a
# header could be broken with.
KEY_PATTERN = re.compile(rf"[A-Za-z0-9._:~+/=-]{{1,{MAX_LENGTH}}}")
RETENTION = timedelta(hours=24)  # our default, and the contract's minimum
PURGE_BATCH = 10

T = TypeVar("T")
KEYS = cast(Table, IdempotencyKey.__table__)
_PRIMARY = (KEYS.c.caller, KEYS.c.route, KEYS.c.key)


def parse_key(raw: str) -> str:
    """The key from the header's value: 1-128 letters, digits or ``. _ : ~ + / = -``.

    A key sent as a structured-field string (``"8e03978e-…"``, quotes included, as the
    IETF draft writes it) is read without its quotes.

    Raises:
        InvalidEvent: on field ``Idempotency-Key``.
    """
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if KEY_PATTERN.fullmatch(text) is None:
        shown = ascii(raw) if len(raw) <= 40 else ascii(raw[:37]) + "..."
        raise InvalidEvent(
            HEADER,
            f"must be 1 to {MAX_LENGTH} letters, digits or . _ : ~ + / = - "
            f"(a UUID is ideal), got {shown}",
        )
    return text


def request_digest(method: str, route: str, path: Mapping[str, Any], body: Any) -> str:
    """SHA-256 of what was asked: method, route, path parameters and the body, canonical
    (sorted keys, no spaces, ASCII escapes), so the same JSON however spelt is the same
    request."""
    canonical = json.dumps(
        {"method": method, "route": route, "path": dict(path), "body": body},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Answer:
    """What a write answered: the status, the body's JSON text as sent, and its headers."""

    status: int
    body: str
    headers: Mapping[str, str]


class Replayed(CarepathError):
    """The key was answered before; ``answer`` is that answer (nothing was done again)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        super().__init__(f"answered before with status {answer.status}")


@dataclass
class KeyedWrite:
    """A write that came with an idempotency key.

    Args:
        caller: who sent it (the token's subject).
        route: the method and route template, e.g. ``POST /episodes/{episode_id}/events``.
        key: the key, as :func:`parse_key` read it.
        digest: :func:`request_digest` of the request.
        respond: the answer for the write's result (whatever the write returns), built
            inside its transaction so that it can be stored with it.
    """

    caller: str
    route: str
    key: str
    digest: str
    respond: Callable[[Any], Answer]
    answer: Answer | None = None
    _found: Rows | None = field(default=None, repr=False)
    _now: datetime | None = field(default=None, repr=False)

    def _where(self) -> dict[str, Any]:
        return {"b_caller": self.caller, "b_route": self.route, "b_key": self.key}

    def take(self, store: Store, now: datetime) -> None:
        """Take the key, first thing in the transaction (sent, not yet read back: on
        PostgreSQL it travels with the write's own reads)."""
        sql = key_statements(store.sql.dialect)
        self._now = now
        store.cursor.run(
            sql.take,
            {
                "caller": self.caller,
                "route": self.route,
                "key": self.key,
                "request_digest": self.digest,
                "created_at": now,
            },
        )
        self._found = store.cursor.query(sql.find, self._where())

    def replay_if_answered(self) -> None:
        """Raise :class:`Replayed` if the key was answered before, or
        :class:`~engine.errors.InvalidEvent` if it was used for another request.

        Called before anything that could refuse the retry for what the first request
        did (an ``If-Match`` on the version it moved).
        """
        assert self._found is not None, "take() first"
        row = self._found.first()
        self._found = None
        if row is None or row["status"] is None:
            return  # ours: taken by this transaction
        if row["request_digest"] != self.digest:
            raise InvalidEvent(
                HEADER,
                f"{self.key!r} was used for another request on this route; "
                "send a new key for a new request",
            )
        raise Replayed(Answer(row["status"], row["body"], dict(row["headers"] or {})))

    def record(self, store: Store, result: Any) -> Answer:
        """Store the write's answer, last thing before commit, and purge a few expired
        keys; returns the answer (also kept as :attr:`answer`)."""
        assert self._now is not None, "take() first"
        sql = key_statements(store.sql.dialect)
        answer = self.respond(result)
        values = {**self._where(), "status": answer.status, "body": answer.body,
                  "headers": dict(answer.headers)}  # fmt: skip
        store.cursor.run(sql.answer, values)
        store.cursor.run(sql.purge, {"b_before": self._now - RETENTION})
        self.answer = answer
        return answer


def keyed_read(
    store: Store, keyed: KeyedWrite | None, now: datetime, read: Callable[[], T]
) -> T:
    """``read()`` with the key taken first: raises :class:`Replayed` when the key was
    answered before. Where reads are pipelined (PostgreSQL) the key travels with them (one
    round trip); otherwise (SQLite, in process) it is checked before reading anything a
    replay would not need."""
    if keyed is None:
        return read()
    keyed.take(store, now)
    if not store.pipelined:
        keyed.replay_if_answered()
        return read()
    result = read()
    keyed.replay_if_answered()
    return result


def answered(store: Store, keyed: KeyedWrite | None, result: T) -> T:
    """``result``, with its answer stored under the key (when there is one)."""
    if keyed is not None:
        keyed.record(store, result)
    return result


class KeyStatements:
    """The key's statements, compiled once per dialect."""

    def __init__(self, dialect: Dialect) -> None:
        dialect_insert = store_for(dialect).insert
        where = [column == bindparam(f"b_{column.key}") for column in _PRIMARY]
        names = ("caller", "route", "key", "request_digest", "created_at")
        self.take = Prepared(
            dialect_insert(KEYS)
            .values({name: bindparam(name) for name in names})
            .on_conflict_do_nothing(index_elements=[c.key for c in _PRIMARY]),
            dialect,
        )
        self.find = Prepared(
            select(KEYS.c.request_digest, KEYS.c.status, KEYS.c.body, KEYS.c.headers).where(
                *where
            ),
            dialect,
        )
        self.answer = Prepared(
            update(KEYS)
            .where(*where)
            .values(status=bindparam("status"), body=bindparam("body"),
                    headers=bindparam("headers")),
            dialect,
        )  # fmt: skip
        # Oldest first, a few at a time; on PostgreSQL rows another writer is purging are
        # skipped rather than waited for.
        expired = (
            select(*_PRIMARY)
            .where(KEYS.c.created_at < bindparam("b_before"))
            .order_by(KEYS.c.created_at)
            .limit(PURGE_BATCH)
            .with_for_update(skip_locked=True)
        )
        self.purge = Prepared(delete(KEYS).where(tuple_(*_PRIMARY).in_(expired)), dialect)


@cache
def key_statements(dialect: Dialect) -> KeyStatements:
    return KeyStatements(dialect)
