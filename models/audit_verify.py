"""Verifying a hash-chained log in the database: checkpoints, links, hashes, seals, head.

What each key lets a verifier see:

- **no key**: every row re-hashed and linked from the genesis row, the head compared with
  the last row. Someone with write access to the database can append a row with a correct
  hash, or rewrite the tail and move the head, and this cannot tell.
- **the public key** (``--public-key``): every checkpoint's signature, and that the row
  at each checkpoint's sequence number still carries the hash it signed: rows up to the
  newest checkpoint cannot have been rewritten, reordered or cut off. Rows after it cannot
  be authenticated (their seals need the private key); the report says how many.
- **the private key** (``CAREPATH_AUDIT_KEY_FILE``): the above, and every row after the
  newest checkpoint must carry its seal, which someone without the key cannot make, and so
  must the head: rows cut off after the newest checkpoint, and the head moved back onto a
  real row, show as a head whose seal is not that row's.

By default the walk resumes from the newest checkpoint it can trust (signature valid, its
row still carrying its hash) and re-hashes only the rows after it: the time taken follows
the rows added since, not the log's length. What such a walk cannot see is an old row
whose content was changed in place while its stored hash was left alone: its hash is not
recomputed, and the links around it still hold. An in-place change has to get past the
append-only triggers, so a walk that finds them missing or disabled re-hashes everything;
one by someone who put them back (or a superuser, who can bypass them without lifting
them) is found only by ``full=True`` (``carepath audit verify --full``), which re-hashes
every row. Run one on a schedule (our suggestion: nightly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from hmac import compare_digest
from typing import Any

from sqlalchemy import Engine, func, select, text

from models.audit import AUDIT_CHAIN, GENESIS_HASH, ChainSpec, head_seal
from models.audit_keys import AuditKey, PublicKey
from models.chain_parallel import processes_for, walk_in_parts
from models.chain_walk import BATCH, Problem, walk
from models.checkpoints import Checkpoint, keys_by_id, read_all, row_problem, signature_problem
from models.db import read_only


@dataclass
class ChainReport:
    """What a verify found. ``problem`` names the first bad row or checkpoint in words."""

    ok: bool
    rows_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    first_bad_checkpoint: int | None = None
    full: bool = True
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    # The checkpoint the walk resumed from (None: from the genesis row).
    resumed_from: Checkpoint | None = None
    latest_checkpoint: Checkpoint | None = None
    checkpoints: int = 0
    signatures_checked: int = 0
    seals_checked: bool = False
    # Rows after the newest trusted checkpoint that nothing here could authenticate.
    unauthenticated_rows: int = 0
    warnings: list[str] = field(default_factory=list)


def parse_against(value: str) -> tuple[int, str]:
    """``SEQ:HASH`` (a row number and its 64 hex digits).

    Raises:
        ValueError: anything else.
    """
    seq_text, _, hash_text = value.partition(":")
    if not seq_text.isdigit() or int(seq_text) < 1:
        raise ValueError(f"must be SEQ:HASH with SEQ a row number from 1, got {value!r}")
    if len(hash_text) != 64 or any(c not in "0123456789abcdef" for c in hash_text):
        raise ValueError(f"HASH must be 64 lower-case hex digits, got {hash_text!r}")
    return int(seq_text), hash_text


def verify_log(
    engine: Engine,
    spec: ChainSpec = AUDIT_CHAIN,
    *,
    key: AuditKey | None = None,
    public_keys: Sequence[PublicKey] = (),
    full: bool = False,
    against: tuple[int, str] | None = None,
    every_checkpoint: bool = True,
    accept_unsealed: bool = False,
    batch_size: int = BATCH,
    on_progress: Callable[[int], None] | None = None,
) -> ChainReport:
    """Verify the log (see the module's docstring for what each key shows).

    Args:
        engine: the database.
        spec: which log.
        key: the private key: checks signatures and seals.
        public_keys: more keys to check signatures with (a rotated key's public half).
        full: re-hash every row from the genesis row.
        against: ``(seq, hash)``: the row ``seq`` must still carry ``hash`` (a head an
            auditor kept: the log must still hold it as a prefix).
        every_checkpoint: check every checkpoint (False: the newest only, as a checkpoint
            writer does every few minutes).
        accept_unsealed: rows after the newest checkpoint may lack a seal (an operator
            vouching for rows written without the key).
        batch_size: rows per read.
        on_progress: called with the number of rows of each batch re-hashed.
    """
    keys = keys_by_id([*public_keys, *([key.public] if key else [])])
    with read_only(engine) as connection:
        head = connection.execute(
            select(spec.head.c.last_seq, spec.head.c.last_hash, spec.head.c.seal).where(
                spec.head.c.id == 1
            )
        ).first()
        checkpoints = read_all(connection, spec)
        guard = _guard_lifted(connection, spec)
    report = ChainReport(ok=True, rows_checked=0, full=full, checkpoints=len(checkpoints))
    if head is None:
        return _bad(report, 1, f"{spec.head.name} row is missing")
    report.head_seq, report.head_hash = int(head[0]), str(head[1])
    stored_head_seal = head[2]

    # The checkpoints: each one's signature, and the row at its sequence number.
    bad_checkpoint: tuple[int, int | None, str] | None = None
    trusted: list[Checkpoint] = []
    signed_up_to = 0
    checked = checkpoints
    if not every_checkpoint and checkpoints:
        checked = [max(checkpoints, key=lambda pair: (pair[0].seq, pair[0].id or 0))]
    for checkpoint, row_hash in checked:
        problem: str | None = signature_problem(checkpoint, keys) if keys else None
        if keys:
            report.signatures_checked += 1
        if problem is None and keys:
            signed_up_to = max(signed_up_to, checkpoint.seq)
        if problem is None:
            problem = row_problem(checkpoint, row_hash, report.head_seq)
            if problem is None and keys:
                trusted.append(checkpoint)
        if problem is not None and (bad_checkpoint is None or checkpoint.seq < bad_checkpoint[0]):
            bad_checkpoint = (checkpoint.seq, checkpoint.id, problem)
    trusted.sort(key=lambda c: (c.seq, c.id or 0))
    report.latest_checkpoint = trusted[-1] if trusted else None

    # Where the walk starts: after the newest trusted checkpoint, unless asked for a full
    # walk, or the row asked about, or a bad checkpoint, lies before it.
    limit = report.head_seq
    if against is not None:
        limit = min(limit, against[0] - 1)
    if bad_checkpoint is not None:
        limit = min(limit, bad_checkpoint[0] - 1)
    if guard is not None and not full:
        report.warnings.append(f"{guard}: every row re-hashed")
        full = report.full = True
    start = None if full else next((c for c in reversed(trusted) if c.seq <= limit), None)
    report.resumed_from = start
    after, prev_hash = (start.seq, start.hash) if start else (0, GENESIS_HASH)

    sealer = key.sealer(spec.name) if key else None
    report.seals_checked = sealer is not None
    # Seals are checked after the newest trusted checkpoint (its signature vouches for the
    # rows up to it: a full walk re-hashes them too), or everywhere once a checkpoint is
    # found bad, to name the first row rewritten.
    seals_from = trusted[-1].seq if trusted and bad_checkpoint is None else 0
    options: dict[str, Any] = {
        "sealer": sealer,
        "seals_required_after": report.head_seq if accept_unsealed else signed_up_to,
        "seals_from": seals_from,
        "batch": batch_size,
        "on_progress": on_progress,
    }
    processes = processes_for(engine, report.head_seq - after)
    if processes > 1:
        walked = walk_in_parts(
            engine, spec, after, prev_hash, report.head_seq, processes=processes, **options
        )
    else:
        walked = walk(engine, spec, after, prev_hash, report.head_seq, **options)
    report.rows_checked = walked.rows
    last_hash = walked.last_hash if walked.last_hash is not None else prev_hash
    found = walked.problem or _head_problem(engine, spec, report, walked.last_seq, last_hash)
    if found is None and sealer is not None and report.head_seq:
        found = _head_seal_problem(spec, report, sealer, stored_head_seal, accept_unsealed)
    if against is not None:
        # The walk re-hashed the rows from at or before the row asked about: its stored
        # hash is its content's, and the rows after it link up to the head.
        kept = _against_problem(engine, spec, against, report.head_seq)
        if kept is not None and (found is None or kept.seq < found.seq):
            found = kept
    if bad_checkpoint is not None and (found is None or bad_checkpoint[0] <= found.seq):
        report.first_bad_checkpoint = bad_checkpoint[1]
        return _bad(report, bad_checkpoint[0], bad_checkpoint[2])
    if found is not None:
        return _bad(report, found.seq, found.text)
    _tell_what_was_not_seen(report, bool(keys), sealer is not None)
    return report


def _bad(report: ChainReport, seq: int | None, problem: str) -> ChainReport:
    report.ok, report.first_bad_seq, report.problem = False, seq, problem
    return report


def _head_problem(
    engine: Engine, spec: ChainSpec, report: ChainReport, last_seq: int, last_hash: str
) -> Problem | None:
    head_seq = report.head_seq
    if last_seq != head_seq:
        return Problem(
            min(head_seq, last_seq) + 1,
            f"{spec.head.name} says {head_seq} rows, log has {last_seq}",
        )
    if report.head_hash != last_hash:
        return Problem(last_seq or 1, f"{spec.head.name} hash does not match row {last_seq}")
    with read_only(engine) as connection:
        beyond = connection.scalar(select(func.max(spec.log.c.seq)))
        if beyond is not None and beyond > head_seq:
            # Appended and committed since the head was read (it moves with the rows, in
            # one transaction), or written without moving it.
            moved = connection.scalar(select(spec.head.c.last_seq).where(spec.head.c.id == 1))
            if moved is None or moved < beyond:
                return Problem(
                    head_seq + 1, f"{spec.head.name} says {head_seq} rows, log has {beyond}"
                )
    return None


def _head_seal_problem(
    spec: ChainSpec, report: ChainReport, sealer: Any, stored: str | None, accept_unsealed: bool
) -> Problem | None:
    """The head must carry its seal: rows cut off after the newest checkpoint, with the
    head moved back onto a real row, leave nothing else to show."""
    expected = head_seal(sealer, report.head_seq, report.head_hash)
    if stored is None:
        if accept_unsealed:
            return None
        return Problem(
            report.head_seq,
            f"{spec.head.name} carries no seal: moved without the audit key, or not by carepath",
        )
    if not compare_digest(stored, expected or ""):
        return Problem(
            report.head_seq,
            f"{spec.head.name} seal does not match row {report.head_seq}: the head was moved "
            "back, or rows cut off",
        )
    return None


def _against_problem(
    engine: Engine, spec: ChainSpec, against: tuple[int, str], head_seq: int
) -> Problem | None:
    seq, expected = against
    if seq > head_seq:
        return Problem(head_seq + 1, f"--against row {seq}: the log ends at row {head_seq}")
    with read_only(engine) as connection:
        found = connection.scalar(select(spec.log.c.hash).where(spec.log.c.seq == seq))
    if found != expected:
        return Problem(
            seq,
            f"row {seq} carries hash {found}, not the {expected} given: the log was "
            "rewritten since",
        )
    return None


def _tell_what_was_not_seen(report: ChainReport, signatures: bool, seals: bool) -> None:
    trusted = report.latest_checkpoint
    covered = trusted.seq if trusted else 0
    if not signatures:
        report.unauthenticated_rows = report.head_seq
        report.warnings.append(
            "no audit key given (CAREPATH_AUDIT_KEY_FILE, or --public-key): checkpoints and "
            "seals were not checked, so a row appended, or a tail rewritten, with correct "
            "hashes would not show"
        )
    elif not seals and report.head_seq > covered:
        report.unauthenticated_rows = report.head_seq - covered
        since = f"after {trusted.label()}" if trusted else "(there is no checkpoint yet)"
        report.warnings.append(
            f"{report.unauthenticated_rows} rows {since} cannot be authenticated with the "
            "public key: their seals need the private key, so a row forged there would "
            "not show"
        )


def _guard_lifted(connection: Any, spec: ChainSpec) -> str | None:
    """Why the log's append-only triggers are found missing or disabled, or None."""
    dialect = connection.dialect.name
    expected = spec.triggers_for(dialect)
    if not expected:
        return None
    table = spec.log.name
    if dialect == "sqlite":
        rows = connection.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
            {"t": table},
        ).all()
        enabled = {row[0] for row in rows}
    else:
        rows = connection.execute(
            text(
                "SELECT tgname, tgenabled FROM pg_catalog.pg_trigger "
                "WHERE tgrelid = CAST(:t AS regclass) AND NOT tgisinternal"
            ),
            {"t": table},
        ).all()
        # 'D': disabled; 'O' (the default) and 'A' fire; 'R' only on replicas.
        enabled = {row[0] for row in rows if row[1] in ("O", "A")}
    missing = [name for name in expected if name not in enabled]
    if not missing:
        return None
    return f"the append-only triggers on {table} are missing or disabled ({', '.join(missing)})"
