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
FORMATS = ("csv", "jsonl", "fhir")
TRIGGERS = "https://carepath.example/fhir/CodeSystem/audit-trigger"
EVENT_TYPES = "https://carepath.example/fhir/CodeSystem/audit-event-type"
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
    if fmt == "fhir":
        for row in rows:
            yield json.dumps(fhir_audit_event(row), sort_keys=True) + "\n"
        yield json.dumps(fhir_chain_head(last_seq, last_hash), sort_keys=True) + "\n"
        return
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


def fhir_audit_event(row: dict[str, Any]) -> dict[str, Any]:
    """One audit row as a FHIR R4 AuditEvent; the chain's fields travel as entity details."""
    details = {
        "seq": row["seq"],
        "configuration_before": json.dumps(row["configuration_before"]),
        "configuration_after": json.dumps(row["configuration_after"]),
        "rules": json.dumps(row["rules"]),
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


def fhir_chain_head(last_seq: int, last_hash: str) -> dict[str, Any]:
    """The export's last line: a Provenance naming the last AuditEvent and the head hash."""
    return {
        "resourceType": "Provenance",
        "id": f"carepath-chain-head-{last_seq}",
        "target": [{"reference": f"AuditEvent/carepath-audit-{last_seq}"}] if last_seq else [],
        "agent": [{"who": {"display": "carepath"}}],
        "extension": [
            {"url": "https://carepath.example/fhir/chain-head-seq", "valueInteger": last_seq},
            {"url": "https://carepath.example/fhir/chain-head-hash", "valueString": last_hash},
        ],
    }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("occurred_at", "recorded_at"):
        if isinstance(row.get(key), datetime):
            row[key] = row[key].isoformat()
    return row
