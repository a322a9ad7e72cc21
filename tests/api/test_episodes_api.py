"""The episode API: roles on every route, problem+json errors, optimistic concurrency."""

from __future__ import annotations

import threading
from typing import Any
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from models.audit import verify_chain
from models.db import make_session_factory
from models.tables import AuditEntry, ClinicalEventRow
from models.teams import add_member
from tests.api.conftest import NOW

OPENING = {
    "patient": {"ref": "P-17", "age": 52, "sex": "female"},
    "onset": "2026-01-05",
    "enrolled_at": "2026-01-06T09:00:00Z",
    "coordinator": "alex",
}
ASSESSMENT = {"type": "assessment", "data": {"vas_leg": 6, "odi": 40}}


@pytest.fixture(autouse=True)
def care_team(engine: Engine) -> None:
    """The coordinator's token holder works in alex's team, so alex's patients are theirs
    to see (a coordinator outside it is refused: tests/api/test_care_team.py)."""
    for name in ("alex", "coordinator-1"):
        add_member(engine, "spine", name, None, NOW)


def auth(tokens: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": tokens[role]} if role in tokens else {}


def opened(client: TestClient, tokens: dict[str, str], **changes: Any) -> dict[str, Any]:
    answer = client.post("/episodes", json={**OPENING, **changes}, headers=auth(tokens, "service"))
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


ROUTES = [
    ("POST", "/episodes", OPENING),
    ("GET", "/episodes/{id}", None),
    ("GET", "/episodes/{id}/diagram.svg", None),
    ("GET", "/episodes", None),
    ("POST", "/episodes/{id}/events", ASSESSMENT),
    ("GET", "/metrics", None),
    ("GET", "/incidents", None),
]
ALLOWED = {
    "/episodes": {"coordinator", "clinician", "service", "admin"},
    "/episodes/{id}": {"coordinator", "clinician", "service", "admin"},
    "/episodes/{id}/diagram.svg": {"coordinator", "clinician", "service", "admin"},
    "/episodes/{id}/events": {"coordinator", "clinician", "service", "admin"},
    "/metrics": {"service", "admin"},
    "/incidents": {"service", "admin"},
}


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=lambda v: str(v)[:24])
@pytest.mark.parametrize(
    "role", ["coordinator", "clinician", "service", "auditor", "admin", "revoked", "forged",
             "none"]
)
def test_every_route_admits_its_roles_and_no_one_else(
    client: TestClient, tokens: dict[str, str], method: str, path: str, body: Any, role: str
) -> None:
    episode = opened(client, tokens)
    answer = client.request(
        method, path.format(id=episode["id"]), json=body, headers=auth(tokens, role)
    )
    if role in ("revoked", "forged", "none"):
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    elif role in ALLOWED[path]:
        assert answer.status_code in (200, 201), answer.text
    else:
        assert answer.status_code == 403
        assert answer.headers["content-type"] == "application/problem+json"


def test_health_answers_without_a_token(client: TestClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok", "database": "ok", "timer_lag_seconds": 0.0, "open_incidents": 0,
        "lag_threshold_seconds": 300.0, "reasons": [],
    }  # fmt: skip


