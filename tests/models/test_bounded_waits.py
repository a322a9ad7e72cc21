"""Bounded waits: a held lock or a stalled database ends a step with DatabaseTimeout, and a
step that timed out before its COMMIT went out is never applied later."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text

from engine import decision
from engine.events import parse_event, parse_opening
from engine.settings import PathwayDefaults
from models import store, timeouts
from models.db import check_connection, make_engine, read_only, upgrade
from models.repository import EpisodeRepository
from models.statements import Cursor
from models.tables import AuditEntry, ClinicalEventRow
from models.timeouts import DatabaseTimeout, DatabaseTimeouts
from tests.models.private_cluster import PrivateCluster, private_cluster

NOW = datetime(2026, 1, 19, 10, tzinfo=UTC)
ASSESSMENT = {"type": "assessment", "data": {"vas_leg": 5, "odi": 30}}
FAST = DatabaseTimeouts(
    db_lock_timeout_ms=200, db_client_timeout_ms=1000, sqlite_busy_timeout_ms=200
)


def opened(engine: Engine) -> str:
    opening = parse_opening({"patient": {"ref": "P-wait"}, "onset": "2026-01-05"})
    return str(EpisodeRepository(engine, PathwayDefaults()).open(opening, NOW)["id"])


def applied(engine: Engine) -> tuple[int, int]:
    """Events recorded, and audit rows (the opening's included)."""
    with read_only(engine) as connection:
        events = connection.scalar(select(func.count()).select_from(ClinicalEventRow))
        audit = connection.scalar(select(func.count()).select_from(AuditEntry))
    return int(events or 0), int(audit or 0)


def test_every_limit_has_a_default_and_a_variable() -> None:
    assert DatabaseTimeouts.from_env({}) == DatabaseTimeouts(5000, 10_000, 12_000, 5, 5000)
    chosen = DatabaseTimeouts.from_env(
        {"CAREPATH_DB_LOCK_TIMEOUT_MS": "250", "CAREPATH_SQLITE_BUSY_TIMEOUT_MS": " 900 "}
    )
    assert (chosen.db_lock_timeout_ms, chosen.sqlite_busy_timeout_ms) == (250, 900)
    for bad in ("0", "-5", "soon", "1.5"):
        with pytest.raises(ValueError, match="CAREPATH_DB_CLIENT_TIMEOUT_MS"):
            DatabaseTimeouts.from_env({"CAREPATH_DB_CLIENT_TIMEOUT_MS": bad})
    with pytest.raises(ValueError, match="at least 2"):
        DatabaseTimeouts.from_env({"CAREPATH_DB_CONNECT_TIMEOUT_S": "1"})


@pytest.mark.postgres
def test_postgres_connections_carry_the_server_side_limits(postgres_url: str) -> None:
    engine = make_engine(postgres_url, timeouts=DatabaseTimeouts(db_lock_timeout_ms=1234))
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("SHOW lock_timeout")) == "1234ms"
            assert connection.scalar(text("SHOW statement_timeout")) == "10s"
    finally:
        engine.dispose()


@pytest.fixture
def held_lock(db_url: str) -> Iterator[tuple[Engine, str, Any]]:
    """An engine with short limits, an episode, and a way to hold that episode's lock from
    another connection (its row on PostgreSQL, the write lock on SQLite)."""
    engine = make_engine(db_url, timeouts=FAST)
    episode = opened(engine)
    holding = make_engine(db_url)
    holder = holding.raw_connection()

    def hold() -> None:
        cursor = holder.cursor()
        if engine.dialect.name == "sqlite":
            holder.driver_connection.isolation_level = None  # type: ignore[union-attr]
            cursor.execute("BEGIN IMMEDIATE")
        else:
            cursor.execute("SELECT id FROM episode WHERE id = %s FOR UPDATE", (episode,))

    try:
        yield engine, episode, hold
    finally:
        holder.rollback()
        holder.close()
        holding.dispose()
        engine.dispose()


