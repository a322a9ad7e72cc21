"""Walking a hash chain fast: raw reads in key order, one canonical text per row.

A verify re-hashes every row it walks. Through SQLAlchemy's result layer, each row's
values converted to Python objects and :func:`models.audit.canonical_json` building the
text from them, a row cost about 12 µs; a million rows took twelve seconds. Here the rows
come from the driver's cursor as the database gives them (times and JSON as text), the
next batch read on a second connection while this one is hashed, and the text each row's
hash covers is built by a function generated once per log from its columns' types
(:class:`RowText`), which fills one template with each value's JSON text.

The text is :func:`~models.audit.canonical_json`'s, character for character
(tests/models/test_chain_walk.py proves it on random rows, on both databases). Where a
value comes in a form the builder does not know (a time stored as other text than
carepath writes), the builder leaves it to the reference path; and a row whose hash does
not match is hashed again the reference way, through SQLAlchemy, before it is reported:
the fast path can only ever agree with the reference, never overrule it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from hashlib import sha256
from hmac import compare_digest
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import JSON, Boolean, Engine, Integer, Text, bindparam, select
from sqlalchemy import cast as sql_cast

from models.audit import ChainSpec, canonical_json
from models.audit_keys import Sealer
from models.statements import Prepared
from models.types import UTCDateTime

BATCH = 5000
# Distinct JSON texts kept with their canonical form: configurations and rule lists repeat
# from row to row, so nearly every lookup hits.
JSON_CACHE_SIZE = 65_536


@dataclass(frozen=True)
class Problem:
    """The first bad row a walk found: its sequence number and what is wrong, in words."""

    seq: int
    text: str


@dataclass
class Walked:
    """A walk's outcome: rows re-hashed, the last good row, and the first problem; for a
    walk started without the previous hash, what its first row links to."""

    rows: int
    last_seq: int
    last_hash: str | None
    problem: Problem | None = None
    first_prev_hash: str | None = None
    first_label: str | None = None


def _time_text(value: Any) -> str | None:
    """A stored instant's canonical JSON text, from the text the database gives, or None
    when it is not in a form known here (the reference path decides then).

    SQLite holds carepath's ``YYYY-MM-DD HH:MM:SS.ffffff`` (the UTC wall time); PostgreSQL,
    in a session whose zone is UTC, writes ``YYYY-MM-DD HH:MM:SS[.f...]+00`` with the
    fraction's trailing zeros left off.
    """
    if type(value) is not str or len(value) < 19 or value[10] != " ":
        return None
    size = len(value)
    if value.endswith("+00"):  # first: "HH:MM:SS.fff+00" is 26 characters long too
        if size == 22:
            return f'"{value[:10]}T{value[11:19]}.000000Z"'
        if 24 <= size <= 29 and value[19] == ".":
            return f'"{value[:10]}T{value[11:-3]}{"0" * (29 - size)}Z"'
        return None
    if size == 26 and value[19] == ".":
        return f'"{value[:10]}T{value[11:]}Z"'
    return None


class RowText:
    """The text a row's hash covers, built from the row as the driver read it.

    The row's columns come in :attr:`columns` order: the hashed fields and ``prev_hash``
    in the sorted order of the text's keys, then ``hash`` and ``seal``. ``build(row)``
    returns the text (``source`` shows the function).
    """

    def __init__(self, spec: ChainSpec) -> None:
        self.spec = spec
        keys = sorted({*spec.hashed, "prev_hash"})
        self.keys = tuple(keys)
        self.columns = (*keys, "hash", "seal")
        self._json: dict[str, str] = {}
        names, values = [], []
        for i, name in enumerate(keys):
            column = spec.log.c[name]
            names.append(json.dumps(name).replace("%", "%%") + ":%s")
            value = f"r[{i}]"
            kind = type(column.type)
            if isinstance(column.type, UTCDateTime):
                text = f"t({value})"
            elif isinstance(column.type, JSON):
                text = f"(j.get({value}) or jm({value}))"
            elif issubclass(kind, Boolean):
                text = f"('true' if {value} else 'false')"
            elif issubclass(kind, Integer):
                text = f"str({value})"
            else:
                text = f"s({value})"
            if column.nullable:
                text = f"('null' if {value} is None else {text})"
            values.append(text)
        # One expression per row, generated once from the columns: a loop over them cost
        # twice as much as the work itself. A value the builder does not know comes out
        # as None, which no JSON text holds at a value's place: the hash then differs and
        # the row goes to the reference path.
        self.source = f"def build(r):\n    return T % ({', '.join(values)},)\n"
        scope: dict[str, Any] = {
            "T": "{" + ",".join(names) + "}",
            "t": _time_text,
            "j": self._json,
            "jm": self._json_miss,
            "s": encode_basestring,
        }
        exec(compile(self.source, f"<row text of {spec.name}>", "exec"), scope)
        self.build: Callable[[Sequence[Any]], str] = scope["build"]

    def _json_miss(self, text: str) -> str:
        if len(self._json) >= JSON_CACHE_SIZE:
            self._json.clear()
        canonical = self._json[text] = canonical_json(json.loads(text))
        return canonical


def select_columns(spec: ChainSpec, names: Sequence[str]) -> list[Any]:
    """The log's columns, JSON ones read as their text."""
    return [
        sql_cast(spec.log.c[name], Text).label(name)
        if isinstance(spec.log.c[name].type, JSON)
        else spec.log.c[name]
        for name in names
    ]


