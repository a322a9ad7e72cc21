"""Migration from 1.0.0 to 1.1.0: episodes per second and peak memory, dry run and apply.

    .venv/bin/python -m bench.migration [--episodes 1000000] [--templates 1000] [--events 3]
        [--jobs 2]

On PostgreSQL (``CAREPATH_TEST_POSTGRES_URL``'s server, a database of its own). The
``templates`` episodes are opened on 1.0.0 and given the first ``events`` events of the
events benchmark's script (:mod:`bench.events`) through the service's path, their timers
fired on the way; then their rows (episode, due items, timers, events, audit rows) are copied
in SQL until there are ``episodes``, each copy under an id of its own. (The copies' audit
rows are not re-chained: nothing here verifies the log, and a migration only appends to it.)

Each migration runs in a child process (``carepath pathway migrate``'s own function, with
its output discarded, in ``jobs`` processes as ``--jobs`` runs it), so that its peak
resident memory is its own (the largest of its processes): the dry run over every episode,
then the apply. Targets: at least 2,000 episodes/s, and memory that stays flat
(under 300 MB) however many episodes there are.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Engine, Table, create_engine, text

from bench.events import SCRIPT, START, drop_database, fresh_database
from engine.events import parse_opening
from engine.settings import DRAFTS_ENV, PathwayDefaults
from models.db import make_engine, upgrade
from models.repository import EpisodeRepository
from models.tables import AuditEntry, ClinicalEventRow, DueTimer, Episode, Task

MIGRATED_AT = START + timedelta(days=40)
# Copied per episode, with the key each table numbers its rows by (the database's serial;
# the audit log's, numbered on from the last row, as the chain's writer does).
COPIED: tuple[tuple[Table, str | None], ...] = (
    (cast(Table, Episode.__table__), None),
    (cast(Table, Task.__table__), "id"),
    (cast(Table, DueTimer.__table__), "id"),
    (cast(Table, ClinicalEventRow.__table__), "id"),
    (cast(Table, AuditEntry.__table__), "seq"),
)
NUMBERED_ON = "(SELECT max(seq) FROM audit_log) + row_number() OVER (ORDER BY n, seq)"


def seed(engine: Engine, templates: int, events: int) -> None:
    repo = EpisodeRepository(engine, PathwayDefaults())
    ids = [f"t{i:06d}" for i in range(templates)]
    for i, episode_id in enumerate(ids):
        opening = {"patient": {"ref": f"bench-{i}", "age": 50}, "onset": "2026-01-05",
                   "enrolled_at": START.isoformat(), "pathway_version": "1.0.0"}  # fmt: skip
        repo.open(parse_opening(opening), START, episode_id)
    for day, payload in SCRIPT[:events]:
        now = START + timedelta(days=day, hours=1)
        repo.fire_due(now)
        for episode_id in ids:
            repo.apply(episode_id, payload, now)


def copy(engine: Engine, copies: int) -> None:
    """Each template's rows ``copies`` times more, episode ids suffixed ``-N``: on a plain
    engine, without the service's statement timeouts (a copy runs for minutes)."""
    plain = create_engine(engine.url)
    with plain.begin() as connection:
        for table, serial in COPIED:
            key = "id" if table.name == "episode" else "episode_id"
            numbered = table.name == "audit_log"
            names = [c.name for c in table.columns if c.name != serial or numbered]
            chosen = ", ".join(
                f"{key} || '-' || n" if name == key else NUMBERED_ON if name == serial
                else f'"{name}"' for name in names
            )  # fmt: skip
            order = f"n, {serial}" if serial else "n, id"
            connection.execute(text(
                f'INSERT INTO {table.name} ({", ".join(chr(34) + n + chr(34) for n in names)}) '
                f"SELECT {chosen} FROM {table.name} CROSS JOIN generate_series(1, {copies}) AS n "
                f"WHERE {key} LIKE 't%' AND {key} NOT LIKE '%-%' ORDER BY {order}"
            ))  # fmt: skip
        # The chain's head after the last row copied, so that a migration appends after it.
        connection.execute(text(
            "UPDATE audit_head SET last_seq = last.seq, last_hash = last.hash "
            "FROM (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS last"
        ))  # fmt: skip
    with plain.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    plain.dispose()


def timed(url: str, dry_run: bool, jobs: int) -> tuple[float, int, dict[str, int]]:
    """One migration in a child process: seconds, peak RSS in MB, and its summary."""
    began = time.perf_counter()
    command = [sys.executable, "-m", "bench.migration", "--child", url, "--jobs", str(jobs)]
    done = subprocess.run(
        [*command, *(["--dry-run"] * dry_run)],
        check=True, capture_output=True, text=True, env={**os.environ, DRAFTS_ENV: "1"},
    )  # fmt: skip
    seconds = time.perf_counter() - began
    counts = {k: int(v) for k, v in (item.split("=") for item in done.stdout.split())}
    return seconds, counts.pop("rss_kb") // 1024, counts


def child(url: str, dry_run: bool, jobs: int) -> None:
    from models.migration import migrate

    engine = make_engine(url)
    at = datetime(2026, 2, 28, tzinfo=UTC)
    summary = migrate(engine, "1.1.0", at, dry_run=dry_run, defaults=PathwayDefaults(), jobs=jobs)
    # The largest of this process and its workers (waited for when the pool shut down).
    peak = max(resource.getrusage(who).ru_maxrss
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))  # fmt: skip
    print(f"candidates={summary.candidates} migrated={summary.migrated} left={summary.left} "
          f"rss_kb={peak}")  # fmt: skip


def run(episodes: int, templates: int, events: int, jobs: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        url, handle = fresh_database("postgresql", workdir)
        engine = make_engine(url)
        try:
            upgrade(engine)
            os.environ[DRAFTS_ENV] = "1"
            began = time.perf_counter()
            seed(engine, templates, events)
            copy(engine, episodes // templates - 1)
            print(f"{episodes} episodes on 1.0.0 ({templates} templates, {events} events each), "
                  f"made in {time.perf_counter() - began:.0f} s; {jobs} job(s)")  # fmt: skip
            engine.dispose()
            for dry_run in (True, False):
                seconds, peak, counts = timed(url, dry_run, jobs)
                assert counts["candidates"] == episodes, counts
                label = "dry run" if dry_run else "apply"
                print(f"  {label:8s} {episodes / seconds:7.0f} episodes/s "
                      f"({seconds:.0f} s), peak RSS {peak} MB, {counts}")  # fmt: skip
        finally:
            engine.dispose()
            drop_database(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1_000_000)
    parser.add_argument("--templates", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=3, choices=range(1, 11))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.dry_run, args.jobs)
        return
    run(args.episodes, args.templates, args.events, args.jobs)


if __name__ == "__main__":
    main()
