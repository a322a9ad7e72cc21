"""Signed checkpoints: "row SEQ of this log carried HASH at this time", signed with the
audit key.

A checkpoint anchors the chain outside the database: whoever rewrites rows up to it, or
cuts them off, cannot make the row at its sequence number carry its hash again, nor sign a
new checkpoint without the key. Checkpoints are stored in ``audit_checkpoint`` (append-only,
one table for every log, each row naming its log) and travel at the end of every export.
Writing them, after checking what is signed, is :mod:`models.checkpointing`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select

from engine.clinic_time import to_utc
from models.audit import ChainSpec
from models.audit_keys import AuditKey, PublicKey
from models.tables import AuditCheckpoint

CHECKPOINT = cast(Table, AuditCheckpoint.__table__)
MESSAGE_VERSION = "carepath audit checkpoint v1"


def _instant(value: datetime) -> str:
    return to_utc(value).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement of a log's head. ``id`` is None until stored."""

    log: str
    seq: int
    hash: str
    signed_at: datetime
    key_id: str
    signature: str
    id: int | None = None

    def message(self) -> bytes:
        """The bytes signed: every field but the signature and the id, one a line."""
        return (
            f"{MESSAGE_VERSION}\nlog: {self.log}\nseq: {self.seq}\nhash: {self.hash}\n"
            f"signed_at: {_instant(self.signed_at)}\nkey: {self.key_id}\n"
        ).encode()

    def label(self) -> str:
        return (
            f"checkpoint {self.id} (row {self.seq})" if self.id else f"checkpoint of row {self.seq}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "log": self.log,
            "seq": self.seq,
            "hash": self.hash,
            "signed_at": _instant(self.signed_at),
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint an export carries.

        Raises:
            ValueError: a field is missing or of the wrong kind.
        """
        try:
            signed_at = datetime.fromisoformat(str(value["signed_at"]).replace("Z", "+00:00"))
            checkpoint = cls(
                log=str(value["log"]),
                seq=int(value["seq"]),
                hash=str(value["hash"]),
                signed_at=signed_at,
                key_id=str(value["key_id"]),
                signature=str(value["signature"]),
                id=None if value.get("id") is None else int(value["id"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a checkpoint: {exc}") from exc
        if signed_at.tzinfo is None:
            raise ValueError("not a checkpoint: signed_at has no offset")
        return checkpoint


def sign(key: AuditKey, spec: ChainSpec, seq: int, hash: str, now: datetime) -> Checkpoint:
    """A checkpoint of row ``seq`` carrying ``hash``, signed now with ``key``."""
    unsigned = Checkpoint(spec.name, seq, hash, to_utc(now), key.id, "")
    signature = key.sign(unsigned.message()).hex()
    return Checkpoint(spec.name, seq, hash, unsigned.signed_at, key.id, signature)


def signature_problem(checkpoint: Checkpoint, keys: Mapping[str, PublicKey]) -> str | None:
    """What is wrong with the checkpoint's signature under ``keys`` (by key id), or None."""
    key = keys.get(checkpoint.key_id)
    if key is None:
        given = ", ".join(sorted(keys)) or "none"
        return (
            f"{checkpoint.label()}: signed by key {checkpoint.key_id}, not by a key given ({given})"
        )
    try:
        signature = bytes.fromhex(checkpoint.signature)
    except ValueError:
        signature = b""
    if not key.verify(signature, checkpoint.message()):
        return (
            f"{checkpoint.label()}: signature does not match: the checkpoint was edited or forged"
        )
    return None


def row_problem(checkpoint: Checkpoint, row_hash: str | None, head_seq: int) -> str | None:
    """What is wrong with the log's row at the checkpoint's sequence number, or None."""
    if row_hash is None:
        if checkpoint.seq > head_seq:
            return (
                f"{checkpoint.label()}: the log ends at row {head_seq}: rows signed for were "
                "cut off"
            )
        return f"{checkpoint.label()}: the log no longer has row {checkpoint.seq}"
    if row_hash != checkpoint.hash:
        return (
            f"row {checkpoint.seq} no longer carries the hash {checkpoint.label()} signed at "
            f"{_instant(checkpoint.signed_at)}: the log was rewritten up to there"
        )
    return None


def _from_row(row: Mapping[Any, Any]) -> Checkpoint:
    return Checkpoint(
        log=row["log"],
        seq=row["seq"],
        hash=row["hash"],
        signed_at=row["signed_at"],
        key_id=row["key_id"],
        signature=row["signature"],
        id=row["id"],
    )


def read_all(connection: Connection, spec: ChainSpec) -> list[tuple[Checkpoint, str | None]]:
    """Every checkpoint of the log in the order written, each with the hash the log's row
    at its sequence number carries now (None when there is no such row)."""
    log = spec.log
    query = (
        select(CHECKPOINT, log.c.hash.label("row_hash"))
        .select_from(CHECKPOINT.outerjoin(log, log.c.seq == CHECKPOINT.c.seq))
        .where(CHECKPOINT.c.log == spec.name)
        .order_by(CHECKPOINT.c.id)
    )
    return [(_from_row(row), row["row_hash"]) for row in connection.execute(query).mappings()]


def latest(
    connection: Connection, spec: ChainSpec, up_to_seq: int | None = None
) -> tuple[Checkpoint, str | None] | None:
    """The newest checkpoint of the furthest row (at or below ``up_to_seq``), with the hash
    the log's row carries now."""
    log = spec.log
    query = (
        select(CHECKPOINT, log.c.hash.label("row_hash"))
        .select_from(CHECKPOINT.outerjoin(log, log.c.seq == CHECKPOINT.c.seq))
        .where(CHECKPOINT.c.log == spec.name)
        .order_by(CHECKPOINT.c.seq.desc(), CHECKPOINT.c.id.desc())
        .limit(1)
    )
    if up_to_seq is not None:
        query = query.where(CHECKPOINT.c.seq <= up_to_seq)
    row = connection.execute(query).mappings().first()
    return None if row is None else (_from_row(row), row["row_hash"])


def by_id(connection: Connection, checkpoint_id: int) -> Checkpoint | None:
    row = (
        connection.execute(select(CHECKPOINT).where(CHECKPOINT.c.id == checkpoint_id))
        .mappings()
        .first()
    )
    return None if row is None else _from_row(row)


def store(connection: Connection, checkpoint: Checkpoint) -> Checkpoint:
    """Write the checkpoint in the caller's transaction; returns it with its id."""
    values = checkpoint.as_json()
    values.pop("id")
    values["signed_at"] = checkpoint.signed_at
    new_id = connection.execute(insert(CHECKPOINT).values(values)).inserted_primary_key
    assert new_id is not None
    return Checkpoint(**{**checkpoint.__dict__, "id": int(new_id[0])})


def keys_by_id(keys: Sequence[PublicKey]) -> dict[str, PublicKey]:
    return {key.id: key for key in keys}
