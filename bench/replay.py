"""Replay: steps re-run and compared per second, beside the rate they were first taken at.

    .venv/bin/python -m bench.replay [--episodes 200] [--events 10] [--backend both]

Episodes are opened and given the events benchmark's script (:mod:`bench.events`) through
the service's path, their timers fired on the way; the rate of that is *taken*. Then
``replay_episodes`` (what ``carepath audit replay`` runs) re-runs every recorded step on its
private database and compares each row: *replayed*. The target is replay at least as fast
as the events benchmark.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta

from bench.events import SCRIPT, START, drop_database, fresh_database, open_episodes
from engine.settings import PathwayDefaults
from models.db import make_engine, upgrade
from models.replay import replay_episodes
from models.repository import EpisodeRepository


def run(backend: str, episodes: int, events: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        url, handle = fresh_database(backend, workdir)
        engine = make_engine(url)
        try:
            upgrade(engine)
            repo = EpisodeRepository(engine, PathwayDefaults())
            began = time.perf_counter()
            ids = open_episodes(repo, episodes)
            for day, payload in SCRIPT[:events]:
                now = START + timedelta(days=day, hours=1)
                repo.fire_due(now)
                for episode_id in ids:
                    repo.apply(episode_id, payload, now)
            taken = time.perf_counter() - began
            began = time.perf_counter()
            report = replay_episodes(engine, defaults=PathwayDefaults())
            replayed = time.perf_counter() - began
        finally:
            engine.dispose()
            drop_database(handle)
    summary = report.as_json()
    assert report.ok, summary["differing"][:1]
    steps = summary["steps"]
    print(f"{backend}: {episodes} episodes, {steps} steps (openings, events, timers)")
    print(f"  taken     {steps / taken:7.0f} steps/s")
    print(f"  replayed  {steps / replayed:7.0f} steps/s, all {summary['matched']} matching")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--events", type=int, default=10, choices=range(1, 11))
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        run(backend, args.episodes, args.events)


if __name__ == "__main__":
    main()
