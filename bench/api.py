"""The HTTP API on a large PostgreSQL database: worklist and list latency, episode reads per
second with and without the access log, and a streamed audit export.

    .venv/bin/python -m bench.api [--episodes 1000000] [--audit-rows 1000000] [--rounds 1]

Episodes (with their due items) and audit rows are cloned in SQL from ones made through the
engine, spread over 1,000 coordinators; the episode read then gets a dozen visits through
the engine, so that its view carries a full timeline. ``carepath serve --workers 2`` runs as its own
processes; latencies are taken one request at a time from this one, and the read rate
from wrk (Debian's package, installed by ``make setup``) over loopback.

Episode reads are measured back to back, ``--rounds`` times: with the access log off (the
same app, its access-log middleware taken out: :func:`unlogged_app`, which exists for this
comparison only) and on (``carepath serve``, every read recorded before it is answered).
The access log's rows are counted against the requests wrk saw answered, and the head's
moves (one per transaction, from PostgreSQL's statistics) give the mean group-commit batch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from sqlalchemy import Engine, text

from api.access import AccessLogMiddleware
from api.app import SWEEP_INTERVAL_ENV, TOKEN_CACHE_ENV, app_from_env
from api.tokens import create_token
from bench.events import drop_database, fresh_database
from bench.worker import CLONE, open_template
from engine.settings import PathwayDefaults
from models.db import make_engine, upgrade
from models.repository import EpisodeRepository
from models.timeouts import DatabaseTimeouts

SEEDING = DatabaseTimeouts(db_statement_timeout_ms=3_600_000, db_client_timeout_ms=3_600_000)

CAREPATH = Path(sys.executable).parent / "carepath"
HISTORY_EVENTS = 12
VISIT = {"type": "assessment", "data": {"vas_leg": 6, "odi": 40}}
COORDINATORS = 1000
TEAMS = 20  # of 50 coordinators each
SERVE_WORKERS = 2  # one per core of the machines the figures come from


def seed(engine: Engine, episodes: int, audit_rows: int) -> str:
    """Cloned episodes and audit rows; returns one episode id to read."""
    now = datetime.now(UTC)
    template = open_template(engine, now - timedelta(days=50), onset_days_before=1)
    with engine.begin() as connection:
        for table, (columns, values) in CLONE.items():
            if table == "due_timer":
                continue
            key = "id" if table == "episode" else "episode_id"
            connection.execute(
                text(
                    f"INSERT INTO {table} ({columns}) SELECT {values.format(p='e-')} "
                    f"FROM {table}, generate_series(1, :n) AS g WHERE {key} = :template"
                ),
                {"n": episodes, "template": template},
            )
        # Spread the episodes and their due items over the coordinators and their teams
        # (coordinator c-k in team t-(k mod TEAMS)); one in a thousand was enrolled with a
        # team but no coordinator (its team's unassigned queue), the teams spread evenly.
        connection.execute(
            text("UPDATE episode SET coordinator = CASE WHEN abs(hashtext(id)) % 1000 = 999 "
                 "THEN NULL ELSE 'c-' || (abs(hashtext(id)) % :k) END, "
                 "team = 't-' || CASE WHEN abs(hashtext(id)) % 1000 = 999 "
                 "THEN abs(hashtext(id)) / 1000 % :teams ELSE abs(hashtext(id)) % :k % :teams END"),
            {"k": COORDINATORS, "teams": TEAMS},
        )  # fmt: skip
        connection.execute(
            text(
                "UPDATE task SET owner = e.coordinator, team = e.team FROM episode e "
                "WHERE e.id = task.episode_id"
            ),
        )
        connection.execute(
            text("INSERT INTO team_member (team, coordinator, added_at) "
                 "SELECT 't-' || (g % :teams), 'c-' || g, now() "
                 "FROM generate_series(0, :k - 1) AS g"),
            {"k": COORDINATORS, "teams": TEAMS},
        )  # fmt: skip
        # A clinic's mix of severities, so that urgency order has ranks to order by (the
        # clones would otherwise all share the template's).
        connection.execute(text("UPDATE task SET severity = abs(hashtext(episode_id || key)) % 5"))
        connection.execute(
            text(
                "INSERT INTO audit_log (seq, episode_id, trigger, type, actor, occurred_at, "
                "recorded_at, accepted, configuration_before, configuration_after, rules, "
                "reason, payload_digest, pathway_id, pathway_version, prev_hash, hash) "
                "SELECT a.seq + g, 'e-' || g, a.trigger, a.type, a.actor, a.occurred_at, "
                "a.recorded_at, a.accepted, a.configuration_before, a.configuration_after, "
                "a.rules, a.reason, a.payload_digest, a.pathway_id, a.pathway_version, "
                "a.prev_hash, a.hash FROM audit_log a, generate_series(1, :n) g "
                "WHERE a.seq = 1"
            ),
            {"n": audit_rows},
        )
        connection.execute(
            text("UPDATE audit_head SET last_seq = (SELECT max(seq) FROM audit_log)")
        )
    # As autovacuum would in a clinic's database: the bulk updates above leave a dead row
    # version behind each live one, which the indexes would otherwise keep finding.
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    return "e-1"


def get(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as answer:
        return answer.status, answer.read()


def latencies(url: str, token: str, count: int) -> dict[str, float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        status, _ = get(url, token)
        times.append(time.perf_counter() - began)
        assert status == 200
    times.sort()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": times[int(len(times) * 0.95) - 1] * 1000,
    }


def unlogged_app() -> FastAPI:
    """One server process's app without its access-log middleware: the figure to compare
    with. For this benchmark only; the service itself has no such switch."""
    app = app_from_env()
    app.user_middleware = [
        m for m in app.user_middleware if cast(Any, m.cls) is not AccessLogMiddleware
    ]
    return app


def start_server(url: str, port: int, access_log: bool) -> subprocess.Popen[bytes]:
    """``carepath serve --workers N``, or the same processes serving :func:`unlogged_app`."""
    env = {**os.environ, "CAREPATH_DATABASE_URL": url}
    if access_log:
        command = [str(CAREPATH), "serve", "--port", str(port), "--interval", "3600",
                   "--workers", str(SERVE_WORKERS)]  # fmt: skip
    else:
        # The settings `carepath serve` hands its processes (its --token-cache default).
        env |= {SWEEP_INTERVAL_ENV: "3600", TOKEN_CACHE_ENV: "5"}
        command = [sys.executable, "-m", "uvicorn", "bench.api:unlogged_app", "--factory",
                   "--workers", str(SERVE_WORKERS), "--host", "127.0.0.1", "--port", str(port),
                   "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/healthz").close()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server on port {port} did not start") from None
            time.sleep(0.1)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def counts(engine: Engine) -> tuple[int, int]:
    """Access-log rows, and the batches that wrote them (one head move each), so far. A
    server's connections report their statistics as they close: read until they hold."""
    seen = None
    deadline = time.monotonic() + 5
    while True:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT last_seq FROM access_head")).scalar_one()
            batches = connection.execute(
                text("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'access_head'")
            ).scalar_one()
        now = (int(rows), int(batches))
        if now == seen or time.monotonic() > deadline:
            return now
        seen = now
        time.sleep(0.5)


