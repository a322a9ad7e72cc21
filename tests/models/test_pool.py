"""PostgreSQL connections in the pool: one the server closed is found at checkout without a
round trip, one idle a while is pinged, and a step whose connection dies before its COMMIT
is run again on a fresh one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError

from engine.errors import EpisodeNotFound
from engine.events import parse_event, parse_opening
from engine.settings import PathwayDefaults
from models import db
from models.db import PING_IDLE_AFTER_SECONDS, make_engine
from models.repository import EpisodeRepository
from models.store import Store, run_step, transaction
from models.tables import ClinicalEventRow

NOW = datetime(2026, 1, 19, 10, tzinfo=UTC)

pytestmark = pytest.mark.postgres


class PoolClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pool_clock(monkeypatch: pytest.MonkeyPatch) -> PoolClock:
    clock = PoolClock()
    monkeypatch.setattr(db, "monotonic", clock)
    return clock


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url, pool_size=1)
    yield engine
    engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(postgres_url: str, pid: int) -> None:
    """End a backend and wait (up to 5 s) until it has gone, farewell sent."""
    other = make_engine(postgres_url)
    try:
        with other.connect() as connection:
            ended = connection.execute(
                text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}
            ).scalar_one()
            connection.commit()
        assert ended is True
    finally:
        other.dispose()


def test_an_idle_connection_the_database_dropped_is_replaced(
    pg: Engine, postgres_url: str, pool_clock: PoolClock
) -> None:
    dropped = backend_pid(pg)
    terminate(postgres_url, dropped)
    pool_clock.now += PING_IDLE_AFTER_SECONDS + 0.1
    assert backend_pid(pg) != dropped  # checked, found dead, replaced: the caller never knew


def test_a_connection_the_server_closed_a_moment_ago_is_replaced_without_a_ping(
    pg: Engine, postgres_url: str, pool_clock: PoolClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[object] = []
    monkeypatch.setattr(pg.dialect, "do_ping", lambda connection: pings.append(connection))
    dropped = backend_pid(pg)
    terminate(postgres_url, dropped)
    pool_clock.now += PING_IDLE_AFTER_SECONDS / 2  # used a moment ago: no ping is sent
    assert backend_pid(pg) != dropped  # its socket said so: replaced, the caller never knew
    assert pings == []


def test_a_live_connection_used_a_moment_ago_is_neither_pinged_nor_replaced(
    pg: Engine, pool_clock: PoolClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[object] = []
    monkeypatch.setattr(pg.dialect, "do_ping", lambda connection: pings.append(connection))
    first = backend_pid(pg)
    pool_clock.now += PING_IDLE_AFTER_SECONDS / 2
    assert backend_pid(pg) == first
    assert pings == []


def opened(engine: Engine) -> str:
    opening = parse_opening({"patient": {"ref": "P-pool"}, "onset": "2026-01-05"})
    return str(EpisodeRepository(engine, PathwayDefaults()).open(opening, NOW)["id"])


ASSESSMENT = {"type": "assessment", "data": {"vas_leg": 5, "odi": 30}}


def test_a_step_whose_connection_dies_before_commit_runs_again_on_a_fresh_one(
    pg: Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode = opened(pg)
    # Unseen at checkout (as when the server ends it between checkout and the first query).
    monkeypatch.setattr(db, "closed_by_server", lambda _connection: False)
    terminate(postgres_url, backend_pid(pg))
    step, view = EpisodeRepository(pg, PathwayDefaults()).apply_parsed(
        episode, parse_event(ASSESSMENT), NOW
    )
    assert step.accepted
    assert view["version"] == 2
    with pg.connect() as connection:
        events = connection.execute(select(func.count()).select_from(ClinicalEventRow))
        assert events.scalar_one() == 1  # applied once


def test_a_step_that_failed_after_sending_commit_is_not_run_again(
    pg: Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode = opened(pg)
    runs: list[int] = []

    def work(store: Store) -> None:
        runs.append(1)
        store.read(episode, for_update=True)
        if len(runs) == 1:  # the server goes away while the COMMIT is on its way
            terminate(postgres_url, store.cursor.connection.info.backend_pid)

    with pytest.raises(DBAPIError) as failed:
        run_step(pg, work)
    assert failed.value.connection_invalidated
    assert runs == [1]


def test_a_dead_connection_found_by_a_reader_is_retried_too(
    pg: Engine, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode = opened(pg)
    monkeypatch.setattr(db, "closed_by_server", lambda _connection: False)
    terminate(postgres_url, backend_pid(pg))
    assert EpisodeRepository(pg, PathwayDefaults()).view(episode)["version"] == 1


def test_many_steps_while_the_server_kills_pooled_connections_all_succeed(
    postgres_url: str, pool_clock: PoolClock
) -> None:
    # The pool's clock stands still: no connection ever looks idle enough to be pinged.
    engine = make_engine(postgres_url, pool_size=4)
    repo = EpisodeRepository(engine, PathwayDefaults())
    killer = make_engine(postgres_url)
    try:
        episodes = [opened(engine) for _ in range(4)]
        for round_ in range(10):
            with killer.connect() as connection:  # every connection of the pool
                connection.execute(
                    text("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                )  # fmt: skip
                connection.commit()
            for episode in episodes:
                repo.apply_parsed(episode, parse_event(ASSESSMENT), NOW + timedelta(hours=round_))
        assert {repo.view(e)["version"] for e in episodes} == {11}
    finally:
        killer.dispose()
        engine.dispose()


def test_a_reader_leaves_its_connection_transactional(pg: Engine, pool_clock: PoolClock) -> None:
    with pytest.raises(EpisodeNotFound):
        EpisodeRepository(pg).view("no-such-episode")
    with transaction(pg, read_only=True):
        pass
    connection = pg.raw_connection()
    try:
        # The reader ran without a transaction; the next writer must not.
        assert connection.driver_connection.autocommit is False  # type: ignore[union-attr]
    finally:
        connection.close()
