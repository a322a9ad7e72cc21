"""Verifying a JSON lines export offline, without the database.

An export (:mod:`models.audit_export`) is the rows in chain order and a trailer line: the
head, the newest checkpoint at or before it, and what the export holds. A whole export is
checked as the log is: sequence numbers from 1, every link and hash, the last row against
the head, the row at the checkpoint's sequence number against the hash it signed and, with
a key, the checkpoint's signature; with the private key, the seals of the rows after the
checkpoint too. A filtered export's rows do not follow on: each row's own hash is checked,
and the report says what could not be.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from models.audit import AUDIT_CHAIN, GENESIS_HASH, ChainSpec, head_seal
from models.audit_keys import AuditKey, PublicKey
from models.audit_verify import ChainReport
from models.chain_walk import BAD_SEAL, NO_SEAL
from models.checkpoints import Checkpoint, keys_by_id, row_problem, signature_problem

TIMES = ("occurred_at", "recorded_at")


def _row_values(row: dict[str, Any]) -> dict[str, Any]:
    """An exported row's fields as the log holds them (times back to instants)."""
    values = dict(row)
    for name in TIMES:
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name])
    return values


def export_scope(where: Any, rows: int, checkpoint: Checkpoint | None) -> dict[str, Any]:
    """What an export holds and what can be checked from it, for its trailer (``where`` is
    the export's :class:`models.audit_export.AuditFilter`)."""
    signed = (
        f"rows up to {checkpoint.seq} against checkpoint {checkpoint.id}'s signature (with "
        "the public key)"
        if checkpoint
        else "nothing against a signature: no checkpoint had been signed"
    )
    if not where.filtered:
        can = [
            "every row's hash against its content",
            "every link from the first row, and that no row is missing",
            "that the last row carries chain_head's hash",
            signed,
        ]
        cannot = ["rows after the checkpoint against a signature (no signature covers them)"]
        if checkpoint is None:
            cannot = ["any row against a signature"]
    else:
        can = ["each row's hash against its own content and prev_hash"]
        if checkpoint:
            can.append("the checkpoint's signature (with the public key)")
        cannot = [
            "the links between rows: the filter leaves rows out, so they do not follow on",
            "that no row matching the filter is missing",
            "that the rows belong to the chain the checkpoint signed",
        ]
    return {
        "rows": rows,
        "filtered": where.filtered,
        "filter": where.as_json(),
        "can_check": can,
        "cannot_check": cannot,
    }


def verify_export(
    lines: Iterable[str],
    *,
    key: AuditKey | None = None,
    public_keys: Sequence[PublicKey] = (),
    against: tuple[int, str] | None = None,
    spec: ChainSpec = AUDIT_CHAIN,
) -> ChainReport:
    """Check an export's lines (see the module's docstring); stops at the first problem."""
    keys = keys_by_id([*public_keys, *([key.public] if key else [])])
    sealer = key.sealer(spec.name) if key else None
    report = ChainReport(ok=True, rows_checked=0, full=True, seals_checked=sealer is not None)
    rows: list[tuple[int, str, str | None]] = []  # (seq, hash, seal) of each row checked
    trailer: dict[str, Any] | None = None
    gap: tuple[int, int] | None = None  # the first row missing, and the row after it
    expected, previous = 1, GENESIS_HASH
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if trailer is not None:
            return _bad(report, None, f"line {number}: more after the trailer line")
        try:
            parsed = json.loads(line)
        except ValueError as exc:
            return _bad(report, None, f"line {number}: not JSON: {exc}")
        if not isinstance(parsed, dict):
            return _bad(report, None, f"line {number}: not a JSON object")
        if "chain_head" in parsed:
            trailer = parsed
            continue
        try:
            values = _row_values(parsed)
            seq, stored = int(values["seq"]), str(values["hash"])
            digest = spec.hash_row(values, str(values["prev_hash"]))
        except (KeyError, TypeError, ValueError) as exc:
            return _bad(report, None, f"line {number}: not an audit row: {exc}")
        label = f"row {seq}"
        if digest != stored:
            return _bad(report, seq, f"{label}: hash mismatch: the row was altered")
        rows.append((seq, stored, values.get("seal")))
        report.rows_checked += 1
        if seq == expected and values["prev_hash"] != previous:
            link = "the genesis hash" if seq == 1 else f"row {seq - 1}"
            return _bad(report, seq, f"{label}: prev_hash does not match {link}")
        if seq != expected and gap is None:
            gap = (expected, seq)  # a problem unless the trailer says rows were left out
        expected, previous = seq + 1, stored
    if trailer is None:
        return _bad(report, None, "no trailer line: the export was cut short")
    return _check_trailer(report, trailer, rows, gap, keys, sealer, against)


