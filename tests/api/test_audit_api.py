"""The audit routes: auditors only; filtered pages, streamed exports ending with the head."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from api.app import create_app
from cli.main import app
from engine.settings import PathwayDefaults
from models import audit_export
from models.audit_keys import AuditKey
from models.checkpointing import write_checkpoint
from models.checkpoints import CHECKPOINT
from tests.api.conftest import NOW
from tests.models import audit_forgery as forge

OPENING = {
    "patient": {"ref": "P-17", "age": 52},
    "onset": "2026-01-05",
    "enrolled_at": "2026-01-06T09:00:00Z",
    "coordinator": "alex",
}


@pytest.fixture
def history(client: TestClient, tokens: dict[str, str]) -> list[str]:
    """Two episodes, one with a refused MRI order."""
    service = {"Authorization": tokens["service"]}
    ids = [client.post("/episodes", json=OPENING, headers=service).json()["id"] for _ in (1, 2)]
    refused = client.post(
        f"/episodes/{ids[0]}/events", json={"type": "order", "data": {"kind": "mri"}},
        headers=service,
    )  # fmt: skip
    assert refused.status_code == 409
    return ids


@pytest.mark.parametrize("path", ["/audit/transitions", "/audit/export", "/audit/verify"])
@pytest.mark.parametrize(
    ("role", "status"),
    [("auditor", 200), ("admin", 200), ("coordinator", 403), ("service", 403), ("none", 401)],
)
def test_only_auditors_read_the_log(
    client: TestClient, tokens: dict[str, str], path: str, role: str, status: int
) -> None:
    headers = {"Authorization": tokens[role]} if role in tokens else {}
    assert client.get(path, headers=headers).status_code == status


def test_transitions_are_filtered_and_paged(
    client: TestClient, tokens: dict[str, str], history: list[str]
) -> None:
    auditor = {"Authorization": tokens["auditor"]}
    by_rule = client.get("/audit/transitions", params={"rule": "IMG-NO-EARLY"}, headers=auditor)
    (row,) = by_rule.json()["items"]
    assert (row["episode_id"], row["type"], row["accepted"]) == (history[0], "order", False)
    assert row["actor"] == "service-1"
    one = client.get("/audit/transitions", params={"episode": history[1]}, headers=auditor)
    assert [r["type"] for r in one.json()["items"]] == ["open"]
    seen, cursor = [], 0
    while cursor is not None:
        answer = client.get(
            "/audit/transitions", params={"limit": 1, "cursor": cursor}, headers=auditor
        ).json()
        seen += [r["seq"] for r in answer["items"]]
        cursor = answer["next_cursor"]
    assert seen == [1, 2, 3]
    bad = client.get("/audit/transitions", params={"rule": "drop table"}, headers=auditor)
    assert (bad.status_code, bad.json()["field"]) == (422, "rule")


def test_exports_end_with_the_chain_head(
    client: TestClient, tokens: dict[str, str], history: list[str]
) -> None:
    auditor = {"Authorization": tokens["auditor"]}
    jsonl = client.get("/audit/export", params={"format": "jsonl"}, headers=auditor)
    assert jsonl.headers["content-type"] == "application/x-ndjson"
    *rows, trailer = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert trailer["chain_head"] == {"seq": 3, "hash": rows[-1]["hash"], "seal": None}
    assert trailer["checkpoint"] is None  # no key: nothing was signed
    assert (trailer["export"]["filtered"], trailer["export"]["rows"]) == (False, 3)
    assert trailer["export"]["cannot_check"] == ["any row against a signature"]
    text = client.get("/audit/export", params={"format": "csv"}, headers=auditor).text
    header, *lines, scope, checkpoint, last = list(csv.reader(io.StringIO(text)))
    assert header[0] == "seq"
    assert len(lines) == 3
    assert json.loads(scope[1]) == trailer["export"]
    assert checkpoint == ["#checkpoint"]
    assert last == ["#chain_head", "3", rows[-1]["hash"]]
    assert client.get("/audit/verify", headers=auditor).json()["ok"] is True
    assert client.get("/audit/export", params={"format": "xml"}, headers=auditor).status_code == 422


def test_the_command_line_export_matches(
    client: TestClient, tokens: dict[str, str], history: list[str], db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "audit.jsonl"
    result = CliRunner().invoke(
        app, ["audit", "export", "--out", str(out)], env={"CAREPATH_DATABASE_URL": db_url}
    )
    assert result.exit_code == 0, result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 4
    assert json.loads(lines[-1])["chain_head"]["seq"] == 3


def test_the_fhir_export_is_audit_events_then_the_chain_head(
    client: TestClient, tokens: dict[str, str], history: list[str]
) -> None:
    auditor = {"Authorization": tokens["auditor"]}
    answer = client.get("/audit/export", params={"format": "fhir"}, headers=auditor)
    assert answer.headers["content-type"] == "application/fhir+ndjson"
    *events, head = [json.loads(line) for line in answer.text.splitlines()]
    assert [e["resourceType"] for e in events] == ["AuditEvent"] * 3
    refused = next(e for e in events if e["outcome"] == "4")
    assert refused["subtype"][0]["code"] == "order"
    assert refused["agent"][0]["who"]["display"] == "service-1"
    assert refused["entity"][0]["what"]["reference"] == f"EpisodeOfCare/{history[0]}"
    details = {d["type"]: d["valueString"] for d in events[-1]["entity"][0]["detail"]}
    assert head["resourceType"] == "Provenance"
    assert head["target"] == [{"reference": "AuditEvent/carepath-audit-3"}]
    assert head["extension"][1]["valueString"] == details["hash"]


@pytest.mark.parametrize("batch", [2, 3, 1000])
def test_every_export_line_is_the_row_as_json(
    client: TestClient,
    tokens: dict[str, str],
    history: list[str],
    batch: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lines are built by hand for speed: they must be what ``json.dumps`` gives for the
    row as the API pages it, across batch edges, for text JSON would escape too."""
    from models import audit_export

    overridden = client.post(
        f"/episodes/{history[1]}/events",
        json={"type": "order",
              "data": {"kind": "mri", "override_reason": 'Sévère "night" pain\\after a fall'}},
        headers={"Authorization": tokens["service"]},
    )  # fmt: skip
    assert overridden.status_code == 200, overridden.text
    monkeypatch.setattr(audit_export, "BATCH", batch)
    auditor = {"Authorization": tokens["auditor"]}
    paged = client.get("/audit/transitions", headers=auditor).json()["items"]
    assert paged[-1]["reason"] == 'overridden (IMG-NO-EARLY): Sévère "night" pain\\after a fall'
    exported = client.get("/audit/export", params={"format": "jsonl"}, headers=auditor)
    *lines, _ = exported.text.splitlines()
    assert lines == [json.dumps(row, sort_keys=True) for row in paged]


