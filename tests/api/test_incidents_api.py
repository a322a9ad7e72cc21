"""A damaged episode over HTTP: a 500 problem naming it, listed as an incident, and the
service reported degraded, by counts, without a token and without patient data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from sqlalchemy import Engine, update

from api import schemas
from api.problems import MEDIA_TYPE
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from models.repository import EpisodeRepository
from models.tables import Episode
from schedulers.worker import Worker
from tests.api.conftest import OPENING
from tests.api.page_forms import sign_in

DAMAGE: dict[str, dict[str, Any]] = {
    "configuration null": {"configuration": None},
    "unknown state ids": {"configuration": ["care", "limbo"]},
    "patient a JSON string": {"patient": "P-31"},
    "facts not an object": {"facts": [1]},
    "history not an object": {"history": "deep"},
}


def damaged(client: TestClient, engine: Engine, tokens: dict[str, str], shape: str) -> str:
    service = {"Authorization": tokens["service"]}
    episode = str(client.post("/episodes", json=OPENING, headers=service).json()["id"])
    with engine.begin() as connection:
        connection.execute(update(Episode).where(Episode.id == episode).values(**DAMAGE[shape]))
    return episode


@pytest.mark.parametrize("shape", DAMAGE)
def test_an_unreadable_episode_is_a_500_problem_naming_it_on_every_read(
    client: TestClient, engine: Engine, tokens: dict[str, str], shape: str
) -> None:
    episode = damaged(client, engine, tokens, shape)
    service = {"Authorization": tokens["service"]}
    assert sign_in(client, tokens["coordinator"]).status_code == 303
    event = {"type": "assessment", "data": {"vas_leg": 4, "odi": 30}}
    answers = [
        client.get(f"/episodes/{episode}", headers=service),
        client.post(f"/episodes/{episode}/events", json=event, headers=service),
        client.get(f"/episodes/{episode}/diagram.svg", headers=service),
        client.get(f"/pages/episodes/{episode}"),
    ]
    for answer in answers:
        assert answer.status_code == 500, answer.text
        assert answer.headers["content-type"] == MEDIA_TYPE
        problem = answer.json()
        schemas.Problem.model_validate(problem)
        assert problem["episode_id"] == episode
        assert episode in problem["detail"]
        assert problem["type"].endswith("/unreadable-episode")
    # The others are still served.
    other = client.post("/episodes", json=OPENING, headers=service).json()["id"]
    assert client.get(f"/episodes/{other}", headers=service).status_code == 200


def test_incidents_are_listed_counted_and_make_health_degraded(
    client: TestClient, engine: Engine, tokens: dict[str, str], clock: FakeClock
) -> None:
    episode = damaged(client, engine, tokens, "patient a JSON string")
    assert client.get("/healthz").status_code == 200
    clock.advance(timedelta(days=30))
    worker = Worker(EpisodeRepository(engine, PathwayDefaults()), clock)
    assert worker.sweep().failed == 1

    service = {"Authorization": tokens["service"]}
    listed = client.get("/incidents", headers=service)
    assert listed.status_code == 200, listed.text
    schemas.IncidentList.model_validate(listed.json())
    (incident,) = listed.json()["items"]
    assert (incident["kind"], incident["episode_id"]) == ("episode", episode)
    assert incident["error"] == "patient is not an object"
    assert incident["attempts"] == 1
    coordinator = {"Authorization": tokens["coordinator"]}
    assert client.get("/incidents", headers=coordinator).status_code == 403
    assert client.get("/incidents", params={"status": "nope"}, headers=service).status_code == 422

    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.json()
    schemas.Health.model_validate(body)
    assert (body["status"], body["open_incidents"]) == ("degraded", 1)
    assert episode not in health.text
    assert "P-31" not in health.text

    exposed = client.get("/metrics", headers=service).text
    assert 'carepath_open_incidents{kind="episode"} 1.0' in exposed
    assert (
        'carepath_failed_steps_total{kind="episode"} 1.0'
        in generate_latest(worker.metrics.registry).decode()
    )


def test_health_is_degraded_when_the_oldest_due_timer_waits_past_the_threshold(
    client: TestClient, tokens: dict[str, str], clock: FakeClock
) -> None:
    client.post("/episodes", json=OPENING, headers={"Authorization": tokens["service"]})
    clock.advance(timedelta(days=30))  # timers fell due; no worker has swept
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "degraded"
    assert body["open_incidents"] == 0
    assert body["timer_lag_seconds"] > body["lag_threshold_seconds"] == 300.0
    assert "the oldest due timer has waited" in body["reasons"][0]
