"""A running service remembers a live token briefly; revoking it takes effect within that."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.tokens import Tokens, create_token, revoke_token
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from tests.api.conftest import NOW


class Ticks:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_token_stops_working_once_its_cache_time_is_up(engine: Engine) -> None:
    ticks = Ticks()
    tokens = Tokens(engine, cache_seconds=5, monotonic=ticks)
    token_id, token = create_token(engine, "service", "lab", NOW)
    assert tokens.principal(token) == tokens.remembered(token)
    assert tokens.remembered(token) is not None
    revoke_token(engine, token_id, NOW)
    ticks.now += 4.9
    assert tokens.principal(token) is not None  # still remembered
    ticks.now += 0.2
    assert tokens.remembered(token) is None
    assert tokens.principal(token) is None


def test_unknown_tokens_are_not_remembered(engine: Engine) -> None:
    tokens = Tokens(engine, cache_seconds=5, monotonic=Ticks())
    assert tokens.principal("cp_unknown") is None
    assert tokens.remembered("cp_unknown") is None


def test_without_a_cache_revocation_is_immediate(engine: Engine) -> None:
    tokens = Tokens(engine)
    token_id, token = create_token(engine, "auditor", "ann", NOW)
    assert tokens.principal(token) is not None
    assert tokens.remembered(token) is None
    revoke_token(engine, token_id, NOW)
    assert tokens.principal(token) is None


def test_a_negative_cache_time_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="cache_seconds"):
        Tokens(engine, cache_seconds=-1)


def test_the_service_answers_a_remembered_token_without_the_database(engine: Engine) -> None:
    app = create_app(engine, FakeClock(NOW), PathwayDefaults(), token_cache_seconds=60)
    token_id, token = create_token(engine, "auditor", "ann", NOW)
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/audit/verify", headers=headers).status_code == 200
        revoke_token(engine, token_id, NOW)
        # Remembered for a minute: still admitted, and still held to its role.
        assert client.get("/audit/verify", headers=headers).status_code == 200
        assert client.get("/episodes", headers=headers).status_code == 403
