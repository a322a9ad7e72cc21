"""The worker in operation: the database's clock decides what is due, SIGTERM ends
``worker --once`` cleanly, every log line is JSON, and one bad episode is reported, not
fatal."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine, func, select, update
from typer.testing import CliRunner

import cli.common
import cli.main
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from models.db import make_engine
from models.repository import EpisodeRepository
from models.tables import AuditEntry, DueTimer, Episode
from schedulers.worker import Worker
from tests.schedulers.test_worker_ops import CAREPATH_COMMAND, count, open_episodes


def test_a_worker_whose_clock_runs_15_days_ahead_fires_nothing_early(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    open_episodes(engine, 3, enrolled=now - timedelta(hours=1))
    ahead = FakeClock(now + timedelta(days=15))
    # The 14-day timers look due to the skewed clock: it alone would fire them.
    assert count(engine, DueTimer.status == "pending", DueTimer.due_at <= ahead.now()) > 0
    assert count(engine, DueTimer.status == "pending", DueTimer.due_at <= now) == 0
    monkeypatch.setattr(logging.getLogger("carepath"), "propagate", True)  # to caplog
    repo = EpisodeRepository(engine, PathwayDefaults())
    if engine.dialect.name == "sqlite":
        # SQLite has no clock of its own: there the process's decides (documented).
        report = Worker(repo, ahead, database_clock=True).sweep()
        assert report.fired > 0
        return
    with caplog.at_level(logging.INFO, logger="carepath.worker"):
        worker = Worker(repo, ahead, database_clock=True)
        report = worker.sweep()
        worker.sweep()
    assert report.fired == 0
    assert count(engine, DueTimer.status != "pending") == 0
    exposed = generate_latest(worker.metrics.registry).decode()
    skew = next(
        float(line.split()[1]) for line in exposed.splitlines()
        if line.startswith("carepath_clock_skew_seconds ")
    )  # fmt: skip
    assert abs(skew - timedelta(days=15).total_seconds()) < 60
    records = {id(r): r for r in caplog.records}.values()  # each once, however many handlers
    skewed = [r for r in records if r.getMessage().startswith("clock skew")]
    assert len(skewed) == 1  # once per change, not once per sweep
    assert skewed[0].skew_seconds > 5  # type: ignore[attr-defined]

    # The command the operator runs: the same, with its own (skewed) process clock.
    monkeypatch.setattr(cli.common, "CLOCK", ahead)
    result = CliRunner().invoke(cli.main.app, ["worker", "--once"],
                                env={"CAREPATH_DATABASE_URL": db_url})  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["fired"] == 0
    assert count(engine, DueTimer.status != "pending") == 0


def test_worker_once_reports_a_bad_episode_and_exits_0(engine: Engine, db_url: str) -> None:
    open_episodes(engine, 4, enrolled=datetime.now(UTC) - timedelta(days=100))
    with engine.connect() as connection:
        bad = connection.scalar(select(Episode.id).order_by(Episode.id).limit(1))
    with engine.begin() as connection:
        connection.execute(update(Episode).where(Episode.id == bad).values(history=[]))
    result = CliRunner().invoke(cli.main.app, ["worker", "--once"],
                                env={"CAREPATH_DATABASE_URL": db_url})  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["fired"] > 0
    assert summary["failed"] == 1
    assert summary["open_incidents"] == 1
    (incident,) = summary["incidents"]
    assert (incident["change"], incident["kind"], incident["episode_id"]) == (
        "opened", "episode", bad,
    )  # fmt: skip
    assert incident["error"] == "history is not an object of state id lists"
    listed = CliRunner().invoke(cli.main.app, ["incidents"], env={"CAREPATH_DATABASE_URL": db_url})
    assert [i["id"] for i in json.loads(listed.stdout)] == [incident["incident"]]


def test_a_failed_sweep_is_counted_and_the_lag_still_read(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrolled = datetime(2026, 3, 2, 9, tzinfo=UTC)
    open_episodes(engine, 2, enrolled=enrolled)
    repo = EpisodeRepository(engine, PathwayDefaults())
    worker = Worker(repo, FakeClock(enrolled + timedelta(days=50)))

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(repo, "fire_batch", broken)
    assert worker.sweep_logged() is None
    exposed = generate_latest(worker.metrics.registry).decode()
    assert 'carepath_worker_sweeps_total{outcome="error"} 1.0' in exposed
    lag = next(float(line.split()[1]) for line in exposed.splitlines()
               if line.startswith("carepath_timer_lag_seconds "))  # fmt: skip
    assert lag > timedelta(days=30).total_seconds()


def test_reconnection_waits_double_up_to_10_seconds() -> None:
    from schedulers.worker import RECONNECT_CAP, _delays

    waits = _delays(RECONNECT_CAP)
    assert [next(waits) for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def start_worker(db_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CAREPATH_COMMAND), "worker", *args],
        env={**os.environ, "CAREPATH_DATABASE_URL": db_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def terminate_once_fired(engine: Engine, process: subprocess.Popen[str]) -> tuple[str, str]:
    deadline = time.monotonic() + 60
    try:
        while count(engine, DueTimer.status == "fired") < 20:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        return process.communicate(timeout=30)
    finally:
        process.kill()


def assert_no_batch_cut_short(engine: Engine) -> None:
    assert count(engine, DueTimer.status == "pending", DueTimer.due_at <= datetime.now(UTC)) > 0
    done = count(engine, DueTimer.status.in_(("fired", "noop")))
    with engine.connect() as connection:
        audited = connection.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.trigger == "timer")
        )
    assert audited == done


def test_sigterm_lets_worker_once_finish_its_batch_and_exit_0(db_url: str) -> None:
    engine = make_engine(db_url, begin_immediate=False)
    try:
        open_episodes(engine, 600, enrolled=datetime.now(UTC) - timedelta(days=100))
        process = start_worker(db_url, "--once", "--batch-size", "2")
        out, err = terminate_once_fired(engine, process)
        assert process.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["fired"] >= 20
        assert_no_batch_cut_short(engine)
    finally:
        engine.dispose()


def test_every_log_line_of_the_worker_is_json_apschedulers_too(db_url: str) -> None:
    engine = make_engine(db_url, begin_immediate=False)
    try:
        open_episodes(engine, 600, enrolled=datetime.now(UTC) - timedelta(days=100))
        # Sweeps due every 10 ms while one runs for seconds: APScheduler skips them, and
        # says so in its own log line.
        process = start_worker(db_url, "--interval", "0.01", "--batch-size", "2")
        _, err = terminate_once_fired(engine, process)
        assert process.returncode == 0, err
    finally:
        engine.dispose()
    lines = [json.loads(line) for line in err.splitlines()]  # each one JSON, or this fails
    assert any("maximum number of running instances" in e["msg"] for e in lines), lines[:5]
    assert any(e["logger"].startswith("apscheduler") for e in lines)
    assert lines[-1]["msg"] == "worker stopped"