def read_batches(
    engine: Engine, spec: ChainSpec, names: Sequence[str], after: int, up_to: int,
    batch: int = BATCH,
) -> Iterator[list[tuple[Any, ...]]]:  # fmt: skip
    """Rows ``after < seq <= up_to`` in key order, as the driver gives them, ``batch`` at a
    time; the next batch is read while the caller works on this one.

    One connection, in one read transaction: on PostgreSQL with the session's zone set to
    UTC, so instants come as UTC text.
    """
    log = spec.log
    seq_column = log.c.seq
    query = (
        select(*select_columns(spec, names))
        .where(seq_column > bindparam("after", type_=Integer), seq_column <= up_to)
        .order_by(seq_column)
        .limit(batch)
    )
    statement = Prepared(query, engine.dialect)
    seq_at = list(names).index("seq")
    postgres = engine.dialect.name == "postgresql"
    connection = engine.raw_connection()
    driver: Any = connection.driver_connection
    cursor = driver.cursor()
    try:
        if postgres:
            from psycopg.types.string import TextLoader

            # Instants as the server's text: parsing them into datetimes only to write
            # them out again cost a microsecond each.
            cursor.adapters.register_loader("timestamptz", TextLoader)
            cursor.execute("SET TRANSACTION READ ONLY")  # the driver has begun one
            cursor.execute("SET LOCAL TimeZone = 'UTC'")
            cursor.execute("SET LOCAL DateStyle = 'ISO'")
        else:
            cursor.execute("BEGIN")

        def read(start: int) -> list[tuple[Any, ...]]:
            values = statement.parameters({"after": start})
            cursor.execute(statement.sql, tuple(values) if isinstance(values, list) else values)
            return list(cursor.fetchall())

        with ThreadPoolExecutor(1, thread_name_prefix=f"{spec.name}-walk") as ahead:
            pending: Future[list[tuple[Any, ...]]] | None = ahead.submit(read, after)
            while pending is not None:
                rows = pending.result()
                full = len(rows) == batch
                pending = ahead.submit(read, rows[-1][seq_at]) if full else None
                if rows:
                    yield rows
    finally:
        try:
            driver.rollback()
        finally:
            cursor.close()
            connection.close()


