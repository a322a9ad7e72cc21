"""A stalled PostgreSQL (every process of a private cluster stopped): requests answer 503
with Retry-After within the client's limit instead of hanging, a step answered 503 before
its COMMIT went out is not applied when the database resumes, and one caught after its
COMMIT went out (outcome unknown) is answered from the first by a retry with its key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from api.app import create_app
from api.tokens import create_token
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from models import store
from models.db import make_engine, read_only, upgrade
from models.statements import Cursor
from models.tables import ClinicalEventRow
from models.timeouts import DatabaseTimeouts
from tests.api.conftest import NOW, OPENING
from tests.models.private_cluster import PrivateCluster, private_cluster

pytestmark = pytest.mark.postgres
ASSESSMENT = {"type": "assessment", "data": {"vas_leg": 6, "odi": 40}}
LIMITS = DatabaseTimeouts(db_client_timeout_ms=1000)


@pytest.fixture
def stalled_api() -> Iterator[tuple[PrivateCluster, TestClient, Engine, dict[str, str]]]:
    with private_cluster() as cluster:
        upgrade(cluster.url)
        engine = make_engine(cluster.url, timeouts=LIMITS)
        _, token = create_token(engine, "service", "lab", NOW)
        # Tokens are remembered, as `carepath serve` does: the requests below reach their
        # step even while the database does not answer.
        app = create_app(engine, FakeClock(NOW), PathwayDefaults(), token_cache_seconds=600)
        with TestClient(app) as client:
            yield cluster, client, engine, {"Authorization": f"Bearer {token}"}
        engine.dispose()


def events(engine: Engine) -> int:
    with read_only(engine) as connection:
        return int(connection.scalar(select(func.count()).select_from(ClinicalEventRow)) or 0)


def settled(cluster: PrivateCluster, engine: Engine) -> None:
    """Wait until the server has dealt with, and ended, every connection the client gave
    up on (the API's pool is emptied first, so no other session remains)."""
    engine.dispose()
    probe = make_engine(cluster.url)
    deadline = time.monotonic() + 30
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        "AND pid <> pg_backend_pid()"
    )
    try:
        while True:
            with read_only(probe) as connection:
                if connection.scalar(query) == 0:
                    return
            assert time.monotonic() < deadline, "an abandoned connection never ended"
            time.sleep(0.05)
    finally:
        probe.dispose()


def test_requests_to_a_stalled_database_answer_503_and_apply_nothing_later(
    stalled_api: tuple[PrivateCluster, TestClient, Engine, dict[str, str]],
) -> None:
    cluster, client, engine, service = stalled_api
    episode = client.post("/episodes", json=OPENING, headers=service).json()["id"]
    path = f"/episodes/{episode}/events"
    assert client.get(f"/episodes/{episode}", headers=service).status_code == 200
    cluster.stall()
    try:
        began = time.monotonic()
        posted = client.post(path, json=ASSESSMENT, headers=service)
        read = client.get(f"/episodes/{episode}", headers=service)
        listed = client.get("/episodes", headers=service)
        waited = time.monotonic() - began
    finally:
        cluster.resume()
    for answer in (posted, read, listed):
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["retry-after"]
    assert "nothing was applied" in posted.json()["detail"]
    assert waited < 20  # three requests, each bounded by the 1 s limit, none by the stall
    settled(cluster, engine)
    assert events(engine) == 0
    assert client.get(f"/episodes/{episode}", headers=service).json()["version"] == 1


class StallAfterCommit(Cursor):
    """The step's cursor; the database stalls the moment COMMIT has been handed over."""

    cluster: PrivateCluster | None = None

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        writer = self.writer

        class Writer:
            def __getattr__(self, name: str) -> Any:
                return getattr(writer, name)

            def execute(self, sql: str, *args: Any) -> Any:
                result = writer.execute(sql, *args)
                if sql == "COMMIT" and StallAfterCommit.cluster is not None:
                    StallAfterCommit.cluster.stall()
                    StallAfterCommit.cluster = None
                return result

        self.writer = Writer()


def test_a_retry_after_a_timeout_with_unknown_outcome_gets_the_first_answer(
    stalled_api: tuple[PrivateCluster, TestClient, Engine, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster, client, engine, service = stalled_api
    episode = client.post("/episodes", json=OPENING, headers=service).json()["id"]
    path = f"/episodes/{episode}/events"
    keyed = {**service, "Idempotency-Key": "visit-2026-01-19"}
    monkeypatch.setattr(store, "Cursor", StallAfterCommit)
    StallAfterCommit.cluster = cluster
    try:
        lost = client.post(path, json=ASSESSMENT, headers=keyed)
    finally:
        cluster.resume()
    monkeypatch.undo()
    assert lost.status_code == 503
    detail = lost.json()["detail"]
    assert "outcome is unknown" in detail
    assert "same Idempotency-Key" in detail
    settled(cluster, engine)
    assert events(engine) == 1  # the COMMIT was on its way: the database applied it
    retried = client.post(path, json=ASSESSMENT, headers=keyed)
    assert retried.status_code == 200
    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.json()["episode"]["version"] == 2
    assert events(engine) == 1  # and never twice
