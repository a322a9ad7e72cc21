"""Verifying the audit log: a full verify's rows/s, and an incremental verify after new rows.

    .venv/bin/python -m bench.audit --rows 1000000 --backend both [--new 10000]

The log is generated fast, not through the engine: rows of a few kinds (openings,
assessments, refused orders, timers) over many episodes, each row's hash computed with the
verifier's own row text (:class:`models.chain_walk.RowText`, equal to ``canonical_json``'s)
and sealed with a fresh audit key, bulk-inserted (``executemany`` on SQLite, ``COPY`` on
PostgreSQL). Then, on that database:

- ``audit verify --full`` before any checkpoint (every row re-hashed, every seal checked)
  and with the head signed (every row re-hashed; no row after the checkpoint to check the
  seal of): rows/s, and rows per CPU second of this process and its helpers;
- ``--new`` rows appended after the checkpoint, and the default verify timed: it
  re-hashes only the rows after the checkpoint, so its time follows ``--new``, not
  ``--rows``;
- ``carepath audit export`` to a JSONL file, as ``bench.api`` runs it (rows/s).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, update

from bench.events import drop_database, fresh_database
from models.audit import AUDIT_CHAIN, AUDIT_HEAD, GENESIS_HASH, head_seal
from models.audit_keys import AUDIT_KEY_FILE_ENV, AuditKey, generate_key
from models.audit_verify import verify_log
from models.chain_walk import RowText
from models.checkpoints import sign, store
from models.db import make_engine, upgrade

CAREPATH = Path(sys.executable).parent / "carepath"
START = datetime(2026, 1, 5, 9, tzinfo=UTC)
ROUTINE = [
    "care", "care.phase", "care.phase.acute", "care.track", "care.track.routine",
    "care.track.routine.management", "care.track.routine.management.conservative",
    "care.track.routine.referral", "care.track.routine.referral.not_indicated",
]  # fmt: skip
REVIEW = [s.replace("conservative", "review") for s in ROUTINE]
# (trigger, type, rules, reason, accepted, before, after): the kinds of step a log holds.
KINDS: list[tuple[str, str, list[str], str | None, bool, list[str], list[str]]] = [
    ("open", "open", ["PH-ACUTE", "FU-FIRST", "FU-6W"], None, True, [], ROUTINE),
    ("event", "assessment", ["FU-CONTENT", "FU-RESPONSE"], None, True, ROUTINE, ROUTINE),
    ("event", "order", ["IMG-NO-EARLY"], "MRI not indicated: day 14 of the 42-day "
     "conservative window, no red flag; eligible from 2026-02-16", False, ROUTINE, ROUTINE),
    ("timer", "task_due:first_follow_up", [], None, True, ROUTINE, ROUTINE),
    ("timer", "phase:subacute", ["PH-SUBACUTE"], None, True, ROUTINE, REVIEW),
]  # fmt: skip


def json_text(values: list[str]) -> str:
    # The JSON columns' text as carepath's encoder writes it (json.dumps's defaults).
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def generated(
    first_seq: int, count: int, prev_hash: str, key: AuditKey
) -> Iterator[tuple[Any, ...]]:
    """Rows ``first_seq``.., chained from ``prev_hash``, in :class:`RowText` column order
    (times as SQLite's text), hashed and sealed."""
    text = RowText(AUDIT_CHAIN)
    columns = text.columns
    seal = key.sealer(AUDIT_CHAIN.name)
    kinds = [
        (trigger, type_, json_text(rules), reason, accepted, json_text(b), json_text(a))
        for trigger, type_, rules, reason, accepted, b, a in KINDS
    ]
    digest = sha256(b"bench").hexdigest()
    for seq in range(first_seq, first_seq + count):
        trigger, type_, rules, reason, accepted, before, after = kinds[seq % len(kinds)]
        at = (START + timedelta(seconds=seq * 7)).isoformat(" ", "microseconds")[:26]
        values = {
            "seq": seq, "episode_id": f"00000000-0000-4000-8000-{seq // 7:012d}",
            "trigger": trigger, "type": type_, "actor": "scheduler" if trigger == "timer" else
            f"dr.{seq % 97}", "occurred_at": at, "recorded_at": at, "accepted": accepted,
            "configuration_before": before, "configuration_after": after, "rules": rules,
            "reason": reason, "payload_digest": digest, "pathway_id": "lumbosacral-radiculopathy",
            "pathway_version": "1.0.0", "prev_hash": prev_hash, "hash": None, "seal": None,
        }  # fmt: skip
        row = [values[name] for name in columns]
        row[-2] = sha256(text.build(row).encode()).hexdigest()
        row[-1] = seal(row[-2])
        prev_hash = row[-2]
        yield tuple(row)


def insert(
    engine: Engine, rows: Iterator[tuple[Any, ...]], columns: tuple[str, ...], key: AuditKey
) -> str:
    """Bulk-insert the generated rows; returns the last one's hash and moves (and seals)
    the head."""
    last: tuple[Any, ...] | None = None

    def tracked() -> Iterator[tuple[Any, ...]]:
        nonlocal last
        for row in rows:
            last = row
            yield row

    names = ", ".join(columns)
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if engine.dialect.name == "postgresql":
            at = {columns.index("occurred_at"), columns.index("recorded_at")}
            # One COPY of the whole log: longer than a request's statement timeout, as the
            # schema's migrations are.
            cursor.execute("SET LOCAL statement_timeout = 0")
            with cursor.copy(f"COPY audit_log ({names}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in tracked():
                    copy.write_row([v + "+00" if i in at else v for i, v in enumerate(row)])
        else:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(f"INSERT INTO audit_log ({names}) VALUES ({marks})", tracked())
        connection.commit()
    finally:
        connection.close()
    assert last is not None
    seq, digest = last[columns.index("seq")], last[columns.index("hash")]
    with engine.begin() as db:
        sealed = head_seal(key.sealer(AUDIT_CHAIN.name), seq, digest)
        db.execute(update(AUDIT_HEAD).values(last_seq=seq, last_hash=digest, seal=sealed))
        if engine.dialect.name == "postgresql":
            db.exec_driver_sql("ANALYZE audit_log")
    return str(digest)


def cpu_seconds() -> float:
    """CPU time used so far by this process and its helper processes that have ended."""
    own, helpers = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + helpers.ru_utime + helpers.ru_stime


def timed_verify(engine: Engine, key: AuditKey, full: bool) -> tuple[float, float, Any]:
    """A verify's seconds, the CPU seconds it used here and in its helpers (a figure that a
    busy machine changes less than the time), and its report."""
    cpu, began = cpu_seconds(), time.perf_counter()
    report = verify_log(engine, key=key, full=full)
    seconds, cpu = time.perf_counter() - began, cpu_seconds() - cpu
    assert report.ok, report.problem
    return seconds, cpu, report


def export_run(url: str, workdir: str) -> tuple[int, float, float]:
    """Rows exported, seconds, and the CPU seconds the command used (a figure that a busy
    machine changes less than the time)."""
    out = Path(workdir) / "audit.jsonl"
    env = {**os.environ, "CAREPATH_DATABASE_URL": url}
    began = time.perf_counter()
    process = subprocess.Popen(
        [str(CAREPATH), "audit", "export", "--out", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    assert os.waitstatus_to_exitcode(status) == 0
    with out.open() as lines:
        rows = sum(1 for _ in lines) - 1
    out.unlink()
    return rows, seconds, usage.ru_utime + usage.ru_stime


def bench(backend: str, rows: int, new: int, export: bool) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        url, handle = fresh_database(backend, workdir)
        engine = make_engine(url)
        try:
            upgrade(engine)
            key = generate_key(Path(workdir) / "audit.pem")
            os.environ[AUDIT_KEY_FILE_ENV] = str(Path(workdir) / "audit.pem")
            columns = RowText(AUDIT_CHAIN).columns
            began = time.perf_counter()
            last = insert(engine, generated(1, rows, GENESIS_HASH, key), columns, key)
            print(f"{backend}: {rows} rows generated and inserted in "
                  f"{time.perf_counter() - began:.1f} s", flush=True)  # fmt: skip

            for state in ("no checkpoint: every seal checked", "the head signed"):
                if state == "the head signed":  # the usual state: signed every 5 minutes
                    with engine.begin() as connection:
                        store(connection, sign(key, AUDIT_CHAIN, rows, last, datetime.now(UTC)))
                seconds, cpu, report = timed_verify(engine, key, full=True)
                checked = report.rows_checked
                print(f"  full verify ({state}): {checked} rows in {seconds:.2f} s = "
                      f"{checked / seconds:,.0f} rows/s; {cpu:.2f} CPU s = "
                      f"{checked / cpu:,.0f} rows per CPU second", flush=True)  # fmt: skip
            seconds, cpu, report = timed_verify(engine, key, full=False)
            print(f"  incremental verify, no new row: {seconds * 1000:.0f} ms", flush=True)
            insert(engine, generated(rows + 1, new, last, key), columns, key)
            seconds, cpu, report = timed_verify(engine, key, full=False)
            print(f"  incremental verify after {new} new rows: {report.rows_checked} rows "
                  f"re-hashed in {seconds * 1000:.0f} ms ({cpu * 1000:.0f} CPU ms)",
                  flush=True)  # fmt: skip
            if export:
                exported, seconds, cpu = export_run(url, workdir)
                print(f"  audit export to JSONL: {exported} rows in {seconds:.1f} s = "
                      f"{exported / seconds:,.0f} rows/s ({exported / cpu:,.0f} rows per "
                      "CPU second of the command)", flush=True)  # fmt: skip
        finally:
            os.environ.pop(AUDIT_KEY_FILE_ENV, None)
            engine.dispose()
            drop_database(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000, help="rows after the checkpoint")
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgresql", "both"])
    parser.add_argument("--no-export", action="store_true", help="skip the export's figure")
    args = parser.parse_args()
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        bench(backend, args.rows, args.new, not args.no_export)


if __name__ == "__main__":
    main()