def test_an_export_that_cannot_be_read_is_a_problem_not_a_broken_stream(
    client: TestClient, tokens: dict[str, str], history: list[str]
) -> None:
    auditor = {"Authorization": tokens["auditor"]}
    nul = client.get("/audit/export", params={"actor": "a\x00b"}, headers=auditor)
    assert (nul.status_code, nul.json()["field"]) == (422, "actor")
    listed = client.get("/audit/transitions", params={"episode": "\x00"}, headers=auditor)
    assert (listed.status_code, listed.json()["field"]) == (422, "episode")


def test_a_database_failure_before_the_export_starts_is_a_503_problem(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from models import audit_export

    def unreachable(*_: object) -> None:
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(audit_export, "head_and_checkpoint", unreachable)
    answer = client.get("/audit/export", headers={"Authorization": tokens["auditor"]})
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditKey:
    """The service's audit key (set before any row is written, so every row is sealed)."""
    return forge.use_key(tmp_path, monkeypatch)


def test_verify_checks_checkpoints_and_seals_with_the_services_key(
    client: TestClient, tokens: dict[str, str], key: AuditKey, history: list[str], engine: Engine
) -> None:
    auditor = {"Authorization": tokens["auditor"]}
    checkpoint = write_checkpoint(engine, key, NOW)
    assert checkpoint is not None
    intact = client.get("/audit/verify", headers=auditor).json()
    assert intact["ok"] is True
    assert (intact["seals_checked"], intact["signatures_checked"]) == (True, 1)
    assert intact["resumed_from"] == intact["latest_checkpoint"] == checkpoint.as_json()
    assert (intact["head"], intact["rows_checked"]) == ({"seq": 3, "hash": checkpoint.hash}, 0)
    full = client.get("/audit/verify", params={"full": True}, headers=auditor).json()
    assert (full["ok"], full["full"], full["rows_checked"]) == (True, True, 3)

    forged = forge.append_forged(engine)
    broken = client.get("/audit/verify", headers=auditor).json()
    assert (broken["ok"], broken["first_bad_seq"]) == (False, forged["seq"])
    assert "no seal" in broken["problem"]
    kept = f"{checkpoint.seq}:{checkpoint.hash}"
    assert (
        client.get("/audit/verify", params={"against": kept}, headers=auditor).json()[
            "first_bad_seq"
        ]
        == forged["seq"]
    )
    wrong = client.get("/audit/verify", params={"against": "3:" + "0" * 64}, headers=auditor)
    assert (wrong.status_code, wrong.json()["first_bad_seq"]) == (200, 3)
    bad = client.get("/audit/verify", params={"against": "three"}, headers=auditor)
    assert (bad.status_code, bad.json()["field"]) == (422, "against")


def test_every_export_ends_with_the_latest_checkpoint(
    client: TestClient, tokens: dict[str, str], key: AuditKey, history: list[str], engine: Engine
) -> None:
    auditor = {"Authorization": tokens["auditor"]}
    checkpoint = write_checkpoint(engine, key, NOW)
    assert checkpoint is not None
    signed = checkpoint.as_json()
    jsonl = client.get("/audit/export", params={"format": "jsonl"}, headers=auditor).text
    assert json.loads(jsonl.splitlines()[-1])["checkpoint"] == signed
    text = client.get("/audit/export", params={"format": "csv"}, headers=auditor).text
    *_, row, _ = list(csv.reader(io.StringIO(text)))
    assert row == ["#checkpoint", *(str(signed[k]) for k in audit_export.CHECKPOINT_FIELDS)]
    fhir = client.get("/audit/export", params={"format": "fhir"}, headers=auditor).text
    provenance = json.loads(fhir.splitlines()[-1])
    extensions = {e["url"].rsplit("/", 1)[-1]: e for e in provenance["extension"]}
    assert json.loads(extensions["chain-checkpoint"]["valueString"]) == signed
    assert json.loads(extensions["export-scope"]["valueString"])["filtered"] is False


def test_a_filtered_export_says_what_cannot_be_checked(
    client: TestClient, tokens: dict[str, str], history: list[str]
) -> None:
    auditor = {"Authorization": tokens["auditor"]}
    answer = client.get("/audit/export", params={"episode": history[0]}, headers=auditor)
    *rows, trailer = [json.loads(line) for line in answer.text.splitlines()]
    assert [r["seq"] for r in rows] == [1, 3]
    scope = trailer["export"]
    assert (scope["filtered"], scope["rows"], scope["filter"]["episode"]) == (True, 2, history[0])
    assert scope["can_check"] == ["each row's hash against its own content and prev_hash"]
    assert scope["cannot_check"][0].startswith("the links between rows")


@pytest.mark.parametrize("value", ["2026-01-01", "2026-01-01T00:00:00"])
@pytest.mark.parametrize("field", ["since", "until"])
def test_an_instant_without_an_offset_is_a_422_naming_it(
    client: TestClient, tokens: dict[str, str], field: str, value: str
) -> None:
    auditor = {"Authorization": tokens["auditor"]}
    for path in ("/audit/export", "/audit/transitions"):
        answer = client.get(path, params={field: value}, headers=auditor)
        assert (answer.status_code, answer.json()["field"]) == (422, field), answer.text


def test_the_services_worker_signs_the_head(
    engine: Engine, clock: Any, tokens: dict[str, str], key: AuditKey
) -> None:
    app_ = create_app(engine, clock, PathwayDefaults(), worker_interval=0.05)
    with TestClient(app_) as client:
        service = {"Authorization": tokens["service"]}
        assert client.post("/episodes", json=OPENING, headers=service).status_code == 201
        clock.advance(timedelta(minutes=6))  # past the default interval since the first sweep
        deadline = time.monotonic() + 20
        signed = None
        while signed is None and time.monotonic() < deadline:
            with engine.connect() as connection:
                signed = connection.execute(select(CHECKPOINT.c.seq, CHECKPOINT.c.key_id)).first()
            time.sleep(0.05)
    assert signed is not None, "no checkpoint within 20 s"
    assert tuple(signed) == (1, key.id)
