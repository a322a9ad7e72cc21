"""`GET /pathways` and `GET /pathways/{id}/{version}` (CONTRACT.md section 6)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api import schemas
from api.problems import MEDIA_TYPE
from engine.rules import RULES
from engine.settings import DRAFTS_ENV
from tests.api.conftest import OPENING


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


@pytest.mark.parametrize(
    "path", ["/pathways/lumbosacral-radiculopathy/0.9.0", "/pathways/lumbar-stenosis/1.0.0"]
)
def test_an_unknown_version_is_a_404_problem(
    client: TestClient, tokens: dict[str, str], path: str
) -> None:
    answer = client.get(path, headers={"Authorization": tokens["service"]})
    assert answer.status_code == 404
    assert answer.headers["content-type"] == MEDIA_TYPE
    schemas.Problem.model_validate(answer.json())


def test_the_pathways_need_a_token(client: TestClient) -> None:
    assert client.get("/pathways").status_code == 401
    assert client.get("/pathways/lumbosacral-radiculopathy/1.0.0").status_code == 401


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
