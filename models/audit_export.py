"""Reading the audit log out: filtered pages, and exports streamed in constant memory.

An export first reads the chain's head and the newest signed checkpoint at or before it,
then every row up to the head, a batch at a time by key (never OFFSET), and ends with a
trailer: the head's sequence number and hash, the checkpoint, and what can be checked from
the export. From a whole export an auditor can check every link and hash, that the last
row carries the head's hash (nothing was cut off the end), and, with the public key, that
the rows up to the checkpoint are the ones it signed (``carepath audit verify --file``).
A filtered export holds rows that do not follow on from each other: each row's own hash
can be checked, their links and completeness cannot, and its trailer says so.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import Any, cast

from sqlalchemy import Engine, Integer, String, Table, Text, bindparam, select
from sqlalchemy import cast as sql_cast

from engine.errors import InvalidEvent
from models import checkpoints
from models.audit import AUDIT_CHAIN
from models.checkpoints import Checkpoint
from models.db import read_only
from models.export_check import export_scope
from models.statements import Prepared
from models.tables import AuditEntry, AuditHead

AUDIT_LOG = cast(Table, AuditEntry.__table__)
HEAD = cast(Table, AuditHead.__table__)
COLUMNS = tuple(c.key for c in AUDIT_LOG.columns)
FORMATS = ("csv", "jsonl", "fhir")
TRIGGERS = "https://carepath.example/fhir/CodeSystem/audit-trigger"
EVENT_TYPES = "https://carepath.example/fhir/CodeSystem/audit-event-type"
BATCH = 5000
# The export's columns in the order of its JSON keys (sorted, as ``sort_keys`` would give).
EXPORT_COLUMNS = tuple(sorted(COLUMNS))
# JSON columns: exported as the JSON text stored, never parsed only to be written again.
JSON_TEXT = frozenset({"configuration_before", "configuration_after", "rules"})
TIMES = frozenset({"occurred_at", "recorded_at"})
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
        for field, value in (("episode", self.episode_id), ("actor", self.actor)):
            if value is not None and "\x00" in value:
                raise InvalidEvent(field, "must not contain a NUL character")
        if self.rule is not None and not RULE_ID.fullmatch(self.rule):
            raise InvalidEvent("rule", f"not a rule ID: {self.rule!r}")
        for field, instant in (("since", self.since), ("until", self.until)):
            if instant is not None and instant.tzinfo is None:
                raise InvalidEvent(field, "needs a time with a UTC offset, e.g. 'Z'")
        if self.since and self.until and self.since >= self.until:
            raise InvalidEvent("until", "must be after since")

    @property
    def filtered(self) -> bool:
        return any(value is not None for value in self.as_json().values())

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "episode": self.episode_id,
            "actor": self.actor,
            "rule": self.rule,
        }

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


def head_and_checkpoint(engine: Engine) -> tuple[dict[str, Any], Checkpoint | None]:
    """The chain's head (seq, hash, seal), and the newest checkpoint at or before it (not
    checked here: an export carries both for the auditor to check)."""
    with read_only(engine) as connection:
        row = connection.execute(select(HEAD.c.last_seq, HEAD.c.last_hash, HEAD.c.seal)).one()
        found = checkpoints.latest(connection, AUDIT_CHAIN, int(row.last_seq))
    chain_head = {"seq": int(row.last_seq), "hash": str(row.last_hash), "seal": row.seal}
    return chain_head, found[0] if found else None


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


def _batches(engine: Engine, where: AuditFilter, last_seq: int) -> Iterator[list[tuple[Any, ...]]]:
    """The matching rows up to ``last_seq`` as tuples in :data:`EXPORT_COLUMNS` order,
    ``BATCH`` at a time, each batch read by key in a short read of its own."""
    columns = [
        sql_cast(AUDIT_LOG.c[name], Text).label(name) if name in JSON_TEXT else AUDIT_LOG.c[name]
        for name in EXPORT_COLUMNS
    ]
    query = where.apply(
        select(*columns).where(
            AUDIT_LOG.c.seq > bindparam("after", type_=Integer), AUDIT_LOG.c.seq <= last_seq
        )
    )
    statement = Prepared(query.order_by(AUDIT_LOG.c.seq).limit(BATCH), engine.dialect)
    # Rows are converted here, not by SQLAlchemy's result layer: at a million rows its
    # per-row bookkeeping, and parsing JSON only to write it out again, were most of the
    # export's time. Each column gets its type's own conversion (times to UTC, SQLite's
    # 0/1 to booleans), and times are then written as ISO 8601 text.
    conversions = [
        (i, processor, name in TIMES)
        for i, (name, (_, processor)) in enumerate(
            zip(EXPORT_COLUMNS, statement.columns, strict=True)
        )
        if processor is not None
    ]

    def converted(fetched: Sequence[Any]) -> tuple[Any, ...]:
        values = list(fetched)
        for i, processor, is_time in conversions:
            value = processor(values[i])
            values[i] = value.isoformat() if is_time and value is not None else value
        return tuple(values)

    seq_at = EXPORT_COLUMNS.index("seq")

    def read(after: int) -> Sequence[Any]:
        with read_only(engine) as connection:
            values = statement.parameters({"after": after})
            return connection.exec_driver_sql(
                statement.sql, tuple(values) if isinstance(values, list) else values
            ).fetchall()

    # The next batch is read while this one is written out: the database works on one
    # while Python formats the other.
    with ThreadPoolExecutor(1, thread_name_prefix="audit-export") as ahead:
        pending: Future[Sequence[Any]] | None = ahead.submit(read, 0)
        while pending is not None:
            raw = pending.result()
            full = len(raw) == BATCH
            pending = ahead.submit(read, raw[-1][seq_at]) if full else None
            if raw:
                yield [converted(fetched) for fetched in raw]


def _value_text(name: str, value: str) -> str:
    """The expression writing one column's value as JSON text (``value`` names it)."""
    if name in JSON_TEXT:
        text = value  # the JSON text as stored
    else:
        python_type = AUDIT_LOG.c[name].type.python_type
        if python_type is bool:
            text = f"('true' if {value} else 'false')"
        elif python_type is int:
            text = f"str(int({value}))"
        else:
            text = f"e({value})"  # text, and times already written as ISO 8601 text
    return f"('null' if {value} is None else {text})"


