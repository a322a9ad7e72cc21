"""The OpenAPI document: every operation answers as documented, with examples throughout."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from api import schemas
from api.problems import MEDIA_TYPE
from tests.api.conftest import OPENING


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]  # type: ignore[no-any-return]


def test_every_operation_documents_its_answers_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operations = [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]
    assert len(operations) >= 14
    for method, path, operation in operations:
        name = f"{method} {path}"
        assert operation.get("summary"), name
        answers = operation["responses"]
        success = [code for code in answers if code.startswith("2")]
        assert success, f"{name}: no success answer"
        for code in success:
            content = answers[code]["content"]
            for media, body in content.items():
                schema = _resolve(spec, body.get("schema", {}))
                assert "example" in body or schema.get("examples"), f"{name} {code} {media}"
        for code, answer in answers.items():
            if code.startswith(("4", "5")) and path != "/healthz":
                body = answer["content"][MEDIA_TYPE]
                assert body["example"]["status"] == int(code), f"{name} {code}"
        if method == "POST" and "requestBody" in operation:
            (body,) = operation["requestBody"]["content"].values()
            assert "examples" in body or body["schema"].get("examples"), f"{name}: request"
        needs_token = path not in ("/healthz", "/calendar/{coordinator}.ics")
        assert ("401" in answers) == (path != "/healthz"), name
        assert needs_token == bool(operation.get("security")), name


def conforms(model: type[BaseModel], body: Any) -> None:
    """The real answer is what the document says (no field missing, none undocumented)."""
    model.model_validate(body)


def test_real_answers_match_the_documented_models(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    service = {"Authorization": tokens["service"]}
    admin = {"Authorization": tokens["admin"]}
    opened = client.post("/episodes", json=OPENING, headers=service)
    conforms(schemas.EpisodeView, opened.json())
    episode = opened.json()["id"]
    conforms(schemas.EpisodeRead, client.get(f"/episodes/{episode}", headers=service).json())
    conforms(schemas.EpisodeRead, client.get(f"/episodes/{late_referral}", headers=service).json())
    timeline = client.get(f"/episodes/{late_referral}/timeline?limit=2", headers=service).json()
    conforms(schemas.TimelinePage, timeline)
    due = client.get(f"/episodes/{late_referral}/due?status=open", headers=service).json()
    conforms(schemas.DuePage, due)
    conforms(schemas.EpisodePage, client.get("/episodes", headers=service).json())
    event = {"type": "assessment", "data": {"vas_leg": 4, "odi": 30}}
    answer = client.post(f"/episodes/{episode}/events", json=event, headers=service)
    conforms(schemas.EventAnswer, answer.json())
    worklist = client.get("/worklist", params={"coordinator": "coordinator-1"}, headers=admin)
    conforms(schemas.Worklist, worklist.json())
    task_id = worklist.json()["items"][0]["task_id"]
    conforms(schemas.Acknowledged, client.post(f"/tasks/{task_id}/ack", headers=admin).json())
    contact = {"outcome": "no_answer", "note": "rang twice"}
    answer = client.post(f"/tasks/{task_id}/contact", json=contact, headers=admin)
    conforms(schemas.Contacted, answer.json())
    routine = client.get("/worklist", params={"coordinator": "coordinator-1", "window": "60d",
                                              "severity": "routine"}, headers=admin)  # fmt: skip
    routine_id = routine.json()["items"][0]["task_id"]
    conforms(schemas.Completed, client.post(f"/tasks/{routine_id}/done", headers=admin).json())
    conforms(schemas.AuditPage, client.get("/audit/transitions", headers=admin).json())
    conforms(schemas.ChainCheck, client.get("/audit/verify", headers=admin).json())
    conforms(schemas.Health, client.get("/healthz").json())


def test_real_problems_match_the_documented_problem(
    client: TestClient, tokens: dict[str, str]
) -> None:
    service = {"Authorization": tokens["service"]}
    episode = client.post("/episodes", json=OPENING, headers=service).json()["id"]
    events = f"/episodes/{episode}/events"
    answers = {
        401: client.get("/episodes"),
        403: client.get("/audit/verify", headers=service),
        404: client.get("/episodes/no-such-episode", headers=service),
        409: client.post(events, json={"type": "order", "data": {"kind": "mri"}}, headers=service),
        412: client.post(
            events, json={"type": "assessment", "data": {"vas_leg": 3, "odi": 20}},
            headers={**service, "If-Match": '"99"'},
        ),
        422: client.post(events, json={"type": "assessment", "data": {"vas_leg": 14}},
                         headers=service),
    }  # fmt: skip
    for status, answer in answers.items():
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == MEDIA_TYPE
        conforms(schemas.Problem, answer.json())
    refusal = answers[409].json()
    assert refusal["rules"] == ["IMG-NO-EARLY"]
    assert refusal["reason"] == refusal["detail"]
    assert refusal["override_possible"] is True
    assert refusal["eligible_from"] == "2026-02-16"


@pytest.mark.parametrize("model", [m for m in vars(schemas).values()
                                   if isinstance(m, type) and issubclass(m, BaseModel)
                                   and m is not BaseModel])  # fmt: skip
def test_every_documented_example_fits_its_model(model: type[BaseModel]) -> None:
    for example in (model.model_config.get("json_schema_extra") or {}).get("examples", []):
        conforms(model, example)
