"""Every read of episode data over HTTP is on record, before it is answered; auditors list it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api import schemas
from api.access import ACCESS_LOGGED
from api.app import create_app
from api.problems import MEDIA_TYPE
from api.tokens import create_token
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from models.access_log import AccessEntry
from models.access_reading import AccessFilter, page, verify_access_log
from tests.api.conftest import NOW, OPENING
from tests.api.page_forms import sign_in
from tests.models.test_access_writer import accept_inserts, refuse_inserts


def records(engine: Engine) -> list[dict[str, Any]]:
    return page(engine, AccessFilter(), 0, 1000)[0]


Read = tuple[httpx.Response, list[dict[str, Any]]]


@pytest.fixture
def call(client: TestClient, engine: Engine) -> Callable[..., Read]:
    """``client.get``, and the access-log rows that request added."""

    def get(url: str, **kwargs: Any) -> Read:
        before = len(records(engine))
        answer = client.get(url, **kwargs)
        return answer, records(engine)[before:]

    return get


def bearer(tokens: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": tokens[role]}


def test_each_read_route_records_who_read_which_episodes_through_which_route(
    client: TestClient,
    call: Callable[..., Read],
    engine: Engine,
    tokens: dict[str, str],
    late_referral: str,
    clock: FakeClock,
) -> None:
    episode = late_referral
    elsewhere = {**OPENING, "coordinator": "coordinator-2"}  # not on coordinator-1's lists
    service, coordinator = bearer(tokens, "service"), bearer(tokens, "coordinator")
    auditor = bearer(tokens, "auditor")
    others = [client.post("/episodes", json=elsewhere, headers=service).json()["id"] for _ in "ab"]
    _, feed = create_token(engine, "calendar", "coordinator-1", NOW)
    # The pages' cookie; the API calls carry a bearer.
    assert sign_in(client, tokens["coordinator"]).status_code == 303

    def one_read(read: Read, actor: str, role: str, route: str,
                 ids: list[str] | None, query: str | None = None) -> dict[str, Any]:  # fmt: skip
        answer, added = read
        assert answer.status_code == 200, answer.text
        (row,) = added
        expected = {"actor": actor, "role": role, "route": route, "outcome": "answered",
                    "episode_ids": ids, "episode_count": None if ids is None else len(ids),
                    "query": query, "recorded_at": clock.now().isoformat()}  # fmt: skip
        assert {key: row[key] for key in expected} == expected
        return row

    one_read(call(f"/episodes/{episode}", headers=service),
             "service-1", "service", "GET /episodes/{episode_id}", [episode])  # fmt: skip
    one_read(call(f"/episodes/{episode}/diagram.svg", headers=coordinator), "coordinator-1",
             "coordinator", "GET /episodes/{episode_id}/diagram.svg", [episode])  # fmt: skip

    listed = call("/episodes", params={"limit": 2}, headers=service)
    page_ids = [item["id"] for item in listed[0].json()["items"]]
    assert len(page_ids) == 2
    assert set(page_ids) <= {episode, *others}
    one_read(listed, "service-1", "service", "GET /episodes", page_ids, "limit=2")

    worklist = call("/worklist", headers=coordinator)
    assert {item["episode_id"] for item in worklist[0].json()["items"]} == {episode}
    one_read(worklist, "coordinator-1", "coordinator", "GET /worklist", [episode])

    one_read(call("/"), "coordinator-1", "coordinator", "GET /", [episode])
    one_read(call(f"/pages/episodes/{episode}"), "coordinator-1", "coordinator",
             "GET /pages/episodes/{episode_id}", [episode])  # fmt: skip
    client.post("/signout")

    # The feed's token is never recorded, whatever else the query holds.
    feed_read = one_read(call("/calendar/coordinator-1.ics", params={"token": feed, "x": "1"}),
                         "coordinator-1", "calendar", "GET /calendar/{coordinator}.ics",
                         [episode], "x=1")  # fmt: skip
    assert feed not in str(feed_read)
    # The route reads "%74oken" as "token" too: it is not kept either.
    spelt = one_read(call(f"/calendar/coordinator-1.ics?%74oken={feed}&x=%C3%A9"),
                     "coordinator-1", "calendar", "GET /calendar/{coordinator}.ics",
                     [episode], "x=%C3%A9")  # fmt: skip
    assert feed not in str(spelt)

    transitions = call("/audit/transitions", headers=auditor)
    shown = list(dict.fromkeys(row["episode_id"] for row in transitions[0].json()["items"]))
    assert set(shown) == {episode, *others}
    one_read(transitions, "auditor-1", "auditor", "GET /audit/transitions", shown)

    # An export covers what it streams: recorded by its query, or by the episode it names.
    one_read(call("/audit/export", params={"format": "csv"}, headers=auditor),
             "auditor-1", "auditor", "GET /audit/export", None, "format=csv")  # fmt: skip
    one_read(call("/audit/export", params={"episode": episode}, headers=auditor), "auditor-1",
             "auditor", "GET /audit/export", [episode], f"episode={episode}")  # fmt: skip

    # Reading the access log is recorded too: it shows whose episodes were read.
    so_far = records(engine)
    access = call("/audit/access", params={"episode": others[0]}, headers=auditor)
    items = access[0].json()["items"]
    # The reads that showed it, and the export that may have: nothing else.
    assert items == [row for row in so_far
                     if row["episode_ids"] is None or others[0] in row["episode_ids"]]  # fmt: skip
    assert [row["route"] for row in items if row["episode_ids"] is None] == ["GET /audit/export"]
    named = list(dict.fromkeys(i for row in items for i in row["episode_ids"] or ()))
    one_read(access, "auditor-1", "auditor", "GET /audit/access", named, f"episode={others[0]}")
    assert verify_access_log(engine).ok


def test_refused_reads_are_recorded_with_their_actor(
    call: Callable[..., Read], engine: Engine, tokens: dict[str, str]
) -> None:
    service, coordinator = bearer(tokens, "service"), bearer(tokens, "coordinator")
    _, feed = create_token(engine, "calendar", "coordinator-1", NOW)
    asked = {"coordinator": "coordinator-2"}
    cases = [
        (call("/episodes/no-such-episode", headers=service), 404,
         ("service-1", "service", "GET /episodes/{episode_id}", "not_found",
          ["no-such-episode"], None)),
        (call("/audit/access", headers=service), 403,
         ("service-1", "service", "GET /audit/access", "forbidden", [], None)),
        (call("/worklist", params=asked, headers=coordinator), 403,
         ("coordinator-1", "coordinator", "GET /worklist", "forbidden", [],
          "coordinator=coordinator-2")),
        (call("/calendar/coordinator-2.ics", params={"token": feed}), 403,
         ("coordinator-1", "calendar", "GET /calendar/{coordinator}.ics", "forbidden", [], None)),
        (call("/pages/episodes/some-episode", headers=service), 403,
         ("service-1", "service", "GET /pages/episodes/{episode_id}", "forbidden",
          ["some-episode"], None)),
    ]  # fmt: skip
    for (answer, added), status, expected in cases:
        assert answer.status_code == status, answer.text
        (row,) = added
        keys = ("actor", "role", "route", "outcome", "episode_ids", "query")
        assert tuple(row[k] for k in keys) == expected


def test_what_shows_nothing_or_has_no_actor_is_not_recorded(
    client: TestClient, engine: Engine, tokens: dict[str, str]
) -> None:
    service = bearer(tokens, "service")
    episode = client.post("/episodes", json=OPENING, headers=service).json()["id"]
    answers = [
        client.get(f"/episodes/{episode}"),  # 401: anyone could fill the log
        client.get(f"/episodes/{episode}", headers=bearer(tokens, "forged")),
        client.get(f"/episodes/{episode}", headers=bearer(tokens, "revoked")),
        client.get("/calendar/coordinator-1.ics", params={"token": "cp_wrong"}),
        client.get("/episodes", params={"limit": 0}, headers=service),  # 422
        client.get("/"),  # the sign-in page
        client.post(f"/episodes/{episode}/events", headers=service,
                    json={"type": "assessment", "data": {"vas_leg": 4, "odi": 30}}),  # a write
        client.get("/audit/verify", headers=bearer(tokens, "auditor")),  # shows no episode
        client.get("/healthz"),
    ]  # fmt: skip
    assert [a.status_code for a in answers] == [401, 401, 401, 401, 422, 200, 200, 200, 200]
    assert records(engine) == []


class AnswersSeen:
    """Around the app, as the server is: notes each answer as it starts to leave."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.answers: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def leaving(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.answers.append(scope["path"])
            await send(message)

        await self.app(scope, receive, leaving)


