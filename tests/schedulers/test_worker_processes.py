"""Worker processes sharing one PostgreSQL database: every timer fires once, in order,
even when several workers sweep together or one is killed in the middle of a batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.audit import verify_chain
from models.db import make_engine, make_session_factory
from models.repository import EpisodeRepository
from models.tables import AuditEntry, DueTimer

pytestmark = pytest.mark.postgres

CAREPATH_COMMAND = Path(sys.executable).parent / "carepath"
DUE_TIMERS = 5000


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def due_count(engine: Engine, now: datetime, status: str = "pending") -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(DueTimer)
        query = query.where(DueTimer.status == status, DueTimer.due_at <= now)
        return connection.scalar(query) or 0


def backlog(engine: Engine, at_least: int) -> datetime:
    """Episodes enrolled 100 days ago and never swept since: their timers are all due.

    Returns the instant by which ``at_least`` timers were due.
    """
    repo = EpisodeRepository(engine, PathwayDefaults())
    now = datetime.now(UTC)
    enrolled = now - timedelta(days=100)
    count = 0
    while due_count(engine, now) < at_least:
        for _ in range(100):
            count += 1
            opening = parse_opening(
                {
                    "patient": {"ref": f"load-{count}", "age": 30 + count % 60},
                    "onset": (enrolled - timedelta(days=count % 20)).date().isoformat(),
                    "enrolled_at": enrolled.isoformat(),
                }
            )
            repo.open(opening, enrolled)
    return now


def worker(url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CAREPATH_DATABASE_URL": url}
    return subprocess.Popen(
        [str(CAREPATH_COMMAND), "worker", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_fired_exactly_once_in_due_order(engine: Engine, start: datetime) -> None:
    assert due_count(engine, start) == 0, "a due timer was never fired"
    with engine.connect() as connection:
        done = connection.scalar(
            select(func.count()).select_from(DueTimer).where(DueTimer.status.in_(("fired", "noop")))
        )
        rows = connection.execute(
            select(AuditEntry.episode_id, AuditEntry.type, AuditEntry.occurred_at)
            .where(AuditEntry.trigger == "timer")
            .order_by(AuditEntry.seq)
        ).all()
    assert len(rows) == done, "each fired timer has one audit row"
    assert len(set(rows)) == len(rows), "no timer applied twice"
    by_episode: dict[str, list[datetime]] = defaultdict(list)
    for episode_id, _, due_at in rows:
        by_episode[episode_id].append(due_at)
    out_of_order = [e for e, dues in by_episode.items() if dues != sorted(dues)]
    assert not out_of_order, f"timers applied out of due order: {out_of_order[:3]}"
    with make_session_factory(engine)() as session:
        result = verify_chain(session)
    assert result.ok, result.problem


def test_four_workers_fire_five_thousand_timers_exactly_once(
    engine: Engine, postgres_url: str
) -> None:
    start = backlog(engine, DUE_TIMERS)
    assert due_count(engine, start) >= DUE_TIMERS
    workers = [worker(postgres_url, "--once", "--batch-size", "50") for _ in range(4)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    fired_by = [json.loads(out)["fired"] for out, _ in outputs]
    assert sum(1 for n in fired_by if n > 0) >= 2, f"the work was not shared: {fired_by}"
    assert_fired_exactly_once_in_due_order(engine, start)


def test_a_worker_killed_mid_sweep_loses_and_doubles_nothing(
    engine: Engine, postgres_url: str
) -> None:
    start = backlog(engine, 2000)
    running = worker(postgres_url, "--interval", "0.1", "--batch-size", "20")
    deadline = time.monotonic() + 120
    try:
        # Wait until the sweep is well under way, then kill it without warning.
        while due_count(engine, start, "fired") < 300:
            assert running.poll() is None, running.communicate()[1]
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.02)
        running.send_signal(signal.SIGKILL)
    finally:
        running.kill()
        running.communicate()
    left = due_count(engine, start)
    assert left > 0, "the sweep had finished before the kill: nothing was tested"

    restarted = worker(postgres_url, "--once", "--batch-size", "50")
    _, err = restarted.communicate(timeout=300)
    assert restarted.returncode == 0, err
    assert_fired_exactly_once_in_due_order(engine, start)
