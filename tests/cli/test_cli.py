"""The `carepath` command on a SQLite file: the happy path, refusals, tampering, simulation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from models.db import make_engine

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'carepath.db'}"


def run(runner: CliRunner, db: str, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--db", db, *args])


def recent_onset(days: int = 10) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).date().isoformat()


@pytest.fixture
def episode_id(runner: CliRunner, db: str) -> str:
    assert run(runner, db, "db", "upgrade").exit_code == 0
    result = run(
        runner,
        db,
        "episode",
        "open",
        "--patient-ref",
        "p-1",
        "--onset",
        recent_onset(),
        "--age",
        "50",
        "--flag",
        "prior_lbp",
        "--coordinator",
        "nurse.jones",
    )
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert "acute" in view["configuration"]
    return str(view["id"])


def test_open_event_show_and_verify(runner: CliRunner, db: str, episode_id: str) -> None:
    result = run(
        runner,
        db,
        "event",
        episode_id,
        "assessment",
        "--data",
        '{"vas_leg": 7, "odi": 40}',
        "--actor",
        "dr.gp",
    )
    assert result.exit_code == 0, result.output
    step = json.loads(result.stdout)
    assert step["accepted"] is True
    assert step["trigger"] == "event"
    assert "FU-CONTENT" in step["rules"]

    shown = run(runner, db, "episode", "show", episode_id)
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["version"] == 2

    verified = run(runner, db, "audit", "verify")
    assert verified.exit_code == 0
    assert "audit log intact: 2 rows" in verified.stdout


def test_a_refusal_prints_the_step_and_exits_1(runner: CliRunner, db: str, episode_id: str) -> None:
    result = run(runner, db, "event", episode_id, "order", "--data", '{"kind": "mri"}')
    assert result.exit_code == 1
    step = json.loads(result.stdout)
    assert step["accepted"] is False
    assert step["eligible_from"]
    assert "refused: IMG-NO-EARLY" in result.stderr


def test_invalid_input_names_the_field(runner: CliRunner, db: str, episode_id: str) -> None:
    result = run(
        runner, db, "event", episode_id, "assessment", "--data", '{"vas_leg": 14, "odi": 4}'
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("invalid: data.vas_leg:")
    bad_flag = run(
        runner,
        db,
        "episode",
        "open",
        "--patient-ref",
        "p",
        "--onset",
        recent_onset(),
        "--flag",
        "nonsense",
    )
    assert bad_flag.exit_code == 1
    assert "nonsense" in bad_flag.stderr
    stale = run(
        runner,
        db,
        "event",
        episode_id,
        "assessment",
        "--data",
        '{"vas_leg": 4, "odi": 4}',
        "--if-version",
        "7",
    )
    assert stale.exit_code == 1
    assert "stale" in stale.stderr
    missing = run(runner, db, "episode", "show", "no-such-episode")
    assert missing.exit_code == 1


def test_an_unmigrated_database_says_so(runner: CliRunner, db: str) -> None:
    result = run(runner, db, "episode", "open", "--patient-ref", "p", "--onset", recent_onset())
    assert result.exit_code == 1
    assert "database not migrated: run carepath db upgrade" in result.stderr


def test_bad_usage_exits_2(runner: CliRunner, db: str) -> None:
    assert run(runner, db, "episode", "open", "--onset", recent_onset()).exit_code == 2
    assert run(runner, db, "diagram", "--format", "gif").exit_code == 2


def test_tampering_is_detected(runner: CliRunner, db: str, episode_id: str) -> None:
    run(runner, db, "event", episode_id, "assessment", "--data", '{"vas_leg": 7, "odi": 40}')
    engine = make_engine(db)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            connection.execute(text("UPDATE audit_log SET actor = 'dr.nobody' WHERE seq = 2"))
    finally:
        engine.dispose()
    result = run(runner, db, "audit", "verify")
    assert result.exit_code == 1
    assert "row 2" in result.stderr


def test_worker_once_fires_nothing_before_anything_is_due(
    runner: CliRunner, db: str, episode_id: str
) -> None:
    result = run(runner, db, "worker", "--once")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert (summary["fired"], summary["noops"], summary["held"]) == (0, 0, 0)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_simulates(runner: CliRunner, path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(path)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["timeline"]
    assert out["final"]["id"]
    times = [e["at"] for e in out["timeline"]]
    assert times == sorted(times)


def test_there_are_five_examples() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.yaml")} == {
        "uncomplicated_recovery",
        "mri_then_injection",
        "cauda_equina",
        "missed_referral",
        "elderly_opioids",
    }


def simulate(runner: CliRunner, tmp_path: Path, scenario: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "scenario.yaml"
    path.write_text(scenario)
    return runner.invoke(app, ["simulate", str(path)])


def test_cauda_equina_raises_the_emergency_flag(runner: CliRunner) -> None:
    out = json.loads(runner.invoke(app, ["simulate", str(EXAMPLES / "cauda_equina.yaml")]).stdout)
    assert any("RF-CES" in e["rules"] for e in out["timeline"])
    assert out["final"]["red_flag"]["rule"] == "RF-CES"
    assert out["final"]["red_flag"]["level"] == "emergency"


def test_missed_referral_becomes_overdue(runner: CliRunner) -> None:
    out = json.loads(
        runner.invoke(app, ["simulate", str(EXAMPLES / "missed_referral.yaml")]).stdout
    )
    assert out["final"]["referral"] == "overdue"


def test_resolution_is_final(runner: CliRunner) -> None:
    path = str(EXAMPLES / "uncomplicated_recovery.yaml")
    out = json.loads(runner.invoke(app, ["simulate", path]).stdout)
    assert out["final"]["status"] == "resolved"


@pytest.mark.parametrize(
    ("scenario", "field"),
    [
        ("patient: {ref: x, age: 300}\nonset: 2026-01-05\nsteps: []\n", "patient.age"),
        ("patient: {ref: x}\nonset: 2026-13-05\nsteps: []\n", "onset"),
        (
            "patient: {ref: x}\nonset: 2026-01-05\nsteps:\n"
            "  - {at: day 3, event: {type: assessment, data: {vas_leg: 2, odi: 5}}}\n"
            "  - {at: day 4, event: {type: assessment, data: {vas_leg: 14, odi: 5}}}\n",
            "steps[1].event.data.vas_leg",
        ),
        (
            "patient: {ref: x}\nonset: 2026-01-05\nsteps:\n"
            "  - {at: day 9, event: {type: assessment, data: {vas_leg: 2, odi: 5}}}\n"
            "  - {at: day 4, event: {type: assessment, data: {vas_leg: 1, odi: 5}}}\n",
            "steps[1].at",
        ),
        (
            "patient: {ref: x}\nonset: 2026-01-05\n"
            "steps:\n  - {at: someday, event: {type: close}}\n",
            "steps[0].at",
        ),
    ],
)
def test_invalid_scenarios_name_the_field(
    runner: CliRunner, tmp_path: Path, scenario: str, field: str
) -> None:
    result = simulate(runner, tmp_path, scenario)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"invalid: {field}:"), result.stderr


def test_diagram_mermaid(runner: CliRunner) -> None:
    result = runner.invoke(app, ["diagram", "--format", "mermaid"])
    assert result.exit_code == 0
    assert result.stdout.startswith("stateDiagram-v2")


def test_diagram_dot_to_a_file(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "chart.dot"
    result = runner.invoke(app, ["diagram", "--format", "dot", "--out", str(out)])
    assert result.exit_code == 0
    assert "digraph" in out.read_text()
