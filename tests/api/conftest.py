"""An API on a fresh database per test, with a token for every role."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.tokens import create_token, revoke_token
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from models.db import make_engine

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
            ("coordinator", "service", "auditor", "admin")}  # fmt: skip
    revoked_id, revoked = create_token(engine, "admin", "gone", NOW)
    revoke_token(engine, revoked_id, NOW)
    headers = {role: f"Bearer {token}" for role, (_, token) in made.items()}
    headers["revoked"] = f"Bearer {revoked}"
    headers["forged"] = "Bearer cp_not-a-token"
    return headers