def test_each_read_is_on_record_before_its_answer_leaves(
    engine: Engine, clock: FakeClock, tokens: dict[str, str]
) -> None:
    app = create_app(engine, clock, PathwayDefaults())
    seen = AnswersSeen(app)
    writer = app.state.access_log
    committing, release = threading.Event(), threading.Event()
    answers_during_commit: list[list[str]] = []
    write = writer._write  # noqa: SLF001

    def slow_commit(entries: list[AccessEntry]) -> list[int]:
        committing.set()
        assert release.wait(10), "the test never let the commit go"
        return write(entries)  # type: ignore[no-any-return]

    with TestClient(seen) as client:
        service = bearer(tokens, "service")
        episode = client.post("/episodes", json=OPENING, headers=service).json()["id"]
        seen.answers.clear()
        writer._write = slow_commit  # noqa: SLF001
        with ThreadPoolExecutor(2) as pool:
            coordinator = bearer(tokens, "coordinator")
            reads = [pool.submit(client.get, f"/episodes/{episode}", headers=service),
                     pool.submit(client.get, "/worklist", headers=coordinator)]  # fmt: skip
            assert committing.wait(10)
            # The writer holds the batch: nothing may have left yet, nor be on record.
            answers_during_commit.append(list(seen.answers))
            assert records(engine) == []
            release.set()
            answers = [read.result(10) for read in reads]
    assert answers_during_commit == [[]]
    assert [a.status_code for a in answers] == [200, 200]
    # Each answer the client holds has its committed record (seen from another connection).
    assert sorted(row["route"] for row in records(engine)) == ["GET /episodes/{episode_id}",
                                                                 "GET /worklist"]  # fmt: skip


