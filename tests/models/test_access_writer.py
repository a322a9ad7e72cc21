"""Group commit: many reads, a few transactions, every read on record once, chain intact."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text

from models.access_log import AccessEntry, AccessLogUnavailable, read_of
from models.access_reading import verify_access_log
from models.access_writer import AccessLogWriter
from models.db import make_engine

NOON = datetime(2026, 1, 19, 12, tzinfo=UTC)


def entry(n: int, actor: str = "alex") -> AccessEntry:
    return read_of(actor, "coordinator", "GET /episodes/{episode_id}", NOON, [f"ep-{n}"])


def recorded(engine: Engine) -> list[tuple[int, str, str]]:
    """(seq, actor, episode) of every row, in chain order."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT l.seq, l.actor, i.episode_id FROM access_log l "
                 "JOIN access_log_episode i ON i.seq = l.seq ORDER BY l.seq")
        ).all()  # fmt: skip
    return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture
def writer(db_engine: Engine) -> Iterator[AccessLogWriter]:
    writer = AccessLogWriter(db_engine)
    yield writer
    writer.stop()


def refuse_inserts(engine: Engine) -> None:
    """A fault only the access log's writes meet: the reads themselves still work."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "CREATE TRIGGER full_disk BEFORE INSERT ON access_log "
                "BEGIN SELECT RAISE(ABORT, 'no space left on device'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'no space left on device'; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER full_disk BEFORE INSERT ON access_log "
                "FOR EACH ROW EXECUTE FUNCTION full_disk()"
            )


def accept_inserts(engine: Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("DROP TRIGGER full_disk")
        else:
            connection.exec_driver_sql("DROP TRIGGER full_disk ON access_log")


def queued(writer: AccessLogWriter, count: int) -> list[Future[int]]:
    """Entries queued before the writer's thread runs, as requests arriving during a
    commit are queued."""
    futures: list[Future[int]] = []
    for n in range(count):
        future: Future[int] = Future()
        writer._queue.put((entry(n), future))  # noqa: SLF001
        futures.append(future)
    return futures


def test_what_queues_during_a_commit_goes_in_one_transaction(
    writer: AccessLogWriter, db_engine: Engine
) -> None:
    futures = queued(writer, 300)
    writer.start()
    assert [f.result(10) for f in futures] == list(range(1, 301))
    assert writer.batches == 1
    assert [episode for _, _, episode in recorded(db_engine)] == [f"ep-{n}" for n in range(300)]
    assert verify_access_log(db_engine).ok


def test_a_batch_holds_at_most_max_batch(db_engine: Engine) -> None:
    writer = AccessLogWriter(db_engine, max_batch=100)
    futures = queued(writer, 250)
    writer.start()
    try:
        assert [f.result(10) for f in futures] == list(range(1, 251))
        assert writer.batches == 3
    finally:
        writer.stop()


def test_concurrent_threads_and_coroutines_each_get_one_record(
    writer: AccessLogWriter, db_engine: Engine
) -> None:
    writer.start()
    with ThreadPoolExecutor(8) as pool:
        from_threads = list(pool.map(lambda n: writer.record(entry(n, "thread")), range(200)))

    async def many() -> list[int]:
        return await asyncio.gather(*(writer.arecord(entry(n, "task")) for n in range(300)))

    from_tasks = asyncio.run(many())
    rows = recorded(db_engine)
    assert sorted(from_threads + from_tasks) == list(range(1, 501))
    assert len(rows) == 500
    by_seq = {seq: (actor, episode) for seq, actor, episode in rows}
    assert [by_seq[s] for s in from_threads] == [("thread", f"ep-{n}") for n in range(200)]
    assert [by_seq[s] for s in from_tasks] == [("task", f"ep-{n}") for n in range(300)]
    # 300 coroutines waiting at once do not take 300 transactions.
    assert writer.batches < 500
    assert verify_access_log(db_engine).ok


def test_processes_share_one_chain(db_url: str) -> None:
    # Two services' writers, each with its own engine (as `serve --workers 2` has), append
    # concurrently: the head lock makes their batches take turns.
    engines = [make_engine(db_url), make_engine(db_url)]
    writers = [AccessLogWriter(e) for e in engines]
    try:
        for w in writers:
            w.start()
        start = threading.Barrier(8)

        def reader(k: int) -> list[int]:
            start.wait()
            return [writers[k % 2].record(entry(k * 100 + n, f"p{k % 2}")) for n in range(40)]

        with ThreadPoolExecutor(8) as pool:
            seqs = [s for got in pool.map(reader, range(8)) for s in got]
        assert sorted(seqs) == list(range(1, 321))
        rows = recorded(engines[0])
        assert sorted(e for _, _, e in rows) == sorted(
            f"ep-{k * 100 + n}" for k in range(8) for n in range(40)
        )
        assert verify_access_log(engines[0]).ok
    finally:
        for w in writers:
            w.stop()
        for e in engines:
            e.dispose()


def test_a_batch_that_cannot_be_written_fails_its_readers_and_the_writer_goes_on(
    writer: AccessLogWriter, db_engine: Engine
) -> None:
    writer.start()
    assert writer.record(entry(1)) == 1
    refuse_inserts(db_engine)
    with pytest.raises(AccessLogUnavailable, match="no space left on device"):
        writer.record(entry(2))

    async def refused() -> None:
        with pytest.raises(AccessLogUnavailable, match="no space left on device"):
            await writer.arecord(entry(3))

    asyncio.run(refused())
    accept_inserts(db_engine)
    assert writer.record(entry(4)) == 2
    assert [e for _, _, e in recorded(db_engine)] == ["ep-1", "ep-4"]
    assert verify_access_log(db_engine).ok


def test_a_reader_gives_up_when_its_batch_does_not_commit_in_time(db_engine: Engine) -> None:
    writer = AccessLogWriter(db_engine, wait_seconds=0.05)
    release = threading.Event()
    original = writer._write  # noqa: SLF001

    def stalled(entries: list[AccessEntry]) -> list[int]:
        release.wait(10)  # a database that does not answer
        return original(entries)

    writer._write = stalled  # type: ignore[method-assign]  # noqa: SLF001
    writer.start()
    try:
        with pytest.raises(AccessLogUnavailable, match="not written within 0.05 s"):
            writer.record(entry(1))

        async def refused() -> None:
            with pytest.raises(AccessLogUnavailable, match="not written within 0.05 s"):
                await writer.arecord(entry(2))

        asyncio.run(refused())
    finally:
        release.set()
        writer.stop()
    # Recorded late, never answered: a record may exist without its answer, not the reverse.
    assert [e for _, _, e in recorded(db_engine)] == ["ep-1", "ep-2"]


def test_without_the_thread_a_record_is_its_own_transaction(db_engine: Engine) -> None:
    writer = AccessLogWriter(db_engine)
    assert not writer.running
    assert writer.record(entry(1)) == 1
    assert asyncio.run(writer.arecord(entry(2))) == 2
    writer.start()
    writer.stop()  # what was queued is written; afterwards it works alone again
    assert writer.record(entry(3)) == 3
    assert writer.batches == 0
    assert verify_access_log(db_engine).ok
