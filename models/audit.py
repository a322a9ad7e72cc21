"""The tamper-evident audit log: one hash chain over every episode's steps.

Each row's hash covers its content and the previous row's hash, so changing, removing or
reordering a row breaks every link after it; ``audit_head`` holds the last hash, so cutting
rows off the end shows too. Triggers make the table append-only; the chain catches whoever
gets past them (a superuser, a file editor).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from engine.clinic_time import to_utc
from models.json_text import dumps_with
from models.tables import AUDIT_TRIGGERS, AuditEntry, AuditHead

GENESIS_HASH = "0" * 64

# The row's content, in the order a reader would list it; prev_hash is added last.
HASHED_FIELDS = (
    "seq",
    "episode_id",
    "trigger",
    "type",
    "actor",
    "occurred_at",
    "recorded_at",
    "accepted",
    "configuration_before",
    "configuration_after",
    "rules",
    "reason",
    "payload_digest",
    "pathway_id",
    "pathway_version",
)


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        # Always with microseconds: the form does not depend on the value.
        return to_utc(value).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable: {value!r}")


_canonical_dumps = dumps_with(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    default=_json_default,
)


def canonical_json(obj: Any) -> str:
    """One text per value: sorted keys, no spaces, UTC instants ending in ``Z``."""
    return _canonical_dumps(obj)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def payload_digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the step's input (event data or timer payload), in canonical JSON."""
    return _sha256(canonical_json(payload))


def entry_hash(fields: Mapping[str, Any], prev_hash: str) -> str:
    """The hash of an audit row: its :data:`HASHED_FIELDS` plus the previous row's hash."""
    content = {name: fields[name] for name in HASHED_FIELDS}
    content["prev_hash"] = prev_hash
    return _sha256(canonical_json(content))


AUDIT_HEAD = cast(Table, AuditHead.__table__)
AUDIT_LOG = cast(Table, AuditEntry.__table__)
READ_HEAD = (
    select(AUDIT_HEAD.c.last_seq, AUDIT_HEAD.c.last_hash)
    .where(AUDIT_HEAD.c.id == 1)
    .with_for_update()
)
MOVE_HEAD = (
    update(AUDIT_HEAD)
    .where(AUDIT_HEAD.c.id == 1)
    .values(last_seq=bindparam("seq"), last_hash=bindparam("hash"))
)
INSERT_ENTRY = insert(AUDIT_LOG)


def chain_row(
    last_seq: int,
    last_hash: str,
    *,
    episode_id: str | None,
    trigger: str,
    type: str,
    actor: str,
    occurred_at: datetime,
    recorded_at: datetime,
    accepted: bool,
    configuration_before: Sequence[str],
    configuration_after: Sequence[str],
    rules: Sequence[str],
    reason: str | None,
    payload: Mapping[str, Any],
    pathway_id: str,
    pathway_version: str,
) -> dict[str, Any]:
    """The next row of the chain after the head ``(last_seq, last_hash)``, hash included."""
    if trigger not in AUDIT_TRIGGERS:
        raise ValueError(f"trigger must be one of {', '.join(AUDIT_TRIGGERS)}, not {trigger!r}")
    fields: dict[str, Any] = {
        "seq": last_seq + 1,
        "episode_id": episode_id,
        "trigger": trigger,
        "type": type,
        "actor": actor,
        # Hashed as they will read back: UTC, microseconds kept.
        "occurred_at": to_utc(occurred_at),
        "recorded_at": to_utc(recorded_at),
        "accepted": bool(accepted),
        "configuration_before": list(configuration_before),
        "configuration_after": list(configuration_after),
        "rules": list(rules),
        "reason": reason,
        "payload_digest": payload_digest(payload),
        "pathway_id": pathway_id,
        "pathway_version": pathway_version,
    }
    digest = entry_hash(fields, last_hash)
    return {**fields, "prev_hash": last_hash, "hash": digest}


