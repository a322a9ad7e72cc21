"""`carepath team add|remove|list` and `carepath cover`: the care teams' directory and who
covers whom, with bad input named and nothing changed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from cli import common
from cli.main import app
from engine.clinic_time import FakeClock
from models.db import make_engine
from models.teams import scope_of

NOW = datetime(2026, 12, 2, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock(NOW)
    monkeypatch.setattr(common, "CLOCK", clock)
    return clock


def run(db_url: str, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--db", db_url, *args])


def test_members_are_added_listed_and_removed(db_url: str) -> None:
    assert run(db_url, "team", "add", "spine-north", "--member", "alex").exit_code == 0
    added = run(db_url, "team", "add", "spine-north", "--member", "alex", "--email", "a@c.example")
    assert added.exit_code == 0
    assert "already in" in added.output
    assert run(db_url, "team", "add", "spine-south", "--member", "robin").exit_code == 0
    listed = json.loads(run(db_url, "team", "list", "spine-north").stdout)
    assert [(m["coordinator"], m["email"]) for m in listed] == [("alex", "a@c.example")]
    bad = run(db_url, "team", "add", "spine-north", "--member", "sam", "--email", "sam at home")
    assert bad.exit_code == 1
    assert bad.output.startswith("invalid: email:")
    assert len(json.loads(run(db_url, "team", "list").stdout)) == 2  # sam was not added
    assert run(db_url, "team", "remove", "spine-north", "--member", "alex").exit_code == 0
    gone = run(db_url, "team", "remove", "spine-north", "--member", "alex")
    assert gone.exit_code == 1
    assert "not in spine-north" in gone.output


def test_a_cover_lasts_to_the_end_of_its_day_in_the_clinics_zone(
    db_url: str, clock: FakeClock
) -> None:
    engine = make_engine(db_url)
    try:
        covered = run(db_url, "cover", "--coordinator", "alex", "--by", "sam",
                      "--until", "2026-12-24", "--time-zone", "America/Chicago")  # fmt: skip
        assert covered.exit_code == 0, covered.output
        [held] = json.loads(run(db_url, "cover").stdout)
        assert (held["coordinator"], held["by"]) == ("alex", "sam")
        assert held["ends_at"].startswith("2026-12-25 06:00:00")  # midnight in Chicago
        assert scope_of(engine, "sam", NOW).covering == {"alex"}
        assert scope_of(engine, "sam", datetime(2026, 12, 25, 6, tzinfo=UTC)).covering == set()
        ended = run(db_url, "cover", "--coordinator", "alex", "--end")
        assert ended.exit_code == 0
        assert "1 cover of alex ended" in ended.output
        assert scope_of(engine, "sam", NOW).covering == set()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["--coordinator", "alex", "--by", "alex", "--until", "2026-12-24"], 1, "invalid: by:"),
        (["--coordinator", "alex", "--by", "sam", "--until", "2026-12-01"], 1, "invalid: until:"),
        (["--coordinator", "alex", "--by", "sam", "--until", "24/12"], 1, "invalid: --until:"),
        (["--coordinator", "alex", "--by", "sam"], 2, "--by and --until"),
        (["--coordinator", "alex", "--by", "sam", "--until", "2026-12-24", "--time-zone",
          "Mars/Olympus"], 1, "invalid: --time-zone:"),  # fmt: skip
        (["--by", "sam"], 2, "--coordinator"),
    ],
)
def test_a_bad_cover_is_named_and_nothing_is_kept(
    db_url: str, args: list[str], code: int, said: str
) -> None:
    answer = run(db_url, "cover", *args)
    assert (answer.exit_code, said in answer.output) == (code, True), answer.output
    assert json.loads(run(db_url, "cover").stdout) == []