def _line_writer() -> Callable[[tuple[Any, ...]], str]:
    """``jsonl_line``, generated once from the columns: one expression per row, where a
    call per value cost a third of the export's time."""
    keys = (encode_basestring_ascii(name).replace("%", "%%") for name in EXPORT_COLUMNS)
    template = "{" + ", ".join(f"{key}: %s" for key in keys) + "}\n"
    values = ", ".join(_value_text(name, f"v[{i}]") for i, name in enumerate(EXPORT_COLUMNS))
    source = f"def jsonl_line(v):\n    return L % ({values},)\n"
    scope: dict[str, Any] = {"L": template, "e": encode_basestring_ascii}
    exec(compile(source, "<audit export line>", "exec"), scope)
    writer: Callable[[tuple[Any, ...]], str] = scope["jsonl_line"]
    return writer


_write_line = _line_writer()


def jsonl_line(values: tuple[Any, ...]) -> str:
    """One row (in :data:`EXPORT_COLUMNS` order) as the line ``json.dumps(row,
    sort_keys=True)`` would write, its JSON columns copied in as stored."""
    return _write_line(values)


def export(engine: Engine, fmt: str, where: AuditFilter) -> Iterator[str]:
    """The export as chunks of text: CSV (header first), JSON lines or FHIR resources, then
    the trailer: the head, its latest signed checkpoint and what can be checked.

    JSON lines end with one line ``{"chain_head": {"seq", "hash", "seal"}, "checkpoint": {...} |
    null, "export": {...}}``; CSV with ``#export`` and ``#checkpoint`` rows, then
    ``#chain_head,SEQ,HASH``; FHIR with a Provenance carrying all three.

    Raises:
        InvalidEvent: an unknown format.
    """
    if fmt not in FORMATS:
        raise InvalidEvent("format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
    chain_head, checkpoint = head_and_checkpoint(engine)
    last_seq, last_hash = chain_head["seq"], chain_head["hash"]
    batches = _batches(engine, where, last_seq)
    counted = [0]

    def count(batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        counted[0] += len(batch)
        return batch

    def trailer() -> dict[str, Any]:
        return {
            "chain_head": chain_head,
            "checkpoint": checkpoint.as_json() if checkpoint else None,
            "export": export_scope(where, counted[0], checkpoint),
        }

    if fmt == "jsonl":
        for batch in batches:
            yield "".join(jsonl_line(values) for values in count(batch))
        yield json.dumps(trailer(), sort_keys=True) + "\n"
        return
    rows = (
        dict(zip(EXPORT_COLUMNS, values, strict=True))
        for batch in batches
        for values in count(batch)
    )
    if fmt == "fhir":
        for row in rows:
            yield json.dumps(fhir_audit_event(row), sort_keys=True) + "\n"
        yield json.dumps(fhir_chain_head(last_seq, last_hash, trailer()), sort_keys=True) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in COLUMNS])
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    described = trailer()
    writer.writerow(["#export", json.dumps(described["export"], sort_keys=True)])
    signed = described["checkpoint"]
    writer.writerow(
        ["#checkpoint", *(signed[k] for k in CHECKPOINT_FIELDS)] if signed else ["#checkpoint"]
    )
    writer.writerow(["#chain_head", last_seq, last_hash])
    yield buffer.getvalue()


