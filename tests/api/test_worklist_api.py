"""The coordinator's worklist: escalations on top, acknowledge, done; their own list only."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from models.tables import AuditEntry


def items(client: TestClient, tokens: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = client.get(
        "/worklist", params=params, headers={"Authorization": tokens["coordinator"]}
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def test_escalations_come_first_and_ack_and_done_work(
    client: TestClient, tokens: dict[str, str], late_referral: str, engine: Engine
) -> None:
    listed = items(client, tokens)
    assert (listed[0]["key"], listed[0]["status"]) == ("referral", "escalated")
    assert listed[0]["patient_ref"] == "P-31"
    coordinator = {"Authorization": tokens["coordinator"]}

    top = listed[0]["task_id"]
    assert client.post(f"/tasks/{top}/ack", headers=coordinator).status_code == 200
    assert items(client, tokens)[0]["acknowledged"] is True

    # A referral item is not done while the referral is still to be made: nothing changes.
    without = client.post(f"/tasks/{top}/done", headers=coordinator)
    assert (without.status_code, without.json()["field"]) == (422, "outcome")
    pending = client.post(f"/tasks/{top}/done", json={"outcome": "phoned the spine clinic"},
                          headers=coordinator)  # fmt: skip
    assert pending.status_code == 409, pending.text
    assert "still overdue" in pending.json()["detail"]
    assert "referral_sent" in pending.json()["detail"]
    assert items(client, tokens)[0]["task_id"] == top  # still on the list, escalated
    with engine.connect() as connection:
        assert connection.execute(
            select(AuditEntry.seq).where(AuditEntry.type == "task_done")
        ).all() == []
    # Recording the referral closes the item.
    sent = {"type": "referral_sent", "data": {"service": "spine clinic"}}
    service = {"Authorization": tokens["service"]}
    assert client.post(f"/episodes/{late_referral}/events", json=sent,
                       headers=service).status_code == 200  # fmt: skip
    assert "referral" not in [i["key"] for i in items(client, tokens)]

    routine = items(client, tokens, window="60d", severity="routine")[0]
    done = client.post(f"/tasks/{routine['task_id']}/done", headers=coordinator)
    assert done.status_code == 200, done.text
    due = {d["key"]: d["status"] for d in done.json()["episode"]["due"]}
    assert due[routine["key"]] == "done"
    with engine.connect() as connection:
        audited = connection.execute(
            select(AuditEntry.actor, AuditEntry.rules).where(AuditEntry.type == "task_done")
        ).one()
    assert audited.actor == "coordinator-1"
    again = client.post(f"/tasks/{routine['task_id']}/done", headers=coordinator)
    assert (again.status_code, again.json()["field"]) == (422, "task")


def test_an_emergency_item_is_done_with_what_came_of_it(
    client: TestClient, tokens: dict[str, str], engine: Engine
) -> None:
    from models.tables import TaskAction

    service = {"Authorization": tokens["service"]}
    coordinator = {"Authorization": tokens["coordinator"]}
    opening = {"patient": {"ref": "P-50"}, "onset": "2026-01-05", "coordinator": "coordinator-1"}
    episode = client.post("/episodes", json=opening, headers=service).json()["id"]
    flag = {"type": "red_flag", "data": {"kind": "ces"}}
    assert client.post(f"/episodes/{episode}/events", json=flag, headers=service).status_code == 200
    item = items(client, tokens, severity="emergency")[0]
    url = f"/tasks/{item['task_id']}/done"
    refused = client.post(url, json={"note": "done"}, headers=coordinator)
    assert (refused.status_code, refused.json()["field"]) == (422, "outcome")
    done = client.post(url, json={"outcome": "seen in the emergency department",
                                  "note": "MRI the same night"}, headers=coordinator)  # fmt: skip
    assert done.status_code == 200, done.text
    with engine.connect() as connection:
        (logged,) = connection.execute(
            select(TaskAction.kind, TaskAction.outcome, TaskAction.note, TaskAction.actor)
        ).all()
    assert tuple(logged) == ("done", "seen in the emergency department", "MRI the same night",
                             "coordinator-1")  # fmt: skip


def test_a_short_window_hides_what_is_further_off(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    wide = items(client, tokens, window="60d")
    narrow = items(client, tokens, window="1d")
    assert [i for i in wide if i["status"] != "upcoming"] == [
        i for i in narrow if i["status"] != "upcoming"
    ]
    assert len(wide) > len(narrow)


@pytest.mark.parametrize(
    ("role", "params", "status"),
    [
        ("coordinator", {}, 200),
        ("coordinator", {"coordinator": "someone-else"}, 403),
        ("admin", {"coordinator": "coordinator-1"}, 200),
        ("service", {}, 403),
        ("auditor", {}, 403),
        ("none", {}, 401),
        ("coordinator", {"window": "soon"}, 422),
    ],
)
def test_a_worklist_is_its_coordinators_own(
    client: TestClient, tokens: dict[str, str], role: str, params: dict[str, str], status: int
) -> None:
    headers = {"Authorization": tokens[role]} if role in tokens else {}
    assert client.get("/worklist", params=params, headers=headers).status_code == status


def test_another_coordinators_item_cannot_be_touched(
    client: TestClient, tokens: dict[str, str], late_referral: str, engine: Engine
) -> None:
    from api.tokens import create_token
    from tests.api.conftest import NOW

    _, other = create_token(engine, "coordinator", "coordinator-2", NOW)
    top = items(client, tokens)[0]["task_id"]
    headers = {"Authorization": f"Bearer {other}"}
    assert client.post(f"/tasks/{top}/ack", headers=headers).status_code == 403
    assert client.post(f"/tasks/{top}/done", headers=headers).status_code == 403
    assert client.post("/tasks/999999/ack", headers=headers).status_code == 404


def test_the_calendar_feed_lists_the_items_by_patient_reference_only(
    client: TestClient, tokens: dict[str, str], late_referral: str, engine: Engine
) -> None:
    from icalendar import Calendar

    from api.tokens import create_token, revoke_token
    from tests.api.conftest import NOW

    feed_id, feed = create_token(engine, "calendar", "coordinator-1", NOW)
    answer = client.get("/calendar/coordinator-1.ics", params={"token": feed, "kind": "todos"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/calendar")
    todos = Calendar.from_ical(answer.content).walk("VTODO")
    assert [str(t["summary"]) for t in todos][0] == "Referral deadline: P-31 (escalated)"
    assert todos[0]["priority"] == 1
    assert "REF-" not in answer.text  # no rule that would say what the referral is for
    # The feed token opens this feed only; other tokens and other feeds are refused.
    assert client.get("/calendar/coordinator-2.ics", params={"token": feed}).status_code == 403
    assert client.get("/worklist", headers={"Authorization": f"Bearer {feed}"}).status_code == 403
    coordinator_token = tokens["coordinator"].removeprefix("Bearer ")
    feed_url = "/calendar/coordinator-1.ics"
    assert client.get(feed_url, params={"token": coordinator_token}).status_code == 403
    assert client.get(feed_url).status_code == 401
    revoke_token(engine, feed_id, NOW)
    assert client.get(feed_url, params={"token": feed}).status_code == 401


def test_the_worklist_comes_a_page_at_a_time_in_the_same_order(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    service = {"Authorization": tokens["service"]}
    for ref in ("P-40", "P-41"):
        opening = {**OPENING_FOR_PAGING, "patient": {"ref": ref, "age": 60}}
        assert client.post("/episodes", json=opening, headers=service).status_code == 201
    whole = items(client, tokens, window="60d")
    assert len(whole) >= 3
    paged: list[Any] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"window": "60d", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        answer = client.get(
            "/worklist", params=params, headers={"Authorization": tokens["coordinator"]}
        )
        paged += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert paged == whole
    bad = client.get(
        "/worklist", params={"cursor": "bm9wZQ=="}, headers={"Authorization": tokens["coordinator"]}
    )
    assert (bad.status_code, bad.json()["field"]) == (422, "cursor")


OPENING_FOR_PAGING = {
    "onset": "2026-01-05",
    "enrolled_at": "2026-01-06T09:00:00Z",
    "coordinator": "coordinator-1",
}