def _check_trailer(
    report: ChainReport,
    trailer: dict[str, Any],
    rows: list[tuple[int, str, str | None]],
    gap: tuple[int, int] | None,
    keys: dict[str, PublicKey],
    sealer: Any,
    against: tuple[int, str] | None,
) -> ChainReport:
    head = trailer.get("chain_head") or {}
    try:
        report.head_seq, report.head_hash = int(head["seq"]), str(head["hash"])
    except (KeyError, TypeError, ValueError):
        return _bad(report, None, "the trailer's chain_head is not a sequence number and hash")
    scope = trailer.get("export") or {}
    filtered = bool(scope.get("filtered"))
    by_seq = {seq: (digest, seal) for seq, digest, seal in rows}
    if not filtered:
        if gap is not None:
            missing, seq = gap
            return _bad(
                report, missing,
                f"row {missing} missing: the export goes from row {missing - 1} to row {seq}",
            )  # fmt: skip
        last_seq, last_hash = (rows[-1][0], rows[-1][1]) if rows else (0, GENESIS_HASH)
        if last_seq != report.head_seq:
            return _bad(
                report, min(last_seq, report.head_seq) + 1,
                f"chain_head says {report.head_seq} rows, the export has {last_seq}",
            )  # fmt: skip
        if last_hash != report.head_hash:
            return _bad(report, last_seq or 1, f"chain_head hash does not match row {last_seq}")
    signed = trailer.get("checkpoint")
    checkpoint = None
    if signed is not None:
        try:
            checkpoint = Checkpoint.from_json(signed)
        except ValueError as exc:
            return _bad(report, None, f"the trailer's checkpoint: {exc}")
        report.checkpoints = 1
        problem = signature_problem(checkpoint, keys) if keys else None
        report.signatures_checked = 1 if keys else 0
        if problem is None and (not filtered or checkpoint.seq in by_seq):
            held = by_seq.get(checkpoint.seq, (None, None))[0]
            problem = row_problem(checkpoint, held, report.head_seq)
        if problem is not None:
            report.first_bad_checkpoint = checkpoint.id
            return _bad(report, checkpoint.seq, problem)
        if keys:
            report.latest_checkpoint = checkpoint
    covered = report.latest_checkpoint.seq if report.latest_checkpoint else 0
    if sealer is not None:
        for seq, digest, seal in rows:
            if seal is None and seq > covered:
                return _bad(report, seq, f"row {seq}: {NO_SEAL}")
            if seal is not None and sealer(digest) != seal:
                return _bad(report, seq, f"row {seq}: {BAD_SEAL}")
    if sealer is not None and report.head_seq:
        sealed = head.get("seal")
        if sealed is None:
            return _bad(report, report.head_seq, "chain_head carries no seal")
        if sealed != head_seal(sealer, report.head_seq, report.head_hash):
            return _bad(report, report.head_seq, "chain_head seal does not match its row")
    if against is not None:
        seq, expected = against
        if seq not in by_seq:
            return _bad(report, seq, f"--against row {seq}: the export does not hold it")
        if by_seq[seq][0] != expected:
            found = by_seq[seq][0]
            return _bad(report, seq, f"row {seq} carries hash {found}, not the {expected} given")
    if filtered:
        report.warnings.append(
            "a filtered export: could not check "
            + "; ".join(scope.get("cannot_check", ["the links between its rows"]))
        )
    if not keys:
        report.warnings.append(
            "no key given (--public-key): the checkpoint's signature was not checked, so "
            "rows re-hashed and re-chained up to a changed chain_head would not show"
        )
    elif sealer is None:
        report.unauthenticated_rows = sum(1 for seq, _, _ in rows if seq > covered)
        if report.unauthenticated_rows:
            report.warnings.append(
                f"{report.unauthenticated_rows} rows after the checkpoint cannot be "
                "authenticated with the public key: a row changed there, with the rows "
                "after it and chain_head, would not show"
            )
    return report


def _bad(report: ChainReport, seq: int | None, problem: str) -> ChainReport:
    report.ok, report.first_bad_seq, report.problem = False, seq, problem
    return report