def append_audit(target: Session | Connection, **facts: Any) -> AuditEntry:
    """Write the next row of the chain in the caller's transaction; the caller commits.

    ``facts`` are :func:`chain_row`'s keyword arguments. The head row is locked
    (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the transaction's
    ``BEGIN IMMEDIATE`` already serialises writers), so concurrent appenders take turns and
    commit in ``seq`` order. Returns the row written (not attached to any session).
    """
    if isinstance(target, Session):
        target.flush()  # the caller's pending rows go first, as they were written first
        connection = target.connection()
    else:
        connection = target
    head = connection.execute(READ_HEAD).first()
    if head is None:
        raise RuntimeError(HEAD_MISSING)
    row = chain_row(head[0], head[1], **facts)
    connection.execute(INSERT_ENTRY, row)
    connection.execute(MOVE_HEAD, {"seq": row["seq"], "hash": row["hash"]})
    return AuditEntry(**row)


HEAD_MISSING = "audit_head row is missing: run `carepath db upgrade`"


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify_chain` found: ``problem`` names the first bad row in words."""

    ok: bool
    rows_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None


def _row_label(row: Mapping[Any, Any]) -> str:
    episode = row["episode_id"]
    return f"row {row['seq']} ({f'episode {episode}' if episode else 'no episode'})"


def _check_row(row: Mapping[Any, Any], expected_seq: int, prev_hash: str) -> tuple[int, str] | None:
    seq = row["seq"]
    if seq != expected_seq:
        if expected_seq == 1:
            return 1, f"row 1 missing: the log starts at row {seq}"
        return expected_seq, (
            f"row {expected_seq} missing: the log goes from row {expected_seq - 1} to row {seq}"
        )
    if row["prev_hash"] != prev_hash:
        link = "the genesis hash" if seq == 1 else f"row {seq - 1}"
        return seq, f"{_row_label(row)}: prev_hash does not match {link}"
    if entry_hash(row, prev_hash) != row["hash"]:
        return seq, f"{_row_label(row)}: hash mismatch: the row was altered"
    return None


def verify_chain(session: Session, batch_size: int = 5000) -> VerifyResult:
    """Walk the whole log in ``seq`` order, recompute every hash and check every link.

    Reads ``batch_size`` rows at a time by key (not OFFSET), as plain rows outside the
    session's identity map, so memory stays flat however long the log is. Stops at the
    first problem.
    """
    table = AuditEntry.__table__
    last_seq, last_hash, checked = 0, GENESIS_HASH, 0
    while True:
        batch = (
            session.execute(
                select(table).where(table.c.seq > last_seq).order_by(table.c.seq).limit(batch_size)
            )
            .mappings()
            .all()
        )
        for row in batch:
            checked += 1
            bad = _check_row(row, last_seq + 1, last_hash)
            if bad is not None:
                return VerifyResult(False, checked, *bad)
            last_seq, last_hash = row["seq"], row["hash"]
        if len(batch) == batch_size:
            continue

        head = session.execute(
            select(AuditHead.last_seq, AuditHead.last_hash).where(AuditHead.id == 1)
        ).one_or_none()
        if head is None:
            return VerifyResult(False, checked, last_seq + 1, "audit_head row is missing")
        if head.last_seq > last_seq and _has_rows_after(session, last_seq):
            # Appended and committed while we walked (PostgreSQL, READ COMMITTED): walk on.
            continue
        if head.last_seq != last_seq:
            problem = f"audit_head says {head.last_seq} rows, log has {last_seq}"
            return VerifyResult(False, checked, min(head.last_seq, last_seq) + 1, problem)
        if head.last_hash != last_hash:
            problem = f"audit_head hash does not match row {last_seq}"
            return VerifyResult(False, checked, last_seq or None, problem)
        return VerifyResult(True, checked)


def _has_rows_after(session: Session, seq: int) -> bool:
    table = AuditEntry.__table__
    return (
        session.execute(select(table.c.seq).where(table.c.seq > seq).limit(1)).first() is not None
    )
