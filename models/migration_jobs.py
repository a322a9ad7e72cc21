"""A migration's batches taken by several processes (``carepath pathway migrate --jobs N``).

Taking an episode's record again is CPU work in Python: one process uses one core. Here
each batch of candidates goes to one of ``jobs`` worker processes, started fresh (spawned,
so that none inherits the parent's database connections), each with an engine of its own
on the same database; they plan and write disjoint batches, and meet only at the audit
chain's head, locked for the appends alone. At most two batches per worker are in flight,
so memory stays flat, and results come back in the order the batches were read, so the
output is the same as with one process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context

from sqlalchemy import Engine

from models.db import make_engine
from models.migration import Job, Planned, migrate_batch

_worker: tuple[Engine, Job] | None = None


def in_processes(
    engine: Engine, chunks: Iterable[list[str]], job: Job, jobs: int
) -> Iterator[list[Planned]]:
    url = engine.url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(
        jobs, mp_context=get_context("spawn"), initializer=_start, initargs=(url, job)
    ) as pool:
        in_flight: deque[Future[list[Planned]]] = deque()
        for chunk in chunks:
            in_flight.append(pool.submit(_batch, chunk))
            if len(in_flight) >= 2 * jobs:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()


def _start(url: str, job: Job) -> None:
    global _worker
    _worker = (make_engine(url), job)


def _batch(ids: list[str]) -> list[Planned]:
    assert _worker is not None, "a worker's batch before its start"
    engine, job = _worker
    return migrate_batch(engine, ids, job)
