"""Safe writes (CONTRACT.md section 8): idempotency keys on every write, and a request
that waited too long for a lock answered 503 with Retry-After and never applied later."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from api.app import create_app
from engine.clinic_time import FakeClock
from engine.events import parse_event, parse_opening
from engine.settings import PathwayDefaults
from models.db import make_engine, read_only
from models.idempotency import Answer, KeyedWrite, Replayed, request_digest
from models.repository import EpisodeRepository
from models.tables import AuditEntry, ClinicalEventRow, Episode, IdempotencyKey
from models.timeouts import DatabaseTimeouts
from schedulers.logs import JsonFormatter
from tests.api.conftest import NOW, OPENING

ASSESSMENT = {"type": "assessment", "data": {"vas_leg": 6, "odi": 40}}
MRI = {"type": "order", "data": {"kind": "mri"}}


def count(engine: Engine, table: Any) -> int:
    with read_only(engine) as connection:
        return int(connection.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def service(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": tokens["service"]}


@pytest.fixture
def episode(client: TestClient, service: dict[str, str]) -> str:
    answer = client.post("/episodes", json=OPENING, headers=service)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


# --------------------------------------------------------------------------------------------
# Idempotency keys


def test_a_retried_event_is_answered_from_the_first_and_applied_once(
    client: TestClient, service: dict[str, str], episode: str, engine: Engine
) -> None:
    events, audit = count(engine, ClinicalEventRow), count(engine, AuditEntry)
    path = f"/episodes/{episode}/events"
    first = client.post(path, json=ASSESSMENT, headers=keyed(service, "visit-7f3a"))
    again = client.post(path, json=ASSESSMENT, headers=keyed(service, "visit-7f3a"))
    assert first.status_code == again.status_code == 200
    assert again.content == first.content  # the very bytes
    assert again.headers["etag"] == first.headers["etag"] == '"2"'
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert count(engine, ClinicalEventRow) == events + 1
    assert count(engine, AuditEntry) == audit + 1
    # The same JSON spelt otherwise is the same request.
    spelt = json.dumps({"data": {"odi": 40, "vas_leg": 6}, "type": "assessment"}, indent=2)
    as_json = {**keyed(service, "visit-7f3a"), "Content-Type": "application/json"}
    third = client.post(path, content=spelt, headers=as_json)
    assert third.content == first.content
    assert count(engine, ClinicalEventRow) == events + 1


def test_the_same_key_with_another_body_is_422_naming_the_header(
    client: TestClient, service: dict[str, str], episode: str, engine: Engine
) -> None:
    path = f"/episodes/{episode}/events"
    assert client.post(path, json=ASSESSMENT, headers=keyed(service, "k-1")).status_code == 200
    other = {"type": "assessment", "data": {"vas_leg": 2, "odi": 10}}
    answer = client.post(path, json=other, headers=keyed(service, "k-1"))
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"] == "Idempotency-Key"
    assert count(engine, ClinicalEventRow) == 1


def test_a_refusal_is_an_answer_and_is_replayed_without_a_second_audit_row(
    client: TestClient, service: dict[str, str], episode: str, engine: Engine
) -> None:
    path = f"/episodes/{episode}/events"
    first = client.post(path, json=MRI, headers=keyed(service, "mri-order-1"))
    audit = count(engine, AuditEntry)
    again = client.post(path, json=MRI, headers=keyed(service, "mri-order-1"))
    assert first.status_code == again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["rules"] == ["IMG-NO-EARLY"]
    assert again.content == first.content
    assert count(engine, AuditEntry) == audit  # the refusal was recorded once


def test_an_answer_that_changed_nothing_is_not_stored(
    client: TestClient, service: dict[str, str], episode: str, engine: Engine
) -> None:
    path = f"/episodes/{episode}/events"
    bad = {"type": "assessment", "data": {"vas_leg": 14, "odi": 40}}
    assert client.post(path, json=bad, headers=keyed(service, "fix-me")).status_code == 422
    stale = client.post(path, json=ASSESSMENT, headers={**keyed(service, "fix-me"),
                                                         "If-Match": '"9"'})  # fmt: skip
    assert stale.status_code == 412
    missing = client.post("/episodes/nope/events", json=ASSESSMENT,
                          headers=keyed(service, "fix-me"))  # fmt: skip
    assert missing.status_code == 404
    assert count(engine, IdempotencyKey) == 0
    corrected = client.post(path, json=ASSESSMENT, headers=keyed(service, "fix-me"))
    assert corrected.status_code == 200  # the key was free: nothing had been done with it
    assert count(engine, ClinicalEventRow) == 1


def test_a_replay_is_answered_before_if_match_sees_the_version_it_moved(
    client: TestClient, service: dict[str, str], episode: str
) -> None:
    path = f"/episodes/{episode}/events"
    headers = {**keyed(service, "with-version"), "If-Match": '"1"'}
    assert client.post(path, json=ASSESSMENT, headers=headers).status_code == 200
    again = client.post(path, json=ASSESSMENT, headers=headers)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"


def test_keys_belong_to_their_caller(
    client: TestClient, tokens: dict[str, str], service: dict[str, str], episode: str,
    engine: Engine,
) -> None:  # fmt: skip
    path = f"/episodes/{episode}/events"
    coordinator = {"Authorization": tokens["coordinator"]}
    assert client.post(path, json=ASSESSMENT, headers=keyed(service, "shared")).status_code == 200
    other = client.post(path, json=ASSESSMENT, headers=keyed(coordinator, "shared"))
    assert other.status_code == 200
    assert "idempotent-replayed" not in other.headers
    assert count(engine, ClinicalEventRow) == 2


def test_an_enrolment_retried_with_its_key_opens_one_episode(
    client: TestClient, service: dict[str, str], engine: Engine
) -> None:
    before = count(engine, Episode)
    first = client.post("/episodes", json=OPENING, headers=keyed(service, '"8e03978e-40d5"'))
    again = client.post("/episodes", json=OPENING, headers=keyed(service, "8e03978e-40d5"))
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    location = f"/episodes/{first.json()['id']}"
    assert again.headers["location"] == first.headers["location"] == location
    assert count(engine, Episode) == before + 1


def test_task_actions_take_keys_too(
    client: TestClient, tokens: dict[str, str], late_referral: str, engine: Engine
) -> None:
    admin = {"Authorization": tokens["admin"]}
    routine = {"coordinator": "coordinator-1", "window": "60d", "severity": "routine"}
    items = client.get("/worklist", params=routine, headers=admin)
    task = items.json()["items"][0]["task_id"]
    for action in ("ack", "done"):
        first = client.post(f"/tasks/{task}/{action}", headers=keyed(admin, f"{action}-1"))
        audit = count(engine, AuditEntry)
        again = client.post(f"/tasks/{task}/{action}", headers=keyed(admin, f"{action}-1"))
        assert first.status_code == again.status_code == 200, again.text
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert count(engine, AuditEntry) == audit
    # Done without its key on an item already done: refused, as before.
    assert client.post(f"/tasks/{task}/done", headers=admin).status_code == 422


@pytest.mark.parametrize(
    "key", ["", "   ", "a" * 129, "has space", "naïve", 'quote"inside', "tab\there"]
)
def test_a_malformed_key_is_422_naming_the_header(
    client: TestClient, service: dict[str, str], episode: str, key: str
) -> None:
    headers: dict[str, Any] = {**service, "Idempotency-Key": key.encode()}
    answer = client.post(f"/episodes/{episode}/events", json=ASSESSMENT, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["field"] == "Idempotency-Key"


def test_keys_are_kept_a_day_then_purged_by_later_writes(
    client: TestClient, service: dict[str, str], episode: str, engine: Engine, clock: FakeClock
) -> None:
    path = f"/episodes/{episode}/events"
    first = client.post(path, json=ASSESSMENT, headers=keyed(service, "day-old"))
    clock.set(clock.now() + timedelta(hours=23, minutes=59))
    kept = client.post(path, json=ASSESSMENT, headers=keyed(service, "day-old"))
    assert kept.content == first.content  # still answered from the first
    clock.set(clock.now() + timedelta(hours=1))
    other = {"type": "assessment", "data": {"vas_leg": 5, "odi": 35}}
    assert client.post(path, json=other, headers=keyed(service, "next")).status_code == 200
    with read_only(engine) as connection:
        keys = set(connection.scalars(select(IdempotencyKey.key)))
    assert keys == {"next"}  # the day-old key was purged by the write after it expired


# --------------------------------------------------------------------------------------------
# Concurrent requests with one key


def test_concurrent_requests_with_one_key_apply_once(engine: Engine) -> None:
    """The second waits for the first (PostgreSQL on the key's unique index, SQLite for the
    write lock) and is answered with the first's answer."""
    repo = EpisodeRepository(engine, PathwayDefaults())
    episode = repo.open(parse_opening(OPENING), NOW)["id"]
    route = "POST /episodes/{episode_id}/events"
    digest = request_digest("POST", route, {"episode_id": episode}, ASSESSMENT)
    inside, release = threading.Event(), threading.Event()

    def respond(result: tuple[Any, dict[str, Any]]) -> Answer:
        inside.set()
        assert release.wait(30)  # the first holds its transaction open here
        return Answer(200, json.dumps({"version": result[1]["version"]}), {})

    outcomes: dict[str, Any] = {}

    def send(name: str) -> None:
        key = KeyedWrite("service-1", route, "same", digest, respond)
        try:
            step = repo.apply_parsed(episode, parse_event(ASSESSMENT), NOW, keyed=key)
            outcomes[name] = step[1]["version"]
        except Replayed as exc:
            outcomes[name] = ("replayed", exc.answer.body)

    first = threading.Thread(target=send, args=("first",))
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=send, args=("second",))
    second.start()
    if engine.dialect.name == "postgresql":
        waiting_on_a_lock(engine)
    release.set()
    first.join(30)
    second.join(30)
    assert outcomes == {"first": 2, "second": ("replayed", '{"version": 2}')}
    assert count(engine, ClinicalEventRow) == 1