def test_a_lock_held_elsewhere_times_out_and_nothing_is_applied(
    held_lock: tuple[Engine, str, Any],
) -> None:
    engine, episode, hold = held_lock
    before = applied(engine)
    hold()
    repo = EpisodeRepository(engine, PathwayDefaults())
    with pytest.raises(DatabaseTimeout) as timed_out:
        repo.apply_parsed(episode, parse_event(ASSESSMENT), NOW)
    assert not timed_out.value.maybe_applied
    expected = "write lock" if engine.dialect.name == "sqlite" else "CAREPATH_DB_LOCK_TIMEOUT_MS"
    assert expected in str(timed_out.value)
    assert applied(engine) == before


def test_the_start_up_check_takes_no_write_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'carepath.db'}"
    engine = make_engine(url, timeouts=FAST)
    upgrade(engine)
    episode = opened(engine)
    holder = sqlite3.connect(tmp_path / "carepath.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        check_connection(engine)  # a reader waits for no writer
        assert EpisodeRepository(engine).view(episode)["version"] == 1
        with pytest.raises(DatabaseTimeout, match="write lock"):
            opened(engine)  # a writer is what waits, bounded
    finally:
        holder.close()
        engine.dispose()


# --------------------------------------------------------------------------------------------
# A stalled database: every process of a private cluster stopped


def settled(cluster: PrivateCluster) -> None:
    """Wait until the server has dealt with every connection the client gave up on."""
    probe = make_engine(cluster.url)
    deadline = time.monotonic() + 30
    try:
        while True:
            with probe.connect() as connection:
                others = connection.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                         "'client backend' AND pid <> pg_backend_pid()")
                )  # fmt: skip
            if others == 0:
                return
            assert time.monotonic() < deadline, "the abandoned connections never ended"
            time.sleep(0.05)
    finally:
        probe.dispose()


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as cluster:
        upgrade(cluster.url)
        yield cluster


@pytest.mark.postgres
def test_a_stalled_database_times_out_and_the_step_is_not_applied_when_it_resumes(
    cluster: PrivateCluster,
) -> None:
    engine = make_engine(cluster.url, timeouts=FAST)
    try:
        episode = opened(engine)
        before = applied(engine)
        cluster.stall()
        began = time.monotonic()
        try:
            with pytest.raises(DatabaseTimeout) as timed_out:
                EpisodeRepository(engine).apply_parsed(episode, parse_event(ASSESSMENT), NOW)
            waited = time.monotonic() - began
        finally:
            cluster.resume()
        assert not timed_out.value.maybe_applied
        assert "CAREPATH_DB_CLIENT_TIMEOUT_MS" in str(timed_out.value)
        assert waited < 10  # bounded by the 1 s client limit, not by the stall
        engine.dispose()
        settled(cluster)
        assert applied(engine) == before
        assert EpisodeRepository(engine).view(episode)["version"] == 1
    finally:
        engine.dispose()


class Recording(Cursor):
    """The step's cursor, noting every statement its writer sends."""

    sent: list[str] = []

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        writer = self.writer

        class Writer:
            def __getattr__(self, name: str) -> Any:
                return getattr(writer, name)

            def execute(self, sql: str, *args: Any) -> Any:
                Recording.sent.append(sql)
                return writer.execute(sql, *args)

        self.writer = Writer()


@pytest.mark.postgres
def test_commit_is_never_sent_once_the_steps_deadline_has_passed(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(postgres_url, timeouts=FAST)
    try:
        episode = opened(engine)
        before = applied(engine)
        clock = [1000.0]
        real_view = decision.episode_view

        def slow_view(*args: Any, **kwargs: Any) -> Any:
            # The step's last act before COMMIT, every write already sent, takes longer
            # than what was left of its deadline.
            clock[0] += FAST.client_seconds + 1
            return real_view(*args, **kwargs)

        monkeypatch.setattr(timeouts, "monotonic", lambda: clock[0])
        monkeypatch.setattr(decision, "episode_view", slow_view)
        monkeypatch.setattr(store, "Cursor", Recording)
        Recording.sent = []
        with pytest.raises(DatabaseTimeout) as timed_out:
            EpisodeRepository(engine).apply_parsed(episode, parse_event(ASSESSMENT), NOW)
        assert not timed_out.value.maybe_applied
        assert "BEGIN" in Recording.sent
        assert "COMMIT" not in Recording.sent
        monkeypatch.undo()
        assert applied(engine) == before
    finally:
        engine.dispose()