def test_an_episode_is_opened_read_and_moved_by_an_event(
    client: TestClient, tokens: dict[str, str], engine: Engine
) -> None:
    episode = opened(client, tokens)
    assert episode["phase"] == "acute"
    read = client.get(f"/episodes/{episode['id']}", headers=auth(tokens, "coordinator"))
    # The view as opened, with its timeline: the opening so far.
    timeline = read.json().pop("timeline")
    assert read.json() == {**episode, "timeline": timeline, "timeline_next_cursor": None}
    assert [(s["trigger"], s["actor"]) for s in timeline] == [("open", "service-1")]
    assert read.headers["etag"] == '"1"'
    forged = {**ASSESSMENT, "actor": "dr.someone-else"}
    answer = client.post(
        f"/episodes/{episode['id']}/events", json=forged, headers=auth(tokens, "coordinator")
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["transition"]["accepted"] is True
    assert body["episode"]["version"] == 2
    with engine.connect() as connection:
        actors = set(connection.scalars(select(ClinicalEventRow.actor)))
        audit_actors = set(connection.scalars(select(AuditEntry.actor)))
    assert actors == {"coordinator-1"}  # the token's subject, not the body's claim
    assert audit_actors == {"service-1", "coordinator-1"}


def test_a_refusal_is_a_409_problem_with_rules_override_and_date(
    client: TestClient, tokens: dict[str, str]
) -> None:
    episode = opened(client, tokens)
    answer = client.post(
        f"/episodes/{episode['id']}/events",
        json={"type": "order", "data": {"kind": "mri"}},
        headers=auth(tokens, "service"),
    )
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert "IMG-NO-EARLY" in problem["rules"]
    assert problem["override_possible"] is True
    assert problem["eligible_from"] == "2026-02-16"
    assert problem["status"] == 409


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "assessment", "data": {"vas_leg": 14}}, "data.vas_leg"),
        ({"type": "teleport", "data": {}}, "type"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_and_changes_nothing(
    client: TestClient, tokens: dict[str, str], event: dict[str, Any], field: str
) -> None:
    episode = opened(client, tokens)
    answer = client.post(
        f"/episodes/{episode['id']}/events", json=event, headers=auth(tokens, "service")
    )
    assert answer.status_code == 422
    assert answer.json()["field"] == field
    after = client.get(f"/episodes/{episode['id']}", headers=auth(tokens, "service")).json()
    assert [step["type"] for step in after.pop("timeline")] == ["open"]  # nothing recorded
    assert after == {**episode, "timeline_next_cursor": None}


def test_a_stale_if_match_is_412_and_a_missing_episode_404(
    client: TestClient, tokens: dict[str, str]
) -> None:
    episode = opened(client, tokens)
    url = f"/episodes/{episode['id']}/events"
    stale = client.post(
        url, json=ASSESSMENT, headers={**auth(tokens, "service"), "If-Match": '"7"'}
    )
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 1
    garbage = client.post(
        url, json=ASSESSMENT, headers={**auth(tokens, "service"), "If-Match": "x"}
    )
    assert (garbage.status_code, garbage.json()["field"]) == (422, "If-Match")
    fresh = client.post(
        url, json=ASSESSMENT, headers={**auth(tokens, "service"), "If-Match": '"1"'}
    )
    assert fresh.status_code == 200
    missing = client.get("/episodes/no-such-episode", headers=auth(tokens, "service"))
    assert missing.status_code == 404


def test_episodes_are_listed_by_filter_a_page_at_a_time(
    client: TestClient, tokens: dict[str, str]
) -> None:
    mine = {opened(client, tokens)["id"] for _ in range(5)}
    opened(client, tokens, coordinator="sam")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"coordinator": "alex", "phase": "acute", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/episodes", params=params, headers=auth(tokens, "service")).json()
        seen += [item["id"] for item in page["items"]]
        assert len(page["items"]) <= 2
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(mine)
    flagged = client.get("/episodes", params={"red_flag": True}, headers=auth(tokens, "service"))
    assert flagged.json() == {"items": [], "next_cursor": None}
    bad = client.get("/episodes", params={"cursor": "%%%"}, headers=auth(tokens, "service"))
    assert (bad.status_code, bad.json()["field"]) == (422, "cursor")


def test_concurrent_events_are_each_applied_or_refused_none_lost(
    client: TestClient, tokens: dict[str, str], engine: Engine
) -> None:
    episode = opened(client, tokens)
    url = f"/episodes/{episode['id']}/events"
    answers: list[int] = []

    def post(headers: dict[str, str]) -> None:
        answers.append(client.post(url, json=ASSESSMENT, headers=headers).status_code)

    def together(headers: dict[str, str]) -> None:
        threads = [threading.Thread(target=post, args=(headers,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Eight writers who all read version 1: one wins, seven are told the episode moved.
    together({**auth(tokens, "service"), "If-Match": '"1"'})
    # Eight more without If-Match: all applied, one after the other.
    together(auth(tokens, "service"))
    assert sorted(answers).count(412) == 7
    assert answers.count(200) == 9
    final = client.get(f"/episodes/{episode['id']}", headers=auth(tokens, "service")).json()
    assert final["version"] == 10
    with make_session_factory(engine)() as session:
        assert verify_chain(session).ok


def test_the_diagram_highlights_this_episodes_active_states(
    client: TestClient, tokens: dict[str, str]
) -> None:
    episode = opened(client, tokens)
    answer = client.get(f"/episodes/{episode['id']}/diagram.svg", headers=auth(tokens, "service"))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/svg+xml"
    svg = "{http://www.w3.org/2000/svg}"
    root = ElementTree.fromstring(answer.text)
    active = {
        group.findtext(f"{svg}title", "").removeprefix("cluster_")
        for group in root.iter(f"{svg}g")
        if "active" in (group.get("class") or "")
    }
    assert active == set(episode["configuration"])
    assert {"acute", "conservative", "not_indicated"} <= active
    assert "chronic" not in active


@pytest.mark.parametrize(
    ("event", "coordinator_may"),
    [
        ({"type": "order", "data": {"kind": "mri"}}, False),
        ({"type": "red_flag", "data": {"kind": "progressive_deficit"}}, True),
        ({"type": "referral_sent", "data": {"service": "spine clinic"}}, True),
        ({"type": "assessment", "data": {"vas_leg": 6, "odi": 40}}, True),
        ({"type": "order", "data": {"kind": "mri", "override_reason": "radiologist advised"}},
         False),
    ],
)  # fmt: skip
def test_orders_overrides_and_red_flag_decisions_are_a_clinicians(
    client: TestClient, tokens: dict[str, str], event: dict[str, Any], coordinator_may: bool
) -> None:
    episode = opened(client, tokens)["id"]
    by_coordinator = client.post(f"/episodes/{episode}/events", json=event,
                                 headers=auth(tokens, "coordinator"))  # fmt: skip
    if coordinator_may:
        assert by_coordinator.status_code in (200, 409), by_coordinator.text
    else:
        assert by_coordinator.status_code == 403
        assert "a clinician's decision" in by_coordinator.json()["detail"]
        timeline = client.get(f"/episodes/{episode}", headers=auth(tokens, "service")).json()
        assert len(timeline["timeline"]) == 1  # nothing recorded: the opening only
    by_clinician = client.post(f"/episodes/{episode}/events", json=event,
                               headers=auth(tokens, "clinician"))  # fmt: skip
    assert by_clinician.status_code in (200, 409), by_clinician.text  # decided by the rules


def test_clearing_a_red_flag_is_a_clinicians_decision(
    client: TestClient, tokens: dict[str, str]
) -> None:
    episode = opened(client, tokens)["id"]
    raised = {"type": "red_flag", "data": {"kind": "progressive_deficit"}}
    assert client.post(f"/episodes/{episode}/events", json=raised,
                       headers=auth(tokens, "coordinator")).status_code == 200  # fmt: skip
    cleared = {"type": "red_flag_cleared", "data": {"kind": "progressive_deficit"}}
    url = f"/episodes/{episode}/events"
    assert client.post(url, json=cleared, headers=auth(tokens, "coordinator")).status_code == 403
    view = client.get(f"/episodes/{episode}", headers=auth(tokens, "service")).json()
    assert view["red_flag"] is not None  # the colleague's urgent work-up stays
    answer = client.post(url, json=cleared, headers=auth(tokens, "clinician"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["episode"]["red_flag"] is None
