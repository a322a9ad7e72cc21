"""What an Idempotency-Key costs an event, and what a retry with one costs.

    .venv/bin/python -m bench.idempotency --episodes 200 --events 10 \
        [--backend sqlite|postgresql|both]

Three runs through the persisted path (:meth:`EpisodeRepository.apply_parsed`), each on
episodes of its own, in the same process on the same database: events without a key (the
figure ``bench.events`` reports), events each with a fresh key (taken, answered and stored
in the event's transaction, a few expired keys purged), and the same keyed events sent
again (each answered from its stored answer, nothing applied).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import suppress
from datetime import timedelta
from typing import Any

from bench.events import SCRIPT, START, drop_database, fresh_database, open_episodes, summarise
from engine.events import parse_event
from models.db import make_engine, upgrade
from models.idempotency import Answer, KeyedWrite, Replayed, request_digest
from models.repository import EpisodeRepository

ROUTE = "POST /episodes/{episode_id}/events"


def respond(result: tuple[Any, dict[str, Any]]) -> Answer:
    step, view = result
    return Answer(200 if step.accepted else 409, json.dumps(view), {"ETag": f'"{view["version"]}"'})


def run(repo: EpisodeRepository, ids: list[str], events: int, keyed: bool) -> list[float]:
    latencies = []
    for number, (day, payload) in enumerate(SCRIPT[:events]):
        now = START + timedelta(days=day, hours=1)
        for episode_id in ids:
            key = None
            if keyed:
                digest = request_digest("POST", ROUTE, {"episode_id": episode_id}, payload)
                key = KeyedWrite("bench", ROUTE, f"{episode_id}-{number}", digest, respond)
            began = time.perf_counter()
            with suppress(Replayed):  # the retried run: answered from the stored answer
                repo.apply_parsed(episode_id, parse_event(payload), now, keyed=key)
            latencies.append(time.perf_counter() - began)
    return latencies


def bench(backend: str, episodes: int, events: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as workdir:
        url, handle = fresh_database(backend, workdir)
        try:
            engine = make_engine(url)
            upgrade(engine)
            repo = EpisodeRepository(engine)
            plain, keyed = open_episodes(repo, episodes), open_episodes(repo, episodes)
            result = {
                "no key": summarise(run(repo, plain, events, keyed=False)),
                "new key": summarise(run(repo, keyed, events, keyed=True)),
                "retried": summarise(run(repo, keyed, events, keyed=True)),
            }
            engine.dispose()
            return result
        finally:
            drop_database(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--events", type=int, default=10, choices=range(1, len(SCRIPT) + 1))
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgresql", "both"])
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(f"{backend}: {args.episodes} episodes x {args.events} events ...", flush=True)
        for name, figures in bench(backend, args.episodes, args.events).items():
            print(
                f"  {name:8} {figures['per_second']:7.0f} events/s   "
                f"p50 {figures['p50_ms']:.2f} ms   p99 {figures['p99_ms']:.2f} ms"
            )


if __name__ == "__main__":
    main()
