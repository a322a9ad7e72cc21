"""PostgreSQL connections in the pool: checked after sitting idle, trusted when just used."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from engine.errors import EpisodeNotFound
from models import db
from models.db import PING_IDLE_AFTER_SECONDS, make_engine
from models.repository import EpisodeRepository
from models.store import transaction

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
    other = make_engine(postgres_url)
    try:
        with other.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            connection.commit()
    finally:
        other.dispose()


def test_an_idle_connection_the_database_dropped_is_replaced(
    pg: Engine, postgres_url: str, pool_clock: PoolClock
) -> None:
    dropped = backend_pid(pg)
    terminate(postgres_url, dropped)
    pool_clock.now += PING_IDLE_AFTER_SECONDS + 0.1
    assert backend_pid(pg) != dropped  # checked, found dead, replaced: the caller never knew


def test_a_connection_used_a_moment_ago_is_not_checked(
    pg: Engine, postgres_url: str, pool_clock: PoolClock
) -> None:
    dropped = backend_pid(pg)
    terminate(postgres_url, dropped)
    pool_clock.now += PING_IDLE_AFTER_SECONDS / 2
    with pytest.raises(DBAPIError) as failed:
        backend_pid(pg)
    assert failed.value.connection_invalidated
    assert backend_pid(pg) != dropped  # the pool threw the dead connection away


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
