"""Every bad input is a 4xx problem naming the field, on SQLite as on PostgreSQL; every error
answer of any kind is problem+json; a body is limited before it is read, and a token is
checked before the body is parsed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from api.app import create_app
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from models.db import read_only
from models.repository import EpisodeRepository
from models.tables import ClinicalEventRow, Episode
from schedulers.logs import JsonFormatter
from tests.api.conftest import OPENING

PROBLEM = "application/problem+json"


def count(engine: Engine, table: Any) -> int:
    with read_only(engine) as connection:
        return int(connection.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def service(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": tokens["service"]}


def problem(answer: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    if field is not None:
        assert body["field"] == field, body
    return body


# The openings of the issue, as JSON text (a lone surrogate can only be written as an escape).
BAD_OPENINGS = [
    ('{"patient": {"ref": "P\\ud800"}, "onset": "2026-01-05"}', "patient.ref"),
    ('{"patient": {"ref": "P\\u0000"}, "onset": "2026-01-05"}', "patient.ref"),
    (json.dumps({"patient": {"ref": "P" * 129}, "onset": "2026-01-05"}), "patient.ref"),
    (json.dumps({**OPENING, "coordinator": "c" * 129}), "coordinator"),
    (json.dumps({**OPENING, "clinic_timezone": "Europe/" + "x" * 60}), "clinic_timezone"),
    (json.dumps({**OPENING, "onset": "9999-12-31", "enrolled_at": None}), "onset"),
    (json.dumps({**OPENING, "onset": "1899-12-31"}), "onset"),
    (json.dumps({**OPENING, "onset": "2026-01-21", "enrolled_at": None}), "onset"),  # > now+1d
    (json.dumps({**OPENING, "enrolled_at": "9999-12-31T23:59:59Z"}), "enrolled_at"),
    (json.dumps({**OPENING, "enrolled_at": "0001-01-01T00:00:00+14:00"}), "enrolled_at"),
    (json.dumps({**OPENING, "enrolled_at": "2026-01-20T11:00:00Z"}), "enrolled_at"),  # > now+1d
    ('{"patient": {"ref": "P-1", "\\ud800": true}, "onset": "2026-01-05"}', "patient"),
    ("[1, 2]", "opening"),
]


@pytest.mark.parametrize(("body", "field"), BAD_OPENINGS, ids=[f for _, f in BAD_OPENINGS])
def test_each_bad_opening_is_a_422_naming_the_field_and_stores_nothing(
    client: TestClient, service: dict[str, str], engine: Engine, body: str, field: str
) -> None:
    headers = {**service, "Content-Type": "application/json"}
    answer = client.post("/episodes", content=body.encode(), headers=headers)
    problem(answer, 422, field)
    assert count(engine, Episode) == 0


def test_an_opening_on_the_bounds_is_accepted(
    client: TestClient, service: dict[str, str], engine: Engine
) -> None:
    tomorrow = {**OPENING, "onset": "2026-01-20", "enrolled_at": "2026-01-20T09:00:00Z"}
    assert client.post("/episodes", json=tomorrow, headers=service).status_code == 201
    old = {**OPENING, "onset": "1900-01-01", "enrolled_at": "1900-01-02T00:00:00Z"}
    assert client.post("/episodes", json=old, headers=service).status_code == 201


@pytest.fixture
def episode(client: TestClient, service: dict[str, str]) -> str:
    return str(client.post("/episodes", json=OPENING, headers=service).json()["id"])


BAD_EVENTS = [
    ('{"type": "biopsychosocial_assessment", "data": {"note": "a\\u0000b"}}', "data.note"),
    ('{"type": "treatment", "data": {"kind": "nsaid", "contraindications": ["\\udfff"]}}',
     "data.contraindications.0"),
    (json.dumps({"type": "treatment", "data": {"kind": "nsaid", "start": "9999-12-31"}}),
     "data.start"),
    (json.dumps({"type": "assessment", "data": {"vas_leg": 3, "odi": 10},
                 "occurred_at": "0001-01-01T00:00:00+14:00"}), "occurred_at"),
    ('{"type": "x\\u0000"}', "type"),
    ('{"type": "assessment", "data": {"vas_leg": NaN, "odi": 1}}', "body"),
    ('{"type": "assessment", "data": {"vas_leg": 1' + "0" * 5000 + ', "odi": 1}}', "body"),
    ("[" * 100_000 + "]" * 100_000, "body"),
    ('{"type": "assessment", ', "body"),
    ("", "body"),
    (b"\xff\xfe".decode("latin-1"), "body"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field"), BAD_EVENTS, ids=[f for _, f in BAD_EVENTS])
def test_each_bad_event_is_a_422_naming_the_field(
    client: TestClient, service: dict[str, str], engine: Engine, episode: str, body: str,
    field: str,
) -> None:  # fmt: skip
    headers = {**service, "Content-Type": "application/json"}
    raw = body.encode("latin-1") if body.startswith("\xff") else body.encode()
    answer = client.post(f"/episodes/{episode}/events", content=raw, headers=headers)
    problem(answer, 422, field)
    assert count(engine, ClinicalEventRow) == 0


@pytest.mark.parametrize("route", ["/audit/transitions", "/audit/export"])
@pytest.mark.parametrize("parameter", ["since", "until"])
@pytest.mark.parametrize(
    "value", ["2026-01-01", "2026-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "soon"]
)
def test_audit_times_need_an_offset(
    client: TestClient, tokens: dict[str, str], route: str, parameter: str, value: str
) -> None:
    auditor = {"Authorization": tokens["auditor"]}
    problem(client.get(route, params={parameter: value}, headers=auditor), 422, parameter)
    good = client.get(route, params={parameter: "2026-01-01T00:00:00+01:00"}, headers=auditor)
    assert good.status_code == 200


# --------------------------------------------------------------------------------------------
# The token first, then the body


def test_a_token_is_checked_before_the_body_is_parsed(
    client: TestClient, service: dict[str, str], episode: str
) -> None:
    broken = b'{"type": "assessment", '
    for path in ("/episodes", f"/episodes/{episode}/events"):
        headers = {"Content-Type": "application/json"}
        problem(client.post(path, content=broken, headers=headers), 401)
        problem(client.post(path, content=broken, headers={**headers, **service}), 422, "body")


def test_a_body_not_declared_as_json_is_415(
    client: TestClient, service: dict[str, str], episode: str
) -> None:
    answer = client.post(f"/episodes/{episode}/events", content=b"type=assessment",
                         headers={**service, "Content-Type": "text/plain"})  # fmt: skip
    problem(answer, 415)
    declared = {**service, "Content-Type": "application/json; charset=utf-8"}
    ok = client.post(f"/episodes/{episode}/events", content=b'{"type": "resolve"}',
                     headers=declared)  # fmt: skip
    assert ok.status_code == 200


# --------------------------------------------------------------------------------------------
# The body limit


@pytest.fixture
def small_limit(engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(engine, clock, PathwayDefaults(), max_body_bytes=2048)
    with TestClient(app) as client:
        yield client


def test_a_body_over_the_limit_is_413_whether_its_length_is_declared_or_not(
    small_limit: TestClient, service: dict[str, str], engine: Engine
) -> None:
    big = json.dumps({**OPENING, "patient": {"ref": "P", "note": "x" * 4000}}).encode()
    problem(small_limit.post("/episodes", content=big, headers=service), 413)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    problem(small_limit.post("/episodes", content=chunks(), headers=service), 413)
    # Before the token, even: nothing of the body is read.
    problem(small_limit.post("/episodes", content=big), 413)
    assert count(engine, Episode) == 0
    fits = small_limit.post("/episodes", json=OPENING, headers=service)
    assert fits.status_code == 201


def test_the_default_limit_is_one_mebibyte(
    client: TestClient, service: dict[str, str], episode: str
) -> None:
    path = f"/episodes/{episode}/events"
    note = {"type": "biopsychosocial_assessment", "data": {"note": "x" * (1024 * 1024)}}
    problem(client.post(path, json=note, headers=service), 413)
    note["data"]["note"] = "x" * (1024 * 1024 - 100)
    assert client.post(path, json=note, headers=service).status_code == 200


# --------------------------------------------------------------------------------------------
# No error answer that is not a problem


def test_unknown_paths_and_methods_are_problems(
    client: TestClient, service: dict[str, str]
) -> None:
    problem(client.get("/no/such/route", headers=service), 404)
    answer = client.delete("/episodes", headers=service)
    problem(answer, 405)


def test_an_unexpected_error_is_a_500_problem_without_internals_and_one_json_log_line(
    client: TestClient, service: dict[str, str], episode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any) -> Any:
        raise RuntimeError("secret internals: /srv/carepath at 0xdeadbeef")

    monkeypatch.setattr(EpisodeRepository, "view", broken)
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("carepath.api").addHandler(handler)
    try:
        answer = client.get(f"/episodes/{episode}/diagram.svg", headers=service)
    finally:
        logging.getLogger("carepath.api").removeHandler(handler)
    body = problem(answer, 500)
    assert "secret" not in answer.text
    assert body["type"].endswith("/internal-error")
    (line,) = lines.getvalue().splitlines()
    logged = json.loads(line)
    assert logged["msg"] == "unhandled error"
    assert logged["route"] == "/episodes/{episode_id}/diagram.svg"
    assert "RuntimeError: secret internals" in logged["exception"]
