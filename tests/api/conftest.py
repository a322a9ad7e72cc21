"""An API on a fresh database per test, with a token for every role."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.tokens import create_token, revoke_token
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from models.db import make_engine
from models.repository import EpisodeRepository
from schedulers.worker import Worker
from tests.api.browser_kit import browser, served  # noqa: F401 - the browser tests' fixtures

NOW = datetime(2026, 1, 19, 10, tzinfo=UTC)  # onset 2026-01-05 + 14 days


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def client(engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(engine, clock, PathwayDefaults())) as client:
        yield client


@pytest.fixture
def tokens(engine: Engine) -> dict[str, str]:
    """A bearer header value per role, one revoked, and none."""
    made = {role: create_token(engine, role, f"{role}-1", NOW) for role in
            ("coordinator", "service", "auditor", "admin", "clinician")}  # fmt: skip
    revoked_id, revoked = create_token(engine, "admin", "gone", NOW)
    revoke_token(engine, revoked_id, NOW)
    headers = {role: f"Bearer {token}" for role, (_, token) in made.items()}
    headers["revoked"] = f"Bearer {revoked}"
    headers["forged"] = "Bearer cp_not-a-token"
    return headers


OPENING = {
    "patient": {"ref": "P-31", "age": 47},
    "onset": "2026-01-05",
    "enrolled_at": "2026-01-06T09:00:00Z",
    "coordinator": "coordinator-1",
}


@pytest.fixture
def late_referral(
    client: TestClient, tokens: dict[str, str], engine: Engine, clock: FakeClock
) -> str:
    """An episode whose 2-week referral for severe pain went unmade: escalated by now."""
    service = {"Authorization": tokens["service"]}
    episode = client.post("/episodes", json=OPENING, headers=service).json()["id"]
    severe = {"type": "assessment", "data": {"vas_leg": 9, "odi": 70, "severe_disabling": True}}
    answer = client.post(f"/episodes/{episode}/events", json=severe, headers=service)
    assert answer.status_code == 200, answer.text
    clock.set(clock.now() + timedelta(days=17))
    Worker(EpisodeRepository(engine, PathwayDefaults()), clock).sweep()
    return str(episode)
