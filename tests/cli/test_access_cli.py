"""The command line's reads are on record as cli:<user>; `carepath audit access` lists them."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from cli.main import app
from models.access_reading import AccessFilter, page
from tests.models.test_access_log import lift_guards
from tests.models.test_access_writer import refuse_inserts

CLI_ACTOR = f"cli:{getpass.getuser()}"


def run(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(app, ["--db", db_url, *args])


def records(engine: Engine) -> list[dict[str, Any]]:
    return page(engine, AccessFilter(), 0, 1000)[0]


@pytest.fixture
def episode(db_url: str) -> str:
    onset = (datetime.now(UTC) - timedelta(days=10)).date().isoformat()
    opened = run(db_url, "episode", "open", "--patient-ref", "p-1", "--onset", onset)
    assert opened.exit_code == 0, opened.output
    return str(json.loads(opened.stdout)["id"])


def test_episode_show_and_audit_export_record_their_reads(
    db_url: str, db_engine: Engine, episode: str
) -> None:
    shown = run(db_url, "episode", "show", episode)
    assert shown.exit_code == 0, shown.output
    exported = run(db_url, "audit", "export", "--out", "-", "--format", "csv")
    assert exported.exit_code == 0, exported.output
    one = run(db_url, "audit", "export", "--out", "-", "--episode", episode)
    assert one.exit_code == 0, one.output
    keys = ("actor", "role", "route", "outcome", "episode_ids", "episode_count", "query")
    assert [tuple(row[k] for k in keys) for row in records(db_engine)] == [
        (CLI_ACTOR, "cli", "carepath episode show", "answered", [episode], 1, None),
        (CLI_ACTOR, "cli", "carepath audit export", "answered", None, None, "format=csv"),
        (CLI_ACTOR, "cli", "carepath audit export", "answered", [episode], 1,
         f"format=jsonl&episode={episode}"),
    ]  # fmt: skip


def test_a_read_that_cannot_be_recorded_prints_nothing(
    db_url: str, db_engine: Engine, episode: str
) -> None:
    refuse_inserts(db_engine)
    shown = run(db_url, "episode", "show", episode)
    assert shown.exit_code == 1
    assert shown.stdout == ""
    assert "access log could not be written" in shown.stderr
    assert "no space left on device" in shown.stderr
    exported = run(db_url, "audit", "export", "--out", "-")
    assert exported.exit_code == 1
    assert exported.stdout == ""


def test_audit_access_lists_filters_and_records_its_own_read(
    db_url: str, db_engine: Engine, episode: str
) -> None:
    assert run(db_url, "episode", "show", episode).exit_code == 0
    assert run(db_url, "audit", "export", "--out", "-").exit_code == 0

    listed = run(db_url, "audit", "access", "--episode", episode)
    assert listed.exit_code == 0, listed.output
    body = json.loads(listed.stdout)
    # The read that showed it, and the export that may have.
    assert [row["route"] for row in body["items"]] == [
        "carepath episode show", "carepath audit export",
    ]  # fmt: skip
    assert body["next_cursor"] is None
    own = records(db_engine)[-1]
    assert (own["route"], own["episode_ids"], own["query"]) == (
        "carepath audit access", [episode], f"episode={episode}&limit=100",
    )  # fmt: skip

    first = json.loads(run(db_url, "audit", "access", "--limit", "1").stdout)
    assert ([r["seq"] for r in first["items"]], first["next_cursor"]) == ([1], 1)
    later = json.loads(run(db_url, "audit", "access", "--since", "2999-01-01T00:00:00Z").stdout)
    assert later["items"] == []
    mine = json.loads(run(db_url, "audit", "access", "--actor", CLI_ACTOR, "--until",
                          datetime.now(UTC).isoformat()).stdout)  # fmt: skip
    assert len(mine["items"]) >= 4

    bad = run(db_url, "audit", "access", "--since", "yesterday")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("invalid: --since: ")
    assert run(db_url, "audit", "access", "--limit", "0").exit_code == 2


def test_audit_access_verify_names_the_first_bad_row(
    db_url: str, db_engine: Engine, episode: str
) -> None:
    for _ in range(3):
        assert run(db_url, "episode", "show", episode).exit_code == 0
    intact = run(db_url, "audit", "access", "--verify")
    assert intact.exit_code == 0, intact.output
    assert json.loads(intact.stdout) == {
        "ok": True, "rows_checked": 3, "first_bad_seq": None, "problem": None,
    }  # fmt: skip
    assert len(records(db_engine)) == 3  # verifying shows no episode: not a read

    lift_guards(db_engine)
    with db_engine.begin() as connection:
        connection.exec_driver_sql("UPDATE access_log SET actor = 'someone' WHERE seq = 2")
    broken = run(db_url, "audit", "access", "--verify")
    assert broken.exit_code == 1
    assert json.loads(broken.stdout)["first_bad_seq"] == 2
    assert broken.stderr.strip() == (
        "access log broken at row 2: row 2 (someone, carepath episode show): hash mismatch: "
        "the row was altered"
    )