def walk(
    engine: Engine,
    spec: ChainSpec,
    after: int,
    prev_hash: str | None,
    up_to: int,
    *,
    sealer: Sealer | None = None,
    seals_required_after: int | None = None,
    seals_from: int = 0,
    batch: int = BATCH,
    on_progress: Callable[[int], None] | None = None,
) -> Walked:
    """Re-hash rows ``after < seq <= up_to``, the first linking to ``prev_hash``.

    Checks that sequence numbers follow on, that each row links to the one before, that
    its hash is its content's, and, with ``sealer``, the seals of rows after
    ``seals_from``: a seal that is there must match, and rows after
    ``seals_required_after`` must have one. Stops at the first problem. With
    ``prev_hash`` None the first row's link is not checked but returned
    (:mod:`models.chain_parallel` checks it against the part before).
    """
    text = RowText(spec)
    hash_at, seal_at = len(text.keys), len(text.keys) + 1
    seq_at, prev_at = text.keys.index("seq"), text.keys.index("prev_hash")
    build = text.build
    required = up_to if seals_required_after is None else seals_required_after
    expected, previous, rows = after + 1, prev_hash, 0
    first_prev, first_label = None, None
    for fetched in read_batches(engine, spec, text.columns, after, up_to, batch):
        if previous is None and fetched and fetched[0][seq_at] == expected:
            first_prev, first_label = fetched[0][prev_at], _label(spec, fetched[0])
            previous = first_prev
        for row in fetched:
            seq = row[seq_at]
            if seq != expected or row[prev_at] != previous:
                bad = _link_problem(row[seq_at], expected, row[prev_at] == previous, spec, row)
                return Walked(rows, expected - 1, previous, bad, first_prev, first_label)
            digest = row[hash_at]
            problem = None
            try:
                built = build(row)
            except (TypeError, ValueError):  # a value of a kind its column cannot hold
                built = ""
            # The reference way decides a mismatch (a value in a form the builder does not
            # know).
            if sha256(built.encode()).hexdigest() != digest:
                problem = _reference_problem(engine, spec, seq, row[prev_at], digest)
            if sealer is not None and problem is None and seq > seals_from:
                seal = row[seal_at]
                if seal is None:
                    problem = NO_SEAL if seq > required else None
                elif not compare_digest(sealer(digest), seal):
                    problem = BAD_SEAL
            if problem is not None:
                bad = Problem(seq, f"{_label(spec, row)}: {problem}")
                return Walked(rows, expected - 1, previous, bad, first_prev, first_label)
            rows += 1
            expected, previous = seq + 1, digest
        if on_progress is not None:
            on_progress(len(fetched))
    return Walked(rows, expected - 1, previous, None, first_prev, first_label)


NO_SEAL = "no seal: appended without the audit key, or not by carepath"
BAD_SEAL = "seal does not match: the row was rewritten or forged"


def _label(spec: ChainSpec, row: Sequence[Any]) -> str:
    keys = sorted({*spec.hashed, "prev_hash"})
    values = dict(zip(keys, row, strict=False))
    episode = values.get("episode_id")
    if "episode_id" not in values:
        return f"row {values['seq']}"
    return f"row {values['seq']} ({f'episode {episode}' if episode else 'no episode'})"


def _link_problem(
    seq: int, expected: int, linked: bool, spec: ChainSpec, row: Sequence[Any]
) -> Problem:
    if seq != expected:
        if expected == 1:
            return Problem(1, f"row 1 missing: the log starts at row {seq}")
        return Problem(
            expected,
            f"row {expected} missing: the log goes from row {expected - 1} to row {seq}",
        )
    link = "the genesis hash" if seq == 1 else f"row {seq - 1}"
    return Problem(seq, f"{_label(spec, row)}: prev_hash does not match {link}")


def _reference_hash(engine: Engine, spec: ChainSpec, seq: int, prev_hash: str) -> str:
    """A row's hash the reference way: read through SQLAlchemy's types, then
    :func:`~models.audit.canonical_json`."""
    from models.db import read_only

    with read_only(engine) as connection:
        row = connection.execute(select(spec.log).where(spec.log.c.seq == seq)).mappings().one()
    return spec.hash_row(row, prev_hash)


def _reference_problem(
    engine: Engine, spec: ChainSpec, seq: int, prev_hash: str, digest: str
) -> str | None:
    """What the reference path finds wrong with a row, or None."""
    from sqlalchemy.exc import StatementError

    try:
        if _reference_hash(engine, spec, seq, prev_hash) == digest:
            return None
    except (StatementError, TypeError, ValueError) as exc:
        # A stored value its column's type cannot read: not what carepath wrote.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return f"cannot be read ({reason}): the row was altered"
    return "hash mismatch: the row was altered"
