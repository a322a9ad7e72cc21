"""`carepath serve` and `carepath token`: the service starts, answers, and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from api.tokens import create_token, digest
from cli.main import app
from models.tables import ApiToken

CAREPATH_COMMAND = Path(sys.executable).parent / "carepath"


def test_a_token_is_shown_once_kept_as_a_hash_and_revocable(engine: Engine, db_url: str) -> None:
    runner = CliRunner()
    env = {"CAREPATH_DATABASE_URL": db_url}
    made = runner.invoke(app, ["token", "create", "--role", "auditor", "--subject", "ann"], env=env)
    assert made.exit_code == 0, made.stderr
    shown = json.loads(made.stdout)
    assert (shown["role"], shown["subject"]) == ("auditor", "ann")
    with engine.connect() as connection:
        stored = connection.execute(select(ApiToken)).one()
    assert stored.token_hash == digest(shown["token"])
    assert shown["token"] not in stored.token_hash
    revoked = runner.invoke(app, ["token", "revoke", str(shown["id"])], env=env)
    assert revoked.exit_code == 0
    again = runner.invoke(app, ["token", "revoke", str(shown["id"])], env=env)
    assert again.exit_code == 1
    bad = runner.invoke(app, ["token", "create", "--role", "superuser"], env=env)
    assert bad.exit_code == 2
    assert "role must be one of" in bad.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_health_and_stops_on_sigterm(
    engine: Engine, db_url: str, workers: int
) -> None:
    port = free_port()
    _, token = create_token(engine, "service", "lab", datetime.now(UTC))
    command = ["serve", "--demo", "--port", str(port), "--interval", "1", "--workers", str(workers)]
    process = subprocess.Popen(
        [str(CAREPATH_COMMAND), *command],
        env={**os.environ, "CAREPATH_DATABASE_URL": db_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as answer:
                    health = json.load(answer)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the service did not come up"
                time.sleep(0.1)
        assert health["database"] == "ok"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/episodes")
        assert refused.value.code == 401
        refused.value.close()
        # Whichever process takes a request answers it the same.
        for _ in range(4 * workers):
            listed = urllib.request.Request(
                f"http://127.0.0.1:{port}/episodes", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(listed) as answer:
                assert len(json.load(answer)["items"]) == 3
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    # Uvicorn shuts down gracefully; the service then exits 0, as a service manager expects.
    assert process.returncode == 0, err
    logged = [json.loads(line) for line in err.splitlines()]  # every line JSON, uvicorn's too
    assert [e["msg"] for e in logged].count("worker stopped") == workers  # each swept, stopped
    assert any(e["msg"].startswith("carepath on http://") for e in logged)
    assert out.count("demo episode") == 3


class Collected:
    """A channel that keeps what it is given."""

    name = "memory"

    def __init__(self) -> None:
        self.reminders: list[Any] = []
        self.arrived = threading.Event()

    def deliver(self, reminder: Any) -> None:
        self.reminders.append(reminder)
        self.arrived.set()


def test_the_service_sweeps_in_process_and_sends_reminders(engine: Engine) -> None:
    from api.app import create_app
    from engine.clinic_time import FakeClock
    from engine.events import parse_opening
    from engine.settings import PathwayDefaults
    from models.repository import EpisodeRepository

    enrolled = datetime(2026, 3, 2, 9, tzinfo=UTC)
    opening = parse_opening(
        {"patient": {"ref": "P-5"}, "onset": "2026-02-28", "enrolled_at": enrolled.isoformat()}
    )
    EpisodeRepository(engine, PathwayDefaults()).open(opening, enrolled)
    channel = Collected()
    clock = FakeClock(enrolled + timedelta(days=20))  # the first follow-up is due
    app = create_app(engine, clock, PathwayDefaults(), worker_interval=60, channels=[channel])
    with TestClient(app):  # starting the app starts its worker: it sweeps at once
        assert channel.arrived.wait(20), "no reminder was sent"
    assert [(r.patient_ref, r.task_key, r.status) for r in channel.reminders] == [
        ("P-5", "first_follow_up", "due")
    ]