def test_a_read_that_cannot_be_recorded_is_answered_503_and_shows_nothing(
    client: TestClient,
    engine: Engine,
    tokens: dict[str, str],
    late_referral: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, auditor = bearer(tokens, "service"), bearer(tokens, "auditor")
    refuse_inserts(engine)
    answers = {
        "async route": client.get(f"/episodes/{late_referral}", headers=service),
        "sync route": client.get("/worklist", headers=bearer(tokens, "coordinator")),
        "streamed export": client.get("/audit/export", headers=auditor),
        "refusal": client.get("/episodes/no-such-episode", headers=service),
    }
    for name, answer in answers.items():
        assert answer.status_code == 503, name
        assert answer.headers["content-type"] == MEDIA_TYPE, name
        assert answer.headers["retry-after"] == "5", name
        assert answer.json()["type"].endswith("/access-log-unavailable"), name
        assert "access log" in answer.json()["detail"], name
        assert "no space left" not in answer.text, name  # the database's words stay inside
        assert late_referral not in answer.text, name
        schemas.Problem.model_validate(answer.json())
    # The operator is told why, once for the outage, not once per read.
    failures = [r for r in caplog.records if r.name == "carepath.access_log"]
    assert [r.getMessage() for r in failures] == [
        "access log not written, reads are refused: no space left on device"
    ]
    # Writes are audited in their own log and go on.
    assert client.post("/episodes", json=OPENING, headers=service).status_code == 201
    accept_inserts(engine)
    assert client.get(f"/episodes/{late_referral}", headers=service).status_code == 200
    assert [row["route"] for row in records(engine)] == ["GET /episodes/{episode_id}"]
    assert caplog.records[-1].getMessage() == "access log written again"


def test_many_concurrent_reads_are_each_recorded_once(
    client: TestClient, engine: Engine, tokens: dict[str, str]
) -> None:
    service = bearer(tokens, "service")
    episodes = [client.post("/episodes", json=OPENING, headers=service).json()["id"]
                for _ in range(4)]  # fmt: skip

    def read(n: int) -> tuple[int, str]:
        episode = episodes[n % 4]
        return client.get(f"/episodes/{episode}", headers=service).status_code, episode

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(read, range(160)))
    assert {status for status, _ in answers} == {200}
    rows = records(engine)
    assert len(rows) == 160
    assert sorted(row["episode_ids"][0] for row in rows) == sorted(e for _, e in answers)
    assert [row["seq"] for row in rows] == list(range(1, 161))
    assert verify_access_log(engine).ok


