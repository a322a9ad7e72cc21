"""Events applied per second through the full persisted path, beside a naive baseline.

    .venv/bin/python -m bench.events --episodes 1000 --events 10 [--backend sqlite|postgresql|both]
        [--repeat N] [--pathway-version V]

The full path is what the service does for each event: load the episode (and its due items)
under a lock, validate, run the engine, write the state, due items, timers, the event row and
the hash-chained audit row, commit. The naive baseline does the least a persisted statechart
can: ORM load, a fresh StateChart bound to the stored configuration, one send, one audit row,
commit. Both run in the same process on the same database, so the figure is a ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from statemachine.exceptions import TransitionNotAllowed
from statemachine.orderedset import OrderedSet

from engine.events import parse_opening
from engine.settings import DRAFTS_ENV
from models.audit import entry_hash, payload_digest
from models.db import make_engine, make_session_factory, upgrade
from models.repository import EpisodeRepository
from models.tables import AuditEntry, AuditHead, Episode
from pathways.lumbosacral_radiculopathy.chart import CHART, PathwayChart

PG_SERVER = os.environ.get(
    "CAREPATH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
START = datetime(2026, 1, 19, 9, tzinfo=UTC)
# One episode's ten events: visits, treatments and orders a clinic would record.
SCRIPT: list[tuple[int, dict[str, Any]]] = [
    (0, {"type": "assessment", "data": {"vas_leg": 7, "odi": 44, "slr_positive": True}}),
    (0, {"type": "treatment", "data": {"kind": "nsaid", "start": "2026-01-19"}}),
    (
        1,
        {
            "type": "treatment",
            "data": {"kind": "physio_formal", "start": "2026-01-20", "adherence": "good"},
        },
    ),
    (5, {"type": "order", "data": {"kind": "mri"}}),  # refused: IMG-NO-EARLY
    (16, {"type": "assessment", "data": {"vas_leg": 6, "odi": 40}}),
    (20, {"type": "shared_decision", "data": {"preference": "conservative"}}),
    (30, {"type": "assessment", "data": {"vas_leg": 6, "odi": 38}}),
    (31, {"type": "candidacy", "data": {"injection_candidate": True}}),
    (32, {"type": "biopsychosocial_assessment", "data": {"note": "done"}}),
    (33, {"type": "assessment", "data": {"vas_leg": 5, "odi": 35}}),
]


def fresh_database(backend: str, workdir: str) -> tuple[str, Any]:
    if backend == "sqlite":
        return f"sqlite:///{workdir}/bench.db", None
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    name = f"carepath_bench_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
    return url, (admin, name)


def drop_database(handle: Any) -> None:
    if handle is None:
        return
    admin, name = handle
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def open_episodes(repo: EpisodeRepository, count: int, version: str | None = None) -> list[str]:
    ids = []
    pinned = {} if version is None else {"pathway_version": version}
    for i in range(count):
        opening = parse_opening(
            {
                "patient": {"ref": f"bench-{i}", "age": 50},
                "onset": "2026-01-05",
                "enrolled_at": START.isoformat(),
                **pinned,
            }
        )
        ids.append(repo.open(opening, START)["id"])
    return ids


def run_full(repo: EpisodeRepository, ids: list[str], events: int) -> list[float]:
    latencies = []
    for day, payload in SCRIPT[:events]:
        now = START + timedelta(days=day, hours=1)
        for episode_id in ids:
            began = time.perf_counter()
            repo.apply(episode_id, payload, now)
            latencies.append(time.perf_counter() - began)
    return latencies


def naive_audit(session: Any, row: Episode, before: list[str]) -> None:
    """The audit row the ORM way: read the head, add the hashed row, move the head."""
    head = session.scalars(select(AuditHead).with_for_update()).one()
    fields = {
        "seq": head.last_seq + 1,
        "episode_id": row.id,
        "trigger": "event",
        "type": "naive",
        "actor": "bench",
        "occurred_at": START,
        "recorded_at": START,
        "accepted": True,
        "configuration_before": before,
        "configuration_after": row.configuration,
        "rules": [],
        "reason": None,
        "payload_digest": payload_digest({}),
        "pathway_id": row.pathway_id,
        "pathway_version": row.pathway_version,
    }
    digest = entry_hash(fields, head.last_hash)
    session.add(AuditEntry(**fields, prev_hash=head.last_hash, hash=digest))
    head.last_seq, head.last_hash = fields["seq"], digest


def run_naive(session_factory: Any, ids: list[str], events: int) -> list[float]:
    latencies = []
    for _ in range(events):
        for episode_id in ids:
            began = time.perf_counter()
            with session_factory() as session, session.begin():
                row = session.scalars(select(Episode).where(Episode.id == episode_id)).one()
                holder = SimpleNamespace(state=OrderedSet(row.configuration))
                chart = PathwayChart(model=holder)  # a fresh chart per event
                before = list(row.configuration)
                with contextlib.suppress(TransitionNotAllowed):
                    chart.send("start_review")
                row.configuration = CHART.snapshot(chart)[0]
                naive_audit(session, row, before)
            latencies.append(time.perf_counter() - began)
    return latencies


def summarise(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "events": len(ordered),
        "per_second": len(ordered) / sum(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


PROBE_COMMITS = 300


def commit_flush_wait(engine: Any) -> float:
    """How long a PostgreSQL commit waits for its WAL to reach the disk, in ms (median).

    A one-row update committed with ``synchronous_commit`` on, less the same with it off.
    Every step pays this once; it depends on the machine's disk, not on carepath, so each
    run prints it (before and after) beside its figures.
    """
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS bench_probe (n integer)"))
        connection.execute(text("INSERT INTO bench_probe VALUES (0)"))

    def commit(connection: Any, synchronous: str) -> float:
        began = time.perf_counter()
        with connection.begin():
            connection.execute(text(f"SET LOCAL synchronous_commit = {synchronous}"))
            connection.execute(text("UPDATE bench_probe SET n = n + 1"))
        return time.perf_counter() - began

    # Alternated, so that both medians see the machine as it is.
    waits: dict[str, list[float]] = {"on": [], "off": []}
    with engine.connect() as connection:
        for _ in range(PROBE_COMMITS):
            for synchronous, times in waits.items():
                times.append(commit(connection, synchronous))
    return (statistics.median(waits["on"]) - statistics.median(waits["off"])) * 1000


def bench(
    backend: str, episodes: int, events: int, version: str | None = None
) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as workdir:
        url, handle = fresh_database(backend, workdir)
        try:
            engine = make_engine(url)
            upgrade(engine)
            factory = make_session_factory(engine)
            repo = EpisodeRepository(factory)
            full_ids = open_episodes(repo, episodes, version)
            naive_ids = open_episodes(repo, episodes, version)
            postgres = backend == "postgresql"
            flush_before = commit_flush_wait(engine) if postgres else None
            result = {
                "full": summarise(run_full(repo, full_ids, events)),
                "naive": summarise(run_naive(factory, naive_ids, events)),
            }
            if flush_before is not None:
                result["disk"] = {"before_ms": flush_before, "after_ms": commit_flush_wait(engine)}
            engine.dispose()
            return result
        finally:
            drop_database(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10, choices=range(1, len(SCRIPT) + 1))
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgresql", "both"])
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per backend, each on a fresh database; the median run is reported last",
    )
    parser.add_argument(
        "--pathway-version",
        help="the pathway version the episodes open on (default: the newest published; a "
        "draft is allowed here, as on a review installation)",
    )
    args = parser.parse_args()
    if args.pathway_version is not None:
        os.environ[DRAFTS_ENV] = "1"
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        runs = []
        for run in range(1, args.repeat + 1):
            label = f" (run {run} of {args.repeat})" if args.repeat > 1 else ""
            size = f"{args.episodes} episodes x {args.events} events"
            print(f"{backend}: {size}{label} ...", flush=True)
            result = bench(backend, args.episodes, args.events, args.pathway_version)
            report(result)
            runs.append(result)
        if args.repeat > 1:
            full = statistics.median(r["full"]["per_second"] for r in runs)
            naive = statistics.median(r["naive"]["per_second"] for r in runs)
            print(f"{backend}: median of {args.repeat} runs")
            print(
                f"  full  {full:8.0f} events/s   naive {naive:6.0f} events/s   "
                f"full / naive {statistics.median(ratio(r) for r in runs):.2f}x",
                flush=True,
            )


def ratio(result: dict[str, dict[str, float]]) -> float:
    return result["full"]["per_second"] / result["naive"]["per_second"]


def report(result: dict[str, dict[str, float]]) -> None:
    for path in ("full", "naive"):
        figures = result[path]
        print(
            f"  {path:5}  {figures['per_second']:8.0f} events/s   "
            f"p50 {figures['p50_ms']:.2f} ms   p99 {figures['p99_ms']:.2f} ms"
        )
    print(f"  full / naive throughput: {ratio(result):.2f}x", flush=True)
    if "disk" in result:
        disk = result["disk"]
        print(
            f"  each commit waited for the disk: {disk['before_ms']:.2f} ms before the run, "
            f"{disk['after_ms']:.2f} ms after",
            flush=True,
        )


if __name__ == "__main__":
    main()
