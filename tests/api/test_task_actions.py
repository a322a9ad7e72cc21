"""Snooze, reopen and acknowledging many: no action silences a deadline by accident."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from models.db import read_only
from models.repository import EpisodeRepository
from models.tables import AuditEntry, TaskAction
from schedulers.worker import Worker
from tests.api.conftest import NOW
from tests.api.page_forms import post_form, sign_in


def coordinator(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": tokens["coordinator"]}


def enrol(client: TestClient, tokens: dict[str, str], ref: str, **opening: Any) -> str:
    body = {"patient": {"ref": ref}, "onset": "2026-01-05", "coordinator": "coordinator-1",
            **opening}  # fmt: skip
    answer = client.post("/episodes", json=body, headers={"Authorization": tokens["service"]})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def listed(client: TestClient, tokens: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/worklist", params={"window": "60d", **params},
                        headers=coordinator(tokens))  # fmt: skip
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


@pytest.fixture
def emergency(client: TestClient, tokens: dict[str, str]) -> dict[str, Any]:
    """A cauda equina work-up, due within hours, on coordinator-1's list."""
    episode = enrol(client, tokens, "P-ces")
    flag = {"type": "red_flag", "data": {"kind": "ces"}}
    assert client.post(f"/episodes/{episode}/events", json=flag,
                       headers={"Authorization": tokens["service"]}).status_code == 200  # fmt: skip
    [item] = [i for i in listed(client, tokens) if i["severity"] == "emergency"]
    return item


@pytest.fixture
def routine(client: TestClient, tokens: dict[str, str]) -> dict[str, Any]:
    enrol(client, tokens, "P-routine")
    return next(i for i in listed(client, tokens) if i["patient_ref"] == "P-routine")


def snooze(client: TestClient, tokens: dict[str, str], task: int, **body: Any) -> Any:
    return client.post(f"/tasks/{task}/snooze", json=body, headers=coordinator(tokens))


def test_a_snoozed_item_leaves_the_list_until_its_time_or_its_status_moves(
    client: TestClient, tokens: dict[str, str], routine: dict[str, Any], clock: FakeClock,
    engine: Engine,
) -> None:  # fmt: skip
    task, due_at = routine["task_id"], routine["due_at"]
    until = NOW + timedelta(days=2)
    answer = snooze(client, tokens, task, until=until.isoformat(), reason="on holiday")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == routine["status"]
    assert task not in {i["task_id"] for i in listed(client, tokens)}
    [shown] = [i for i in listed(client, tokens, with_snoozed="true") if i["task_id"] == task]
    assert shown["snoozed_until"] is not None
    clock.set(until)
    assert task in {i["task_id"] for i in listed(client, tokens)}  # its time came
    # Snoozed again, far: it comes back the moment it falls overdue, whatever the snooze said.
    later = clock.now() + timedelta(days=29)
    assert snooze(client, tokens, task, until=later.isoformat(), reason="waits").status_code == 200
    assert task not in {i["task_id"] for i in listed(client, tokens)}
    clock.set(max(clock.now(), datetime.fromisoformat(due_at)) + timedelta(hours=1))
    Worker(EpisodeRepository(engine, PathwayDefaults()), clock).sweep()
    [back] = [i for i in listed(client, tokens) if i["task_id"] == task]
    assert back["status"] in ("overdue", "escalated")
    assert back["snoozed_until"] is None
    with read_only(engine) as connection:
        kept = connection.execute(select(TaskAction.kind, TaskAction.outcome, TaskAction.until)
                                  .where(TaskAction.task_id == task)).all()  # fmt: skip
    assert [(kind, outcome) for kind, outcome, _ in kept] == [("snooze", "on holiday"),
                                                              ("snooze", "waits")]  # fmt: skip


@pytest.mark.parametrize(
    ("hours", "reason", "field"),
    [(-1, "later", "until"), (24 * 31, "later", "until"), (1, " ", "reason"), (1, None, "reason")],
)
def test_a_snooze_that_would_hide_too_much_is_refused_and_changes_nothing(
    client: TestClient, tokens: dict[str, str], routine: dict[str, Any], hours: int,
    reason: str | None, field: str,
) -> None:  # fmt: skip
    body = {"until": (NOW + timedelta(hours=hours)).isoformat(), "reason": reason}
    answer = snooze(client, tokens, routine["task_id"], **body)
    assert (answer.status_code, answer.json()["field"]) == (422, field)
    assert routine["task_id"] in {i["task_id"] for i in listed(client, tokens)}


def test_an_emergency_is_not_snoozed_past_its_deadline(
    client: TestClient, tokens: dict[str, str], emergency: dict[str, Any]
) -> None:
    deadline = datetime.fromisoformat(emergency["due_at"])
    past = snooze(client, tokens, emergency["task_id"],
                  until=(deadline + timedelta(minutes=1)).isoformat(), reason="busy")  # fmt: skip
    assert (past.status_code, past.json()["field"]) == (422, "until")
    assert "emergency" in past.json()["detail"]
    soon = (NOW + timedelta(minutes=30)).isoformat()
    within = snooze(client, tokens, emergency["task_id"], until=soon, reason="ambulance called")
    assert within.status_code == 200