def test_auditors_list_the_access_log_by_time_actor_and_episode(
    client: TestClient, engine: Engine, tokens: dict[str, str], clock: FakeClock
) -> None:
    from datetime import timedelta

    service, auditor, admin = (bearer(tokens, r) for r in ("service", "auditor", "admin"))
    first, second = (client.post("/episodes", json=OPENING, headers=service).json()["id"]
                     for _ in range(2))  # fmt: skip
    client.get(f"/episodes/{first}", headers=service)
    clock.set(NOW + timedelta(hours=1))
    client.get(f"/episodes/{second}", headers=admin)

    def listed(**params: Any) -> list[tuple[str, list[str] | None]]:
        answer = client.get("/audit/access", params=params, headers=auditor)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        schemas.AccessPage.model_validate(body)
        return [(row["actor"], row["episode_ids"]) for row in body["items"]]

    assert listed(actor="service-1") == [("service-1", [first])]
    assert listed(episode=second) == [("admin-1", [second])]
    assert listed(since=(NOW + timedelta(minutes=30)).isoformat(), actor="admin-1") == [
        ("admin-1", [second])
    ]
    assert listed(until=(NOW + timedelta(minutes=30)).isoformat()) == [("service-1", [first])]
    page_one = client.get("/audit/access", params={"limit": 1}, headers=auditor).json()
    assert page_one["next_cursor"] == 1
    after = client.get("/audit/access", params={"cursor": 1, "limit": 1}, headers=auditor).json()
    assert [row["seq"] for row in after["items"]] == [2]

    for params, field in (({"since": "2026-01-19"}, "since"),
                          ({"until": "2026-01-19T10:00:00"}, "until"),
                          ({"limit": 5000}, "limit")):  # fmt: skip
        answer = client.get("/audit/access", params=params, headers=auditor)
        assert answer.status_code == 422, params
        assert answer.json()["field"] == field
    assert client.get("/audit/access", headers=bearer(tokens, "coordinator")).status_code == 403

    check = client.get("/audit/access/verify", headers=auditor)
    schemas.LogCheck.model_validate(check.json())
    assert check.json()["ok"] is True
    assert check.json()["rows_checked"] == len(records(engine))


def test_every_route_that_shows_episode_data_is_access_logged(client: TestClient) -> None:
    shows_nothing = {"/healthz", "/metrics", "/audit/verify", "/audit/access/verify",
                     "/signin/link/{code}",
                     "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}  # fmt: skip
    unmarked = [
        route.path
        for route in client.app.routes  # type: ignore[attr-defined]
        if "GET" in getattr(route, "methods", ())
        and route.path not in shows_nothing
        and getattr(route, "openapi_extra", None) != ACCESS_LOGGED
    ]
    assert unmarked == []
    spec = client.get("/openapi.json").json()
    assert "x-carepath-access-log" in spec["paths"]["/episodes/{episode_id}"]["get"]
