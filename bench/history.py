"""The event path and the episode view as one episode's history grows.

    .venv/bin/python -m bench.history [--episodes 20] [--at 10 1000] [--window 25]
        [--reads 20] [--backend sqlite|postgresql|both]

Episodes go through a clinic's repeating round of events, one event after another, through
the full persisted path (the service's ``POST /episodes/{id}/events``): a visit that closes
one review and opens the next, treatments, an order the guideline refuses and one it
accepts, a result. For each point of ``--at`` (the Nth event of an episode) there are
``--episodes`` episodes brought to their (N-1)th event untimed; then the ``--window``
events from the Nth on are timed, the points taking turns event by event, so that the
machine's ups and downs fall on every point alike. The view ``GET /episodes/{id}``
answers (with its timeline) is read ``--reads`` times per episode the same way, and its
size taken. The target: the step and the view at the 1,000th event within 1.2x of the
10th, and a view of the same size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.events import drop_database, fresh_database
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.db import make_engine, upgrade
from models.repository import EpisodeRepository
from models.store import transaction

START = datetime(2026, 1, 19, 9, tzinfo=UTC)
# The clinic's clock: the first event the day after enrolment (its visit completes the
# first follow-up), then one every half hour. The 1,000th is on day 36, still inside the
# conservative window, so that the episode stands where it stood at the 10th.
FIRST = START + timedelta(days=1)
EVERY = timedelta(minutes=30)
TARGET = 1.2
# The round: every visit after the first closes the open review and books the next one.
ROUND: list[dict[str, Any]] = [
    {"type": "assessment", "data": {"vas_leg": 6, "odi": 40}},
    {"type": "treatment", "data": {"kind": "nsaid"}},
    {"type": "order", "data": {"kind": "mri"}},  # refused: IMG-NO-EARLY or IMG-6W
    {"type": "order", "data": {"kind": "emg_ncs"}},
    {"type": "result", "data": {"modality": "emg_ncs", "findings": ["chronic_reinnervation"]}},
    {"type": "treatment", "data": {"kind": "physio_home"}},
]


def percentile(ordered: list[float], share: float) -> float:
    return ordered[max(0, int(len(ordered) * share) - 1)]


def figures(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "per_second": len(ordered) / sum(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
    }


def open_episodes(repo: EpisodeRepository, count: int) -> list[str]:
    ids = []
    for i in range(count):
        opening = parse_opening(
            {
                "patient": {"ref": f"history-{i}", "age": 50},
                "onset": "2026-01-05",
                "enrolled_at": START.isoformat(),
                "coordinator": "alex",
            }
        )
        ids.append(repo.open(opening, START)["id"])
    return ids


def apply(repo: EpisodeRepository, episode_id: str, number: int) -> float:
    """Event ``number`` (1-based) of the episode; returns its latency."""
    payload = ROUND[(number - 1) % len(ROUND)]
    began = time.perf_counter()
    repo.apply(episode_id, payload, FIRST + EVERY * number)
    return time.perf_counter() - began


def read_view(repo: EpisodeRepository, episode_id: str) -> float:
    began = time.perf_counter()
    repo.view_with_timeline(episode_id)
    return time.perf_counter() - began


def stored_size(repo: EpisodeRepository, episode_id: str) -> dict[str, int]:
    """What a step reads of the episode (its due items, its facts' JSON) and the view."""
    with transaction(repo.engine, read_only=True) as store:
        loaded = store.read(episode_id)
    return {
        "task_rows": len(loaded.task_rows),
        "facts_bytes": len(json.dumps(loaded.state.facts)),
        "view_bytes": len(json.dumps(repo.view_with_timeline(episode_id)).encode()),
    }


def bench(backend: str, episodes: int, points: list[int], window: int, reads: int) -> Any:
    with tempfile.TemporaryDirectory() as workdir:
        url, handle = fresh_database(backend, workdir)
        try:
            engine = make_engine(url)
            upgrade(engine)
            repo = EpisodeRepository(engine, PathwayDefaults())
            groups = {point: open_episodes(repo, episodes) for point in points}
            for point, ids in groups.items():
                print(f"  bringing {episodes} episodes to event {point - 1} ...", flush=True)
                for number in range(1, point):
                    for episode_id in ids:
                        apply(repo, episode_id, number)
            events: dict[int, list[float]] = {point: [] for point in points}
            views: dict[int, list[float]] = {point: [] for point in points}
            for offset in range(window):
                for i in range(episodes):
                    for point, ids in groups.items():
                        events[point].append(apply(repo, ids[i], point + offset))
            for _ in range(reads):
                for i in range(episodes):
                    for point, ids in groups.items():
                        views[point].append(read_view(repo, ids[i]))
            results = {
                point: {
                    "event": figures(events[point]),
                    "view": figures(views[point]),
                    **stored_size(repo, groups[point][0]),
                }
                for point in points
            }
            engine.dispose()
            return results
        finally:
            drop_database(handle)


def report_point(point: int, window: int, result: dict[str, Any]) -> None:
    event, view = result["event"], result["view"]
    print(
        f"  events {point}-{point + window - 1}: {event['per_second']:6.0f} events/s  "
        f"p50 {event['p50_ms']:.2f} ms  p99 {event['p99_ms']:.2f} ms | view "
        f"{view['per_second']:6.0f} reads/s  p99 {view['p99_ms']:.2f} ms  "
        f"{result['view_bytes']:,} bytes | a step reads {result['task_rows']} due items, "
        f"facts {result['facts_bytes']:,} bytes",
        flush=True,
    )


def compare(results: dict[int, dict[str, Any]]) -> None:
    first, last = min(results), max(results)
    a, b = results[first], results[last]
    slower = {
        "event p99": b["event"]["p99_ms"] / a["event"]["p99_ms"],
        "event p50": b["event"]["p50_ms"] / a["event"]["p50_ms"],
        "events/s": a["event"]["per_second"] / b["event"]["per_second"],
        "view p99": b["view"]["p99_ms"] / a["view"]["p99_ms"],
        "view reads/s": a["view"]["per_second"] / b["view"]["per_second"],
        "view size": b["view_bytes"] / a["view_bytes"],
    }
    verdict = "met" if max(slower.values()) <= TARGET else "missed"
    listed = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in slower.items())
    print(f"  event {last} against event {first}: {listed} (target {TARGET}x: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--at", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--window", type=int, default=25, help="events timed at each point")
    parser.add_argument("--reads", type=int, default=20, help="view reads per episode and point")
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgresql", "both"])
    args = parser.parse_args()
    points = sorted(set(args.at))
    if points[0] < 1:
        parser.error("--at: events are numbered from 1")
    if any((b - a) % len(ROUND) for a, b in zip(points, points[1:], strict=False)):
        parser.error(f"--at: points a multiple of {len(ROUND)} apart, to time the same events")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(f"{backend}: {args.episodes} episodes per point, events at {points} ...", flush=True)
        results = bench(backend, args.episodes, points, args.window, args.reads)
        for point in points:
            report_point(point, args.window, results[point])
        compare(results)


if __name__ == "__main__":
    main()