def test_done_is_taken_back_by_reopen_and_the_item_comes_back_as_late_as_it_is(
    client: TestClient, tokens: dict[str, str], routine: dict[str, Any], clock: FakeClock,
    engine: Engine,
) -> None:  # fmt: skip
    task = routine["task_id"]
    done = client.post(f"/tasks/{task}/done", json={}, headers=coordinator(tokens))
    assert done.status_code == 200, done.text
    clock.set(datetime.fromisoformat(routine["due_at"]) + timedelta(hours=1))
    answer = client.post(f"/tasks/{task}/reopen", json={"reason": "marked by mistake"},
                         headers=coordinator(tokens))  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "overdue"
    [back] = [i for i in listed(client, tokens) if i["task_id"] == task]
    said = back["last_action"]
    assert (said["kind"], said["said"], said["by"]) == ("reopen", "marked by mistake",
                                                        "coordinator-1")  # fmt: skip
    again = client.post(f"/tasks/{task}/reopen", headers=coordinator(tokens))
    assert again.status_code == 409  # it is open
    with read_only(engine) as connection:
        steps = connection.execute(select(AuditEntry.type, AuditEntry.actor)
                                   .order_by(AuditEntry.seq)).all()  # fmt: skip
    assert ("task_reopened", "coordinator-1") in steps
    # The worker moves it on from here: its timer was booked again.
    clock.set(clock.now() + timedelta(days=30))
    Worker(EpisodeRepository(engine, PathwayDefaults()), clock).sweep()
    [late] = [i for i in listed(client, tokens) if i["task_id"] == task]
    assert late["status"] == "escalated"


def test_acknowledging_many_is_all_or_none(
    client: TestClient, tokens: dict[str, str], routine: dict[str, Any],
    emergency: dict[str, Any],
) -> None:  # fmt: skip
    ids = [routine["task_id"], emergency["task_id"]]
    missing = client.post("/tasks/ack", json={"task_ids": [*ids, 99999]},
                          headers=coordinator(tokens))  # fmt: skip
    assert missing.status_code == 404
    assert not any(i["acknowledged"] for i in listed(client, tokens))
    empty = client.post("/tasks/ack", json={"task_ids": []}, headers=coordinator(tokens))
    assert (empty.status_code, empty.json()["field"]) == (422, "task_ids")
    both = client.post("/tasks/ack", json={"task_ids": ids}, headers=coordinator(tokens))
    assert both.json() == {"acknowledged": ids}
    assert all(i["acknowledged"] for i in listed(client, tokens) if i["task_id"] in ids)


def test_the_page_snoozes_reopens_after_done_and_acknowledges_the_selected(
    client: TestClient, tokens: dict[str, str], routine: dict[str, Any],
    emergency: dict[str, Any],
) -> None:  # fmt: skip
    sign_in(client, tokens["coordinator"])
    page = client.get("/").text
    assert 'form="bulk-ack"' in page
    acked = post_form(client, "/pages/tasks/ack", task=[str(emergency["task_id"])])
    assert "for P-ces acknowledged." in acked.text
    both = post_form(client, "/pages/tasks/ack",
                     task=[str(emergency["task_id"]), str(routine["task_id"])])  # fmt: skip
    assert "2 items acknowledged." in both.text
    ticked = {emergency["task_id"], routine["task_id"]}
    assert all(i["acknowledged"] for i in listed(client, tokens) if i["task_id"] in ticked)
    snoozed = post_form(client, f"/pages/tasks/{emergency['task_id']}/snooze", hours="1",
                        reason="waiting for the ambulance")  # fmt: skip
    assert "snoozed until" in snoozed.text
    assert f'data-task="{emergency["task_id"]}"' not in snoozed.text
    done = post_form(client, f"/pages/tasks/{routine['task_id']}/done", outcome="called")
    assert "marked done" in done.text
    assert f'action="/pages/tasks/{routine["task_id"]}/reopen"' in done.text
    reopened = post_form(client, f"/pages/tasks/{routine['task_id']}/reopen")
    assert "reopened" in reopened.text
    assert routine["task_id"] in {i["task_id"] for i in listed(client, tokens)}


def test_a_reopened_item_is_back_on_the_list_even_if_it_was_snoozed_before_done(
    client: TestClient, tokens: dict[str, str], routine: dict[str, Any]
) -> None:
    task = routine["task_id"]
    until = (NOW + timedelta(days=3)).isoformat()
    assert snooze(client, tokens, task, until=until, reason="away").status_code == 200
    headers = coordinator(tokens)
    assert client.post(f"/tasks/{task}/done", json={}, headers=headers).status_code == 200
    assert client.post(f"/tasks/{task}/reopen", headers=headers).status_code == 200
    assert task in {i["task_id"] for i in listed(client, tokens)}
