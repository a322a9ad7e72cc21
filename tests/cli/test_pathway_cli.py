"""`carepath pathway list | show [--format json|fhir|book] [--out] | diff`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from typer.testing import CliRunner

import pathways
from cli.main import app
from pathways.book import book_of
from pathways.lumbosacral_radiculopathy.rules import RULES


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
    versions = json.loads(result.stdout)
    assert [v["version"] for v in versions][:1] == ["1.0.0"]
    version = versions[0]
    assert version["id"] == "lumbosacral-radiculopathy"
    assert version["version"] == "1.0.0"
    assert version["status"] == "published"
    assert version["digest"].startswith("sha256:")
    assert version["recorded"] is True
    drafts = [v for v in versions if v["status"] == "draft"]
    assert all(not v["recorded"] for v in drafts)  # a draft is not published anywhere


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
    wrong = run(db, "show", "lumbosacral-radiculopathy", "1.0.0", "--format", "pdf")
    assert wrong.exit_code == 2
    assert "--format" in wrong.stderr
    assert "json, fhir or book" in wrong.stderr


def test_show_as_fhir_prints_the_plan_definition_bundle(db: str) -> None:
    result = run(db, "show", "lumbosacral-radiculopathy", "1.0.0", "--format", "fhir")
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    Bundle.model_validate(bundle)
    plan = bundle["entry"][0]["resource"]
    assert [a["id"] for a in plan["action"]] == list(RULES)
    assert plan["status"] == "active"


def test_show_as_a_book_prints_it_or_writes_it(db: str, tmp_path: Path) -> None:
    printed = run(db, "show", "lumbosacral-radiculopathy", "1.0.0", "--format", "book")
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == book_of(pathways.LUMBOSACRAL_RADICULOPATHY, "1.0.0")
    out = tmp_path / "book.html"
    args = ("show", "lumbosacral-radiculopathy", "1.0.0", "--format", "book", "--out", str(out))
    written = run(db, *args)
    assert written.exit_code == 0, written.output
    assert written.stdout == ""
    assert out.read_text("utf-8") == printed.stdout


def test_diff_of_a_version_with_itself_is_empty(db: str) -> None:
    result = run(db, "diff", "1.0.0", "1.0.0")
    assert result.exit_code == 0, result.output
    changes = json.loads(result.stdout)
    assert changes["rules"] == {"added": [], "removed": [], "changed": []}
    assert all(not any(part.values()) for part in (changes[t] for t in ("timings", "defaults")))


def test_episode_open_takes_a_published_version(db: str) -> None:
    opening = ["episode", "open", "--patient-ref", "P-9", "--onset", "2026-01-05"]
    opened = CliRunner().invoke(app, ["--db", db, *opening, "--pathway-version", "1.0.0"])
    assert opened.exit_code == 0, opened.output
    assert json.loads(opened.stdout)["pathway"]["version"] == "1.0.0"
    refused = CliRunner().invoke(app, ["--db", db, *opening, "--pathway-version", "0.1.0"])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("invalid: --pathway-version: '0.1.0' is not a version")


def test_a_simulation_runs_on_the_version_its_scenario_names(db: str, tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    base = 'patient: {ref: "sim-1"}\nonset: 2026-01-05\nsteps: []\nuntil: "day 3"\n'
    scenario.write_text(base + 'pathway_version: "1.0.0"\n')
    ran = CliRunner().invoke(app, ["--db", db, "simulate", str(scenario)])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["final"]["pathway"]["version"] == "1.0.0"
    scenario.write_text(base + 'pathway_version: "3.0.0"\n')
    refused = CliRunner().invoke(app, ["--db", db, "simulate", str(scenario)])
    assert refused.exit_code == 1
    assert "pathway_version" in refused.stderr