def wrk(url: str, token: str, seconds: int, connections: int) -> tuple[float, int]:
    """Requests/s and requests answered, from wrk keeping ``connections`` in flight."""
    answer = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s",
         "-H", f"Authorization: Bearer {token}", url],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", answer.stdout)
    assert errors is None, answer.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", answer.stdout)
    done = re.search(r"(\d+) requests in", answer.stdout)
    assert rate is not None, answer.stdout
    assert done is not None, answer.stdout
    return float(rate.group(1)), int(done.group(1))


def episode_reads(
    engine: Engine, url: str, episode: str, token: str, access_log: bool
) -> dict[str, float]:
    """Episode reads/s with a fresh server, with the access log on or off."""
    port = free_port()
    server = start_server(url, port, access_log)
    try:
        target = f"http://127.0.0.1:{port}/episodes/{episode}"
        get(target, token)  # each process's first answer builds its caches
        rows_before, batches_before = counts(engine)
        rate, answered = wrk(target, token, 15, 16)
    finally:
        stop_server(server)
    rows, batches = counts(engine)
    return {"per_second": rate, "answered": answered, "recorded": rows - rows_before,
            "batches": batches - batches_before}  # fmt: skip


def export_run(url: str) -> dict[str, Any]:
    out = Path("/tmp/carepath-bench-audit.jsonl")
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
    return {"rows": rows, "seconds": seconds, "per_second": rows / seconds,
            "peak_rss_mb": usage.ru_maxrss / 1024}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1_000_000)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1, help="off/on pairs of episode reads")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: run make setup (it installs Debian's wrk)")
    url, handle = fresh_database("postgresql", "")
    # Seeding a million rows takes one statement longer than a request may.
    engine = make_engine(url, timeouts=SEEDING)
    server = None
    try:
        upgrade(engine)
        print(f"seeding {args.episodes} episodes and {args.audit_rows} audit rows ...", flush=True)
        began = time.perf_counter()
        episode = seed(engine, args.episodes, args.audit_rows)
        print(f"  seeded in {time.perf_counter() - began:.0f} s", flush=True)
        now = datetime.now(UTC)
        # The episode read has a history, as a real one has: its view carries a full timeline.
        repo = EpisodeRepository(engine, PathwayDefaults())
        for _ in range(HISTORY_EVENTS):
            repo.apply(episode, VISIT, now)
        _, coordinator = create_token(engine, "coordinator", "c-7", now)
        _, service = create_token(engine, "service", "bench", now)
        port = free_port()
        server = start_server(url, port, access_log=True)
        base = f"http://127.0.0.1:{port}"
        with engine.connect() as connection:
            patient = connection.execute(
                text("SELECT patient_ref FROM episode WHERE coordinator = 'c-7' LIMIT 1")
            ).scalar_one()
        for label, query in (
            ("urgency order", "window=7d"),
            ("due order", "window=7d&sort=due"),
            ("one patient, by reference", f"window=7d&patient_ref={patient}"),
            ("a team's unassigned queue", "window=7d&team=t-7&unassigned=true"),
        ):
            worklist = latencies(f"{base}/worklist?{query}", coordinator, 200)
            items = len(json.loads(get(f"{base}/worklist?{query}", coordinator)[1])["items"])
            print(f"GET /worklist, {label} (a page of {items} items): "
                  f"p50 {worklist['p50_ms']:.1f} ms, p95 {worklist['p95_ms']:.1f} ms",
                  flush=True)  # fmt: skip
        listed = latencies(f"{base}/episodes?phase=subacute&limit=50", service, 200)
        print(f"GET /episodes?phase=subacute&limit=50: p50 {listed['p50_ms']:.1f} ms, "
              f"p95 {listed['p95_ms']:.1f} ms", flush=True)  # fmt: skip
        stop_server(server)
        server = None
        for _ in range(args.rounds):
            for access_log in (False, True):
                reads = episode_reads(engine, url, episode, service, access_log)
                line = (f"GET /episodes/{{id}}, wrk with 16 connections, {SERVE_WORKERS} server "
                        f"processes, access log {'on ' if access_log else 'off'}: "
                        f"{reads['per_second']:.0f} requests/s")  # fmt: skip
                if access_log:
                    batch = reads["recorded"] / max(reads["batches"], 1)
                    line += (f"; {reads['recorded']:.0f} reads recorded for "
                             f"{reads['answered']:.0f} answered, in {reads['batches']:.0f} "
                             f"transactions ({batch:.1f} reads each)")  # fmt: skip
                print(line, flush=True)
        exported = export_run(url)
        print(
            f"audit export to JSONL: {exported['rows']} rows in {exported['seconds']:.1f} s "
            f"= {exported['per_second']:.0f} rows/s, peak RSS {exported['peak_rss_mb']:.0f} MB"
        )
    finally:
        if server is not None:
            stop_server(server)
        engine.dispose()
        drop_database(handle)


if __name__ == "__main__":
    main()
