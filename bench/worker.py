"""Sweep throughput of worker processes on PostgreSQL, their memory, and timer lag.

    .venv/bin/python -m bench.worker [--timers 100000] [--lag-seconds 60]

1. Throughput: a backlog of due timers (episodes enrolled 100 days ago and never swept,
   cloned in SQL from one opened through the engine) is swept by ``carepath worker --once``
   processes, 1 and then 2 on a fresh copy. Timers/s is the timers fired divided by the
   longest sweep; peak RSS is each process's maximum resident set.
2. Lag: one ``carepath worker --interval 1`` process while timers fall due at a steady 50
   per second (phase changes of acute episodes); lag is when each fired minus when it
   was due.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text

from bench.events import drop_database, fresh_database
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.db import make_engine, upgrade
from models.repository import EpisodeRepository
from models.tables import DueTimer

CAREPATH = Path(sys.executable).parent / "carepath"

CLONE = {
    "episode": (
        "id, patient_ref, patient, onset, enrolled_at, clinic_timezone, coordinator, "
        "pathway_id, pathway_version, status, configuration, history, facts, version, "
        "created_at, updated_at",
        "'{p}' || g, '{p}' || g, patient, onset, enrolled_at, clinic_timezone, coordinator, "
        "pathway_id, pathway_version, status, configuration, history, facts, version, "
        "created_at, updated_at",
    ),
    "task": (
        "episode_id, key, rule, window_start, due_at, escalate_at, status, owner, severity, "
        "created_at, updated_at, completed_at",
        "'{p}' || g, key, rule, window_start, due_at, escalate_at, status, owner, severity, "
        "created_at, updated_at, completed_at",
    ),
    "due_timer": (
        "episode_id, kind, ref, due_at, payload, status, set_at",
        "'{p}' || g, kind, ref, due_at, payload, status, set_at",
    ),
}


def open_template(engine: Engine, enrolled: datetime, onset_days_before: int) -> str:
    repo = EpisodeRepository(engine, PathwayDefaults())
    opening = parse_opening(
        {
            "patient": {"ref": "template", "age": 50},
            "onset": (enrolled - timedelta(days=onset_days_before)).date().isoformat(),
            "enrolled_at": enrolled.isoformat(),
        }
    )
    return str(repo.open(opening, enrolled)["id"])


def clone(engine: Engine, template: str, copies: int, prefix: str, timers: bool) -> None:
    """``copies`` episodes like the template, with its due items (and pending timers)."""
    with engine.begin() as connection:
        for table, (columns, values) in CLONE.items():
            if table == "due_timer" and not timers:
                continue
            where = "status = 'pending' AND " if table == "due_timer" else ""
            key = "id" if table == "episode" else "episode_id"
            connection.execute(
                text(
                    f"INSERT INTO {table} ({columns}) "
                    f"SELECT {values.format(p=prefix)} FROM {table}, "
                    f"generate_series(1, :copies) AS g WHERE {where}{key} = :template"
                ),
                {"copies": copies, "template": template},
            )


def pending_due(engine: Engine, now: datetime) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(DueTimer)
        return (
            connection.scalar(query.where(DueTimer.status == "pending", DueTimer.due_at <= now))
            or 0
        )


def run_workers(url: str, processes: int) -> dict[str, Any]:
    env = {**os.environ, "CAREPATH_DATABASE_URL": url}
    command = [str(CAREPATH), "worker", "--once", "--batch-size", "100"]
    started = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for _ in range(processes)
    ]
    results = []
    for process in started:
        _, status, usage = os.wait4(process.pid, 0)
        assert process.stdout is not None
        summary = json.loads(process.stdout.read())
        process.returncode = os.waitstatus_to_exitcode(status)
        assert process.returncode == 0, f"worker exited with {process.returncode}"
        results.append({**summary, "rss_mb": usage.ru_maxrss / 1024})
    fired = sum(r["fired"] for r in results)
    longest = max(r["duration_s"] for r in results)
    return {
        "processes": processes,
        "fired": fired,
        "seconds": longest,
        "per_second": fired / longest,
        "per_process": [r["fired"] for r in results],
        "peak_rss_mb": max(r["rss_mb"] for r in results),
    }


def throughput(timers: int, processes: int) -> dict[str, Any]:
    url, handle = fresh_database("postgresql", "")
    engine = make_engine(url)
    try:
        upgrade(engine)
        now = datetime.now(UTC)
        template = open_template(engine, now - timedelta(days=100), onset_days_before=1)
        per_episode = pending_due(engine, now)
        clone(engine, template, timers // per_episode, "b-", timers=True)
        backlog = pending_due(engine, now)
        result = run_workers(url, processes)
        result["backlog"] = backlog
        assert pending_due(engine, now) == 0, "the sweep left due timers behind"
        return result
    finally:
        engine.dispose()
        drop_database(handle)


def lag(seconds: int, rate: int) -> dict[str, Any]:
    url, handle = fresh_database("postgresql", "")
    engine = make_engine(url)
    worker = None
    try:
        upgrade(engine)
        now = datetime.now(UTC)
        template = open_template(engine, now - timedelta(days=3), onset_days_before=10)
        episodes = seconds * rate
        clone(engine, template, episodes, "lag-", timers=False)
        env = {**os.environ, "CAREPATH_DATABASE_URL": url}
        worker = subprocess.Popen(
            [str(CAREPATH), "worker", "--interval", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)  # let the worker start before timers fall due
        insert = text(
            "INSERT INTO due_timer (episode_id, kind, ref, due_at, payload, status, set_at) "
            "VALUES (:episode, 'phase', 'phase:subacute', :due, :payload, 'pending', :due)"
        )
        began = time.monotonic()
        for i in range(1, episodes + 1):
            # Keep to the schedule: timer i falls due at began + i / rate.
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with engine.begin() as connection:
                connection.execute(
                    insert,
                    {
                        "episode": f"lag-{i}",
                        "due": datetime.now(UTC),
                        "payload": json.dumps({"to": "subacute"}),
                    },
                )
        deadline = time.monotonic() + 30
        while pending_due(engine, datetime.now(UTC)) and time.monotonic() < deadline:
            time.sleep(0.5)
        with engine.connect() as connection:
            lags = sorted(
                (row.fired_at - row.due_at).total_seconds()
                for row in connection.execute(
                    select(DueTimer.due_at, DueTimer.fired_at).where(
                        DueTimer.ref == "phase:subacute", DueTimer.fired_at.is_not(None)
                    )
                )
            )
        return {
            "timers": len(lags),
            "rate": rate,
            "interval_s": 1,
            "p50_s": statistics.median(lags),
            "p99_s": lags[int(len(lags) * 0.99) - 1],
            "max_s": lags[-1],
        }
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        engine.dispose()
        drop_database(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--lag-seconds", type=int, default=60)
    args = parser.parse_args()
    runs = []
    for processes in (1, 2):
        print(f"sweeping {args.timers} due timers with {processes} worker(s) ...", flush=True)
        result = throughput(args.timers, processes)
        runs.append(result)
        print(
            f"  {result['fired']} fired (backlog {result['backlog']}) in {result['seconds']:.1f} s"
            f" = {result['per_second']:.0f} timers/s; per process {result['per_process']}; "
            f"peak RSS {result['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    print(f"  scaling 1 -> 2 workers: {runs[1]['per_second'] / runs[0]['per_second']:.2f}x")
    print(f"steady 50 timers/s for {args.lag_seconds} s, one worker every 1 s ...", flush=True)
    result = lag(args.lag_seconds, 50)
    print(
        f"  {result['timers']} timers: lag p50 {result['p50_s']:.2f} s, "
        f"p99 {result['p99_s']:.2f} s, max {result['max_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
