"""The tamper-evident audit log: one hash chain over every episode's steps.

Each row's hash covers its content and the previous row's hash, so changing, removing or
reordering a row breaks every link after it; ``audit_head`` holds the last hash, so cutting
rows off the end shows too. Triggers make the table append-only; the chain catches whoever
gets past them (a superuser, a file editor).

The hash function is public, so someone who can write to the database can also append a
row with a correct hash, or rewrite the chain's tail. What they cannot make is a row's
*seal* (HMAC over its hash with a key derived from the audit key, set here as each row is
appended when the process has the key, :mod:`models.audit_keys`) or a *checkpoint* (the
head signed with that key, :mod:`models.checkpoints`). :mod:`models.audit_verify` checks
all three.

The machinery is described by a :class:`ChainSpec`, so a second log kept the same way
(its own table and head, the same ``seq``/``prev_hash``/``hash``/``seal`` columns) reuses
the seals, the checkpoints and the verifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from engine.clinic_time import to_utc
from models.audit_keys import Sealer, process_sealer
from models.json_text import dumps_with
from models.tables import AUDIT_TRIGGERS, AuditEntry, AuditHead

if TYPE_CHECKING:
    from models.audit_verify import ChainReport

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


def entry_hash(
    fields: Mapping[Any, Any], prev_hash: str, hashed: Sequence[str] = HASHED_FIELDS
) -> str:
    """The hash of a row: its ``hashed`` fields plus the previous row's hash."""
    content = {name: fields[name] for name in hashed}
    content["prev_hash"] = prev_hash
    return _sha256(canonical_json(content))


AUDIT_HEAD = cast(Table, AuditHead.__table__)
AUDIT_LOG = cast(Table, AuditEntry.__table__)


@dataclass(frozen=True)
class ChainSpec:
    """A hash-chained log: its table (``seq``, the hashed fields, ``prev_hash``, ``hash``,
    ``seal``), its one-row head table (``id`` 1, ``last_seq``, ``last_hash``) and the
    fields each row's hash covers. ``name`` is signed into its checkpoints and keys its
    seals, so neither can be moved to another log."""

    name: str
    log: Table
    head: Table
    hashed: tuple[str, ...]
    # The append-only triggers an in-place edit has to get past, by dialect.
    triggers: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def triggers_for(self, dialect: str) -> tuple[str, ...]:
        return dict(self.triggers).get(dialect, ())

    def hash_row(self, fields: Mapping[Any, Any], prev_hash: str) -> str:
        return entry_hash(fields, prev_hash, self.hashed)

    def plain(self) -> tuple[Any, ...]:
        """The spec as plain values, to hand to another process (:meth:`from_plain`)."""
        return (self.name, self.log.name, self.head.name, self.hashed, self.triggers)

    @classmethod
    def from_plain(cls, plain: tuple[Any, ...]) -> ChainSpec:
        """The spec :meth:`plain` gave; its tables must be mapped in :mod:`models.tables`."""
        from models.tables import Base

        name, log, head, hashed, triggers = plain
        tables = Base.metadata.tables
        return cls(name, tables[log], tables[head], tuple(hashed), tuple(triggers))


AUDIT_CHAIN = ChainSpec(
    "audit_log",
    AUDIT_LOG,
    AUDIT_HEAD,
    HASHED_FIELDS,
    triggers=(
        ("sqlite", ("audit_log_no_update", "audit_log_no_delete")),
        ("postgresql", ("audit_log_append_only", "audit_log_no_truncate")),
    ),
)
READ_HEAD = (
    select(AUDIT_HEAD.c.last_seq, AUDIT_HEAD.c.last_hash)
    .where(AUDIT_HEAD.c.id == 1)
    .with_for_update()
)
MOVE_HEAD = (
    update(AUDIT_HEAD)
    .where(AUDIT_HEAD.c.id == 1)
    .values(last_seq=bindparam("seq"), last_hash=bindparam("hash"), seal=bindparam("head_seal"))
)


def head_seal(sealer: Sealer | None, seq: int, digest: str) -> str | None:
    """The head's own seal: rows cut off the end since the newest checkpoint, and the head
    moved back onto a real row, would otherwise leave nothing to show. Its message cannot
    be a row's hash (64 hex digits), so no row's seal is ever a head's."""
    return None if sealer is None else sealer(f"head:{seq}:{digest}")


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
    sealer: Sealer | None = None,
) -> dict[str, Any]:
    """The next row of the chain after the head ``(last_seq, last_hash)``, hash included,
    and sealed with ``sealer`` (``seal`` is None without one)."""
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
    seal = None if sealer is None else sealer(digest)
    return {**fields, "prev_hash": last_hash, "hash": digest, "seal": seal}


def append_audit(target: Session | Connection, **facts: Any) -> AuditEntry:
    """Write the next row of the chain in the caller's transaction; the caller commits.

    ``facts`` are :func:`chain_row`'s keyword arguments. The head row is locked
    (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the transaction's
    ``BEGIN IMMEDIATE`` already serialises writers), so concurrent appenders take turns and
    commit in ``seq`` order. The row, and the head, are sealed with this process's audit
    key, when it has one (``CAREPATH_AUDIT_KEY_FILE``). Returns the row written (not attached to any
    session).
    """
    if isinstance(target, Session):
        target.flush()  # the caller's pending rows go first, as they were written first
        connection = target.connection()
    else:
        connection = target
    head = connection.execute(READ_HEAD).first()
    if head is None:
        raise RuntimeError(HEAD_MISSING)
    sealer = process_sealer(AUDIT_CHAIN.name)
    row = chain_row(head[0], head[1], **facts, sealer=sealer)
    connection.execute(INSERT_ENTRY, row)
    sealed = head_seal(sealer, row["seq"], row["hash"])
    connection.execute(MOVE_HEAD, {"seq": row["seq"], "hash": row["hash"], "head_seal": sealed})
    return AuditEntry(**row)


HEAD_MISSING = "audit_head row is missing: run `carepath db upgrade`"


def verify_chain(session: Session, batch_size: int = 5000) -> ChainReport:
    """Re-hash the whole chain and check every link and the head, without any key.

    :func:`models.audit_verify.verify_log` with ``full=True``: the checkpoints are counted
    but not checked, and seals are not checked.
    """
    from models.audit_verify import verify_log

    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    return verify_log(engine, full=True, batch_size=batch_size)
