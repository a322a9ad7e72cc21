"""`carepath pathway list | show | diff`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from engine.rules import RULES


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'carepath.db'}"
    assert CliRunner().invoke(app, ["--db", url, "db", "upgrade"]).exit_code == 0
    return url


def run(db: str, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--db", db, "pathway", *args])


def test_list_shows_each_version_with_its_digest_and_record(db: str) -> None:
    result = run(db, "list")
    assert result.exit_code == 0, result.output
    [version] = json.loads(result.stdout)
    assert version["id"] == "lumbosacral-radiculopathy"
    assert version["version"] == "1.0.0"
    assert version["status"] == "published"
    assert version["digest"].startswith("sha256:")
    assert version["recorded"] is True


def test_show_gives_every_rule_with_its_numbers_filled_in(db: str) -> None:
    result = run(db, "show", "lumbosacral-radiculopathy", "1.0.0")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [r["id"] for r in shown["rules"]] == list(RULES)
    guided = next(r for r in shown["rules"] if r["id"] == "ESI-GUIDED")
    assert guided["strength"] == "refuse"
    acute = next(r for r in shown["rules"] if r["id"] == "PH-ACUTE")
    assert "until day 42" in acute["text"]
    assert shown["timings"]["subacute_from_days"] == 42


def test_show_and_diff_refuse_an_unknown_version_naming_the_known_ones(db: str) -> None:
    for args in (("show", "lumbosacral-radiculopathy", "0.9.0"), ("diff", "1.0.0", "0.9.0")):
        result = run(db, *args)
        assert result.exit_code == 1
        assert "no such version (known: 1.0.0" in result.stderr
    assert run(db, "show", "lumbosacral-radiculopathy", "1.0.0", "--format", "pdf").exit_code == 2


def test_diff_of_a_version_with_itself_is_empty(db: str) -> None:
    result = run(db, "diff", "1.0.0", "1.0.0")
    assert result.exit_code == 0, result.output
    changes = json.loads(result.stdout)
    assert changes["rules"] == {"added": [], "removed": [], "changed": []}
    assert all(not any(part.values()) for part in (changes[t] for t in ("timings", "defaults")))