# The checkpoint's fields in an export's ``#checkpoint`` CSV row.
CHECKPOINT_FIELDS = ("id", "log", "seq", "hash", "signed_at", "key_id", "signature")


def fhir_audit_event(row: dict[str, Any]) -> dict[str, Any]:
    """One exported audit row (JSON columns as text) as a FHIR R4 AuditEvent; the chain's
    fields travel as entity details."""
    details = {
        "seq": row["seq"],
        "configuration_before": row["configuration_before"],
        "configuration_after": row["configuration_after"],
        "rules": row["rules"],
        "reason": row["reason"],
        "payload_digest": row["payload_digest"],
        "pathway": f"{row['pathway_id']} {row['pathway_version']}",
        "occurred_at": row["occurred_at"],
        "prev_hash": row["prev_hash"],
        "hash": row["hash"],
    }
    entity: dict[str, Any] = {
        "detail": [
            {"type": name, "valueString": str(value)}
            for name, value in details.items()
            if value is not None
        ]
    }
    if row["episode_id"]:
        entity["what"] = {"reference": f"EpisodeOfCare/{row['episode_id']}"}
    return {
        "resourceType": "AuditEvent",
        "id": f"carepath-audit-{row['seq']}",
        "type": {"system": TRIGGERS, "code": row["trigger"]},
        "subtype": [{"system": EVENT_TYPES, "code": row["type"]}],
        "action": "E",
        "recorded": row["recorded_at"],
        # 0: success; 4: minor failure, which a refusal by a guideline rule is.
        "outcome": "0" if row["accepted"] else "4",
        "outcomeDesc": row["reason"] or None,
        "agent": [{"who": {"display": row["actor"]}, "requestor": True}],
        "source": {"observer": {"display": "carepath"}},
        "entity": [entity],
    }


def fhir_chain_head(
    last_seq: int, last_hash: str, trailer: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The export's last line: a Provenance naming the last AuditEvent and the head hash,
    with the checkpoint and the export's scope (as in the JSON lines trailer) as JSON text
    in extensions."""
    extras = []
    if trailer is not None:
        extras = [
            {
                "url": "https://carepath.example/fhir/chain-checkpoint",
                "valueString": json.dumps(trailer["checkpoint"], sort_keys=True),
            },
            {
                "url": "https://carepath.example/fhir/export-scope",
                "valueString": json.dumps(trailer["export"], sort_keys=True),
            },
        ]
    return {
        "resourceType": "Provenance",
        "id": f"carepath-chain-head-{last_seq}",
        "target": [{"reference": f"AuditEvent/carepath-audit-{last_seq}"}] if last_seq else [],
        "agent": [{"who": {"display": "carepath"}}],
        "extension": [
            {"url": "https://carepath.example/fhir/chain-head-seq", "valueInteger": last_seq},
            {"url": "https://carepath.example/fhir/chain-head-hash", "valueString": last_hash},
            *extras,
        ],
    }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("occurred_at", "recorded_at"):
        if isinstance(row.get(key), datetime):
            row[key] = row[key].isoformat()
    return row
