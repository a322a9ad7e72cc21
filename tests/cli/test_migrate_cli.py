"""`carepath pathway migrate --to VERSION [--from] [--episode ...] [--dry-run]`: one JSON line
per episode and a summary; bad usage named; stopped by ``kill -9``, finished by running it
again, each episode migrated once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from cli.main import app
from engine.events import parse_opening
from engine.settings import DRAFTS_ENV, PathwayDefaults
from models.audit_verify import verify_log
from models.db import make_engine, read_only
from models.repository import EpisodeRepository
from models.tables import AuditEntry, Episode

CAREPATH_COMMAND = Path(sys.executable).parent / "carepath"
NOW = datetime(2026, 1, 19, 10, tzinfo=UTC)


@pytest.fixture(autouse=True)
def drafts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DRAFTS_ENV, "1")


def open_many(engine: Engine, count: int, version: str = "1.0.0") -> list[str]:
    repo = EpisodeRepository(engine, PathwayDefaults())
    ids = []
    for n in range(count):
        opening = {"patient": {"ref": f"P-{n}", "age": 40}, "onset": "2026-01-05",
                   "enrolled_at": NOW.isoformat(), "pathway_version": version}  # fmt: skip
        ids.append(str(repo.open(parse_opening(opening), NOW)["id"]))
        repo.apply(ids[-1], {"type": "assessment", "data": {"vas_leg": 6, "odi": 40}},
                   NOW + timedelta(hours=1))  # fmt: skip
    return ids


def migrate(db_url: str, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--db", db_url, "pathway", "migrate", *args])


def on_version(engine: Engine, version: str) -> int:
    query = select(func.count()).select_from(Episode).where(Episode.pathway_version == version)
    with read_only(engine) as connection:
        return int(connection.scalar(query) or 0)


def test_a_dry_run_prints_each_episode_and_a_summary(db_engine: Engine, db_url: str) -> None:
    ids = open_many(db_engine, 3)
    result = migrate(db_url, "--to", "1.1.0", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["episode"] for line in lines[:-1]] == sorted(ids)
    assert {line["outcome"] for line in lines[:-1]} == {"would migrate"}
    assert lines[-1]["summary"] == {"to": "1.1.0", "dry_run": True, "candidates": 3,
                                    "would_migrate": 3, "left": 0, "changed": 0}  # fmt: skip
    assert "3 episode(s) would migrate to 1.1.0" in result.stderr
    assert on_version(db_engine, "1.0.0") == 3


def test_named_episodes_only_and_each_reported(db_engine: Engine, db_url: str) -> None:
    first, second = open_many(db_engine, 2)
    result = migrate(db_url, "--to", "1.1.0", "--episode", second, "--from", "1.0.0")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["episode"], line["outcome"]) for line in lines[:-1]] == [(second, "migrated")]
    assert on_version(db_engine, "1.1.0") == 1
    again = migrate(db_url, "--to", "1.1.0", "--episode", second)
    assert json.loads(again.stdout.splitlines()[0])["reason"] == "the episode is already on 1.1.0"
    unknown = migrate(db_url, "--to", "1.1.0", "--episode", "no-such-episode")
    assert unknown.exit_code == 1
    assert "not found" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--to", "9.9.9"], "invalid: --to: '9.9.9' is not a version"),
        (["--to", "1.1.0", "--jobs", "0"], "--jobs"),
    ],
)
def test_bad_usage_is_named_and_changes_nothing(
    db_engine: Engine, db_url: str, args: list[str], says: str
) -> None:
    open_many(db_engine, 1)
    result = migrate(db_url, *args)
    assert result.exit_code == 2
    assert says in result.stderr
    assert on_version(db_engine, "1.0.0") == 1


def test_a_draft_is_refused_without_drafts(
    db_engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, with_draft: None
) -> None:
    open_many(db_engine, 1)
    monkeypatch.delenv(DRAFTS_ENV)
    result = migrate(db_url, "--to", "1.2.0")
    assert result.exit_code == 2
    assert "is a draft, not yet published" in result.stderr


def migration_rows(engine: Engine) -> list[str]:
    query = select(AuditEntry.episode_id).where(AuditEntry.trigger == "migration")
    with read_only(engine) as connection:
        return list(connection.scalars(query))


def test_killed_mid_migration_then_run_again_each_episode_is_migrated_once(
    db_url: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    try:
        ids = open_many(engine, 400)
        command = [str(CAREPATH_COMMAND), "--db", db_url, "pathway", "migrate", "--to", "1.1.0",
                   "--batch-size", "4"]  # fmt: skip
        env = {**os.environ, DRAFTS_ENV: "1"}
        running = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 120
        try:
            # Wait until batches have committed, then kill it without warning.
            while len(migration_rows(engine)) < 40:
                assert running.poll() is None, running.communicate()[1]
                assert time.monotonic() < deadline, "the migration made no progress"
                time.sleep(0.02)
            running.send_signal(signal.SIGKILL)
        finally:
            running.kill()
            running.communicate()
        migrated = migration_rows(engine)
        assert len(migrated) < len(ids), "it had finished before the kill: nothing was tested"
        assert len(migrated) % 4 == 0, "a batch committed in part"

        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
        summary = json.loads(finished.stdout.splitlines()[-1])["summary"]
        assert summary["migrated"] == len(ids) - len(migrated)
        rows = migration_rows(engine)
        assert sorted(rows) == sorted(ids)  # every episode once
        assert on_version(engine, "1.1.0") == len(ids)
        assert verify_log(engine).ok
    finally:
        engine.dispose()
