"""What an intruder with write access to the database, and carepath's source, can do to the
audit log: every forgery here uses the project's own hash function."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update

from models.audit import AUDIT_HEAD, AUDIT_LOG, GENESIS_HASH, chain_row, entry_hash
from models.audit_keys import AUDIT_KEY_FILE_ENV, AuditKey, generate_key

FORGED_AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def use_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "audit.pem") -> AuditKey:
    """A fresh audit key, made this process's key (CAREPATH_AUDIT_KEY_FILE)."""
    path = tmp_path / name
    key = generate_key(path)
    monkeypatch.setenv(AUDIT_KEY_FILE_ENV, str(path))
    return key


def lift_guard(engine: Engine, table: str = "audit_log") -> None:
    """Get past a table's append-only triggers, as the table's owner can."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            for action in ("update", "delete"):
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
        else:
            connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")


def restore_guard(engine: Engine) -> None:
    """Put the audit log's triggers back, leaving no sign that they were lifted."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            for action in ("UPDATE", "DELETE"):
                connection.exec_driver_sql(
                    f"CREATE TRIGGER audit_log_no_{action.lower()} BEFORE {action} ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
                )
        else:
            connection.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER USER")


def log_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        query = select(AUDIT_LOG).order_by(AUDIT_LOG.c.seq)
        return [dict(row) for row in connection.execute(query).mappings()]


def head(engine: Engine) -> tuple[int, str]:
    with engine.connect() as connection:
        row = connection.execute(select(AUDIT_HEAD.c.last_seq, AUDIT_HEAD.c.last_hash)).one()
    return int(row[0]), str(row[1])


def _move_head(connection: Any, seq: int, digest: str) -> None:
    connection.execute(update(AUDIT_HEAD).values(last_seq=seq, last_hash=digest))


def append_forged(engine: Engine, seal: str | None = None, **changes: Any) -> dict[str, Any]:
    """(a) A row appended with a correct hash, and the head moved to it."""
    last_seq, last_hash = head(engine)
    facts: dict[str, Any] = {
        "episode_id": None, "trigger": "event", "type": "order", "actor": "dr.intruder",
        "occurred_at": FORGED_AT, "recorded_at": FORGED_AT, "accepted": True,
        "configuration_before": [], "configuration_after": [], "rules": [],
        "reason": "overridden (IMG-NO-EARLY): forged", "payload": {"kind": "mri"},
        "pathway_id": "lumbosacral-radiculopathy", "pathway_version": "1.0.0", **changes,
    }  # fmt: skip
    row = chain_row(last_seq, last_hash, **facts)
    row["seal"] = seal
    with engine.begin() as connection:
        connection.execute(AUDIT_LOG.insert().values(row))
        _move_head(connection, row["seq"], row["hash"])
    return row


def cut_tail(engine: Engine, keep: int) -> None:
    """(b) The rows after ``keep`` deleted, and the head moved back to row ``keep``."""
    lift_guard(engine)
    kept = {row["seq"]: row["hash"] for row in log_rows(engine)}
    with engine.begin() as connection:
        connection.execute(AUDIT_LOG.delete().where(AUDIT_LOG.c.seq > keep))
        _move_head(connection, keep, kept.get(keep, GENESIS_HASH))


def delete_checkpoints(engine: Engine, above_seq: int) -> None:
    """The checkpoints naming rows after ``above_seq`` deleted too."""
    lift_guard(engine, "audit_checkpoint")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_checkpoint WHERE seq > :s"), {"s": above_seq})


def rewrite(engine: Engine, seq: int, rechain: bool = True, **changes: Any) -> None:
    """(c) Row ``seq`` edited, its hash recomputed, and (``rechain``) every row after it
    re-linked and re-hashed, the head moved to the new last hash. Seals are left as they
    were: the intruder cannot make new ones."""
    lift_guard(engine)
    rows = log_rows(engine)
    previous = GENESIS_HASH
    with engine.begin() as connection:
        for row in rows:
            if row["seq"] == seq:
                row.update(changes)
            if row["seq"] >= seq and (rechain or row["seq"] == seq):
                row["prev_hash"] = previous
                row["hash"] = entry_hash(row, previous)
                connection.execute(
                    AUDIT_LOG.update()
                    .where(AUDIT_LOG.c.seq == row["seq"])
                    .values({k: v for k, v in row.items() if k != "seq"})
                )
            previous = row["hash"]
        if rechain:
            _move_head(connection, rows[-1]["seq"], rows[-1]["hash"])


def edit_in_place(engine: Engine, seq: int, **changes: Any) -> None:
    """A row's content changed, its stored hash left alone."""
    lift_guard(engine)
    with engine.begin() as connection:
        connection.execute(AUDIT_LOG.update().where(AUDIT_LOG.c.seq == seq).values(changes))


def swap(engine: Engine, a: int, b: int) -> None:
    """Two rows' places exchanged (each keeps its content, hash and seal)."""
    lift_guard(engine)
    with engine.begin() as connection:
        for old, new in ((a, -1), (b, a), (-1, b)):
            connection.execute(AUDIT_LOG.update().where(AUDIT_LOG.c.seq == old).values(seq=new))
