"""Running the worker: metrics, a clear error when the database is missing, reconnection
when it drops, and a graceful stop on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from cli.main import app
from engine.clinic_time import FakeClock
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.db import make_engine
from models.repository import EpisodeRepository
from models.tables import AuditEntry, DueTimer
from schedulers.worker import Worker

CAREPATH_COMMAND = Path(sys.executable).parent / "carepath"
ENROLLED = datetime(2026, 3, 2, 9, tzinfo=UTC)


def open_episodes(engine: Engine, count: int, enrolled: datetime = ENROLLED) -> None:
    repo = EpisodeRepository(engine, PathwayDefaults())
    for i in range(count):
        opening = parse_opening(
            {
                "patient": {"ref": f"ops-{i}", "age": 40 + i % 40},
                "onset": (enrolled - timedelta(days=i % 10)).date().isoformat(),
                "enrolled_at": enrolled.isoformat(),
            }
        )
        repo.open(opening, enrolled)


def count(engine: Engine, *where: object) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(DueTimer).where(*where)) or 0


def test_a_sweep_is_counted_in_the_metrics(engine: Engine) -> None:
    open_episodes(engine, 3)
    clock = FakeClock(ENROLLED + timedelta(days=50))
    worker = Worker(EpisodeRepository(engine, PathwayDefaults()), clock)
    due = count(engine, DueTimer.status == "pending", DueTimer.due_at <= clock.now())
    assert due > 0
    report = worker.sweep_logged()
    assert report is not None
    exposed = generate_latest(worker.metrics.registry).decode()
    fired = report.fired - report.noops
    assert f"carepath_timers_fired_total {float(fired)}" in exposed
    assert f"carepath_timers_noop_total {float(report.noops)}" in exposed
    assert report.fired >= due
    assert 'carepath_worker_sweeps_total{outcome="ok"} 1.0' in exposed
    assert "carepath_timer_lag_seconds 0.0" in exposed  # nothing due is left


def test_the_lag_is_the_age_of_the_oldest_due_timer(engine: Engine) -> None:
    open_episodes(engine, 1)
    with engine.connect() as connection:
        first_due = connection.scalar(select(func.min(DueTimer.due_at)))
    worker = Worker(EpisodeRepository(engine, PathwayDefaults()), FakeClock(ENROLLED))
    assert worker.lag(first_due - timedelta(seconds=1)) == 0.0
    assert worker.lag(first_due + timedelta(seconds=90)) == 90.0


def test_an_unreachable_database_at_start_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["worker", "--once"],
        env={"CAREPATH_DATABASE_URL": "postgresql://carepath:pw@127.0.0.1:1/clinic"},
    )
    assert result.exit_code == 1
    assert "cannot reach the database at carepath@127.0.0.1:1/clinic" in result.stderr
    assert "pw" not in result.stderr


def test_sigterm_lets_the_batch_finish_then_exits(db_url: str) -> None:
    # Polled with plain BEGIN: a reader queueing for SQLite's write lock would only get it
    # between two of the worker's batches, and might not see the sweep until it is over.
    engine = make_engine(db_url, begin_immediate=False)
    try:
        open_episodes(engine, 600, enrolled=datetime.now(UTC) - timedelta(days=100))
        returncode, err = terminate_mid_sweep(engine, db_url)
        check_graceful_stop(engine, returncode, err)
    finally:
        engine.dispose()


def terminate_mid_sweep(engine: Engine, db_url: str) -> tuple[int, str]:
    process = subprocess.Popen(
        [str(CAREPATH_COMMAND), "worker", "--interval", "0.1", "--batch-size", "2"],
        env={**os.environ, "CAREPATH_DATABASE_URL": db_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        while count(engine, DueTimer.status == "fired") < 20:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    return process.returncode, err


def check_graceful_stop(engine: Engine, returncode: int, err: str) -> None:
    assert returncode == 0, err
    messages = [json.loads(line)["msg"] for line in err.splitlines() if line.startswith("{")]
    assert "stopping" in messages
    assert messages[-1] == "worker stopped"
    assert count(engine, DueTimer.status == "pending", DueTimer.due_at <= datetime.now(UTC)) > 0
    # Every timer marked fired has its audit row: no batch was cut short.
    done = count(engine, DueTimer.status.in_(("fired", "noop")))
    with engine.connect() as connection:
        audited = connection.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.trigger == "timer")
        )
    assert audited == done


class Proxy:
    """A TCP relay to the database that can be cut and restored, like a network outage."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener: socket.socket | None = None
        self.port = 0
        self.sockets: list[socket.socket] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                s.close()

    def cut(self) -> None:
        assert self.listener is not None
        # shutdown() first: close() alone leaves a blocked accept() accepting.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.sockets.clear()


@pytest.mark.postgres
def test_the_worker_waits_for_a_lost_database_and_carries_on(postgres_url: str) -> None:
    url = make_url(postgres_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    direct = make_engine(postgres_url)
    relayed = make_engine(url.set(host="127.0.0.1", port=proxy.port))
    try:
        open_episodes(direct, 2)
        waits: list[float] = []

        def wait(seconds: float) -> bool:
            waits.append(seconds)
            if len(waits) == 2:
                proxy.start()  # the network is back during the second wait
            return False

        clock = FakeClock(ENROLLED + timedelta(days=50))
        worker = Worker(EpisodeRepository(relayed, PathwayDefaults()), clock, wait=wait)
        assert worker.sweep_logged() is not None  # a connection is pooled
        open_episodes(direct, 2, enrolled=ENROLLED + timedelta(days=1))
        proxy.cut()
        assert worker.sweep_logged() is None  # failed, waited, reconnected
        assert waits == [1.0, 2.0]
        assert (
            "carepath_worker_database_up 1.0" in generate_latest(worker.metrics.registry).decode()
        )
        report = worker.sweep_logged()
        assert report is not None
        assert report.fired > 0
        assert count(direct, DueTimer.status == "pending", DueTimer.due_at <= clock.now()) == 0
    finally:
        proxy.cut()
        relayed.dispose()
        direct.dispose()
