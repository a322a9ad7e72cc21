"""`GET /pathways`, `GET /pathways/{id}/{version}` and its FHIR PlanDefinition (CONTRACT.md
section 6)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import Engine

import pathways
from api import schemas
from api.pathway_versions import FHIR_JSON, PLAN_DEFINITION_BUNDLE
from api.problems import MEDIA_TYPE
from api.tokens import create_token
from engine.settings import DRAFTS_ENV
from pathways.lumbosacral_radiculopathy.rules import RULES
from pathways.plan_definition import plan_definition
from tests.api.conftest import NOW, OPENING

PLAN = "/pathways/lumbosacral-radiculopathy/1.0.0/plan-definition"


@pytest.mark.parametrize("role", ["service", "coordinator", "auditor", "admin"])
def test_every_reader_lists_the_versions(
    client: TestClient, tokens: dict[str, str], role: str
) -> None:
    answer = client.get("/pathways", headers={"Authorization": tokens[role]})
    assert answer.status_code == 200, answer.text
    listed = schemas.PathwayList.model_validate(answer.json())
    version = listed.items[0]
    assert (version.id, version.version, version.status) == (
        "lumbosacral-radiculopathy", "1.0.0", "published",
    )  # fmt: skip
    assert version.recorded


def test_a_version_gives_its_rules_numbers_and_citations(
    client: TestClient, tokens: dict[str, str]
) -> None:
    answer = client.get(
        "/pathways/lumbosacral-radiculopathy/1.0.0", headers={"Authorization": tokens["auditor"]}
    )
    assert answer.status_code == 200, answer.text
    document = schemas.PathwayDocument.model_validate(answer.json())
    assert [r.id for r in document.rules] == list(RULES)
    assert all(r.citations for r in document.rules)
    assert (
        document.digest
        == client.get("/pathways", headers={"Authorization": tokens["auditor"]}).json()["items"][0][
            "digest"
        ]
    )


@pytest.mark.parametrize("role", ["service", "coordinator", "auditor", "admin"])
def test_every_reader_gets_the_plan_definition_as_fhir(
    client: TestClient, tokens: dict[str, str], role: str
) -> None:
    answer = client.get(PLAN, headers={"Authorization": tokens[role]})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == FHIR_JSON
    Bundle.model_validate(answer.json())
    shipped = pathways.definition(pathways.LUMBOSACRAL_RADICULOPATHY, "1.0.0")
    assert answer.json() == plan_definition(shipped)
    assert [a["id"] for a in answer.json()["entry"][0]["resource"]["action"]] == list(RULES)


def test_the_documented_plan_definition_is_valid_fhir() -> None:
    Bundle.model_validate(PLAN_DEFINITION_BUNDLE)


@pytest.mark.parametrize(
    "path",
    [
        "/pathways/lumbosacral-radiculopathy/0.9.0",
        "/pathways/lumbar-stenosis/1.0.0",
        "/pathways/lumbosacral-radiculopathy/0.9.0/plan-definition",
        "/pathways/lumbar-stenosis/1.0.0/plan-definition",
    ],
)
def test_an_unknown_version_is_a_404_problem(
    client: TestClient, tokens: dict[str, str], path: str
) -> None:
    answer = client.get(path, headers={"Authorization": tokens["service"]})
    assert answer.status_code == 404
    assert answer.headers["content-type"] == MEDIA_TYPE
    schemas.Problem.model_validate(answer.json())


def test_the_pathways_need_a_readers_token(
    client: TestClient, engine: Engine, tokens: dict[str, str]
) -> None:
    assert client.get("/pathways").status_code == 401
    assert client.get("/pathways/lumbosacral-radiculopathy/1.0.0").status_code == 401
    assert client.get(PLAN).status_code == 401
    for gone in ("revoked", "forged"):
        assert client.get(PLAN, headers={"Authorization": tokens[gone]}).status_code == 401
    _, feed = create_token(engine, "calendar", "coordinator-1", NOW)
    refused = client.get(PLAN, headers={"Authorization": f"Bearer {feed}"})
    assert refused.status_code == 403
    assert refused.headers["content-type"] == MEDIA_TYPE


def test_an_episode_opens_on_the_version_asked_for_and_says_so(
    client: TestClient, tokens: dict[str, str]
) -> None:
    service = {"Authorization": tokens["service"]}
    opened = client.post("/episodes", json={**OPENING, "pathway_version": "1.0.0"}, headers=service)
    assert opened.status_code == 201, opened.text
    assert opened.json()["pathway"] == {"id": "lumbosacral-radiculopathy", "version": "1.0.0"}
    unknown = client.post(
        "/episodes", json={**OPENING, "pathway_version": "7.0.0"}, headers=service
    )
    assert unknown.status_code == 422
    assert unknown.json()["field"] == "pathway_version"
    assert "(published: 1.0.0" in unknown.json()["detail"]


def test_an_event_on_a_closed_episode_of_1_1_0_is_a_409_refusal(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DRAFTS_ENV, "1")
    service = {"Authorization": tokens["service"]}
    opened = client.post("/episodes", json={**OPENING, "pathway_version": "1.1.0"}, headers=service)
    assert opened.status_code == 201, opened.text
    events = f"/episodes/{opened.json()['id']}/events"
    closing = {"type": "close", "data": {"reason": "transferred"}}
    assert client.post(events, json=closing, headers=service).status_code == 200
    visit = {"type": "assessment", "data": {"vas_leg": 3, "odi": 20}}
    refused = client.post(events, json=visit, headers=service)
    assert refused.status_code == 409, refused.text
    assert refused.json()["rules"] == ["EP-FINAL"]
    assert refused.json()["override_possible"] is False
