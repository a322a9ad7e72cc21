"""The command line under a held SQLite write lock, and with inputs out of range: one line
on stderr and exit status 1 (2 for a bad setting), never a traceback."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.cli.test_cli import recent_onset

FAST = {"CAREPATH_SQLITE_BUSY_TIMEOUT_MS": "200"}


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'carepath.db'}"


def run(db: str, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--db", db, *args], env={**FAST, **(env or {})})


@pytest.fixture
def episode(db: str) -> str:
    assert run(db, "db", "upgrade").exit_code == 0
    opened = run(db, "episode", "open", "--patient-ref", "p-9", "--onset", recent_onset())
    assert opened.exit_code == 0, opened.output
    return str(json.loads(opened.stdout)["id"])


@pytest.fixture
def write_lock(tmp_path: Path, episode: str) -> Iterator[None]:
    """Another process in the middle of a write: it holds the write lock."""
    holder = sqlite3.connect(tmp_path / "carepath.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.close()


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_a_held_write_lock_is_one_line_naming_the_lock_and_exit_1(
    db: str, episode: str, write_lock: None
) -> None:
    listed = run(db, "incidents")  # starting and reading take no write lock
    assert listed.exit_code == 0, listed.output
    data = '{"vas_leg": 3, "odi": 20}'
    for args in (
        # A read of episode data is written to the access log before it is shown.
        ("episode", "show", episode),
        ("event", episode, "assessment", "--data", data),
        ("episode", "open", "--patient-ref", "p-10", "--onset", recent_onset()),
        ("token", "create", "--role", "service"),
        ("db", "upgrade"),
    ):
        result = run(db, *args)
        assert result.exit_code == 1, (args, result.output)
        line = one_line(result.stderr)
        assert "write lock" in line
        assert "CAREPATH_SQLITE_BUSY_TIMEOUT_MS" in line


def test_the_event_goes_through_once_the_lock_is_released(db: str, episode: str) -> None:
    result = run(db, "event", episode, "assessment", "--data", '{"vas_leg": 3, "odi": 20}')
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("--onset", "9999-12-31", "onset"),
        ("--onset", "1899-12-31", "onset"),
        ("--enrolled-at", "9999-12-31T23:59:59Z", "enrolled_at"),
        ("--enrolled-at", "0001-01-01T00:00:00+14:00", "enrolled_at"),
        ("--patient-ref", "p" * 129, "patient.ref"),
        ("--coordinator", "c" * 129, "coordinator"),
    ],
)
def test_an_opening_out_of_range_is_refused_naming_the_field(
    db: str, episode: str, option: str, value: str, field: str
) -> None:
    args = {"--patient-ref": "p-11", "--onset": recent_onset(), option: value}
    result = run(db, "episode", "open", *[part for pair in args.items() for part in pair])
    assert result.exit_code == 1, result.output
    assert one_line(result.stderr).startswith(f"invalid: {field}: ")


def test_a_far_future_onset_is_refused_against_the_clock(db: str, episode: str) -> None:
    result = run(db, "episode", "open", "--patient-ref", "p-12", "--onset", "2999-01-01")
    assert result.exit_code == 1
    assert "more than a day after now" in one_line(result.stderr)


def test_a_bad_timeout_setting_is_a_usage_error(db: str) -> None:
    result = run(db, "episode", "show", "x", env={"CAREPATH_DB_LOCK_TIMEOUT_MS": "soon"})
    assert result.exit_code == 2
    assert "CAREPATH_DB_LOCK_TIMEOUT_MS" in one_line(result.stderr)


def test_a_simulation_day_beyond_the_calendar_is_refused_naming_the_step(tmp_path: Path) -> None:
    scenario = tmp_path / "far.yaml"
    scenario.write_text(
        'patient: {ref: s}\nonset: 2026-01-05\nsteps:\n  - {at: "day 99999999", '
        "event: {type: resolve}}\n"
    )
    result = CliRunner().invoke(app, ["simulate", str(scenario)])
    assert result.exit_code == 1
    assert one_line(result.stderr).startswith("invalid: steps[0].at: ")


def test_a_token_subject_longer_than_its_column_is_refused(db: str, episode: str) -> None:
    result = run(db, "token", "create", "--role", "service", "--subject", "s" * 129)
    assert result.exit_code == 2
    assert "at most 128 characters" in one_line(result.stderr)