def waiting_on_a_lock(engine: Engine) -> None:
    """Poll until another session of this database waits on a lock."""
    deadline = time.monotonic() + 30
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    while True:
        with read_only(engine) as connection:
            if connection.scalar(query):
                return
        assert time.monotonic() < deadline, "the second request never waited"
        time.sleep(0.01)


# --------------------------------------------------------------------------------------------
# A lock held elsewhere: 503 with Retry-After, and nothing applied afterwards


@pytest.fixture
def impatient(db_url: str, clock: FakeClock) -> Iterator[tuple[TestClient, Engine]]:
    engine = make_engine(db_url, timeouts=DatabaseTimeouts(db_lock_timeout_ms=200,
                                                           sqlite_busy_timeout_ms=200))  # fmt: skip
    with TestClient(create_app(engine, clock, PathwayDefaults())) as client:
        yield client, engine
    engine.dispose()


@pytest.fixture
def api_log() -> Iterator[io.StringIO]:
    """What the API logs, as its JSON lines."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("carepath.api")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def test_a_row_lock_held_from_another_connection_makes_a_post_time_out_with_503(
    impatient: tuple[TestClient, Engine], service: dict[str, str], db_url: str,
    api_log: io.StringIO,
) -> None:  # fmt: skip
    client, engine = impatient
    episode = client.post("/episodes", json=OPENING, headers=service).json()["id"]
    events, audit = count(engine, ClinicalEventRow), count(engine, AuditEntry)
    holding = make_engine(db_url)
    holder = holding.raw_connection()
    try:
        cursor = holder.cursor()
        if engine.dialect.name == "sqlite":
            holder.driver_connection.isolation_level = None  # type: ignore[union-attr]
            cursor.execute("BEGIN IMMEDIATE")
        else:
            cursor.execute("SELECT id FROM episode WHERE id = %s FOR UPDATE", (episode,))
        answer = client.post(f"/episodes/{episode}/events", json=ASSESSMENT,
                             headers=keyed(service, "during-the-lock"))  # fmt: skip
    finally:
        holder.rollback()
        holder.close()
        holding.dispose()
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert int(answer.headers["retry-after"]) >= 1
    assert "nothing was applied" in answer.json()["detail"]
    logged = [json.loads(line) for line in api_log.getvalue().splitlines()]
    assert [(e["msg"], e["route"], e["maybe_applied"]) for e in logged] == [
        ("database did not answer in time", "/episodes/{episode_id}/events", False)
    ]
    # The lock is gone: nothing of the timed-out request was applied, then or since.
    assert count(engine, ClinicalEventRow) == events
    assert count(engine, AuditEntry) == audit
    assert client.get(f"/episodes/{episode}", headers=service).json()["version"] == 1
    # Retried with its key, it is done now, once.
    retried = client.post(f"/episodes/{episode}/events", json=ASSESSMENT,
                          headers=keyed(service, "during-the-lock"))  # fmt: skip
    assert retried.status_code == 200
    assert count(engine, ClinicalEventRow) == events + 1
