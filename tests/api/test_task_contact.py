"""A contact attempt on an item is logged with who and when, and shown on the item."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.clinic_time import FakeClock
from tests.api.page_forms import post_form, sign_in


def first_item(client: TestClient, tokens: dict[str, str]) -> dict[str, Any]:
    answer = client.get("/worklist", headers={"Authorization": tokens["coordinator"]})
    item: dict[str, Any] = answer.json()["items"][0]
    return item


def test_the_latest_contact_is_shown_on_the_item(
    client: TestClient, tokens: dict[str, str], late_referral: str, clock: FakeClock
) -> None:
    coordinator = {"Authorization": tokens["coordinator"]}
    item = first_item(client, tokens)
    assert item["last_contact"] is None
    url = f"/tasks/{item['task_id']}/contact"
    first = client.post(url, json={"outcome": "no_answer"}, headers=coordinator)
    assert first.status_code == 200, first.text
    clock.set(clock.now() + timedelta(minutes=20))
    second = client.post(url, json={"outcome": "left_message", "note": "asked to call back"},
                         headers=coordinator)  # fmt: skip
    assert second.json()["last_contact"]["outcome"] == "left_message"
    shown = first_item(client, tokens)["last_contact"]
    assert (shown["outcome"], shown["note"], shown["by"]) == (
        "left_message", "asked to call back", "coordinator-1",
    )  # fmt: skip
    assert shown["at"].startswith(clock.now().isoformat()[:16])


@pytest.mark.parametrize(
    ("body", "field"),
    [({"outcome": "emailed"}, "outcome"), ({}, "outcome"),
     ({"outcome": "reached", "note": "a\x00b"}, "note"),
     ({"outcome": "reached", "note": "x" * 1001}, "note"),
     ({"outcome": "reached", "mood": "fine"}, "mood")],
)  # fmt: skip
def test_a_bad_contact_is_refused_naming_the_field_and_nothing_is_logged(
    client: TestClient, tokens: dict[str, str], late_referral: str, body: dict[str, Any],
    field: str,
) -> None:  # fmt: skip
    item = first_item(client, tokens)
    answer = client.post(f"/tasks/{item['task_id']}/contact", json=body,
                         headers={"Authorization": tokens["coordinator"]})  # fmt: skip
    assert (answer.status_code, answer.json()["field"]) == (422, field)
    assert first_item(client, tokens)["last_contact"] is None


def test_only_the_items_coordinator_logs_a_contact(
    client: TestClient, tokens: dict[str, str], late_referral: str, engine: Any
) -> None:
    from api.tokens import create_token
    from tests.api.conftest import NOW

    item = first_item(client, tokens)
    other = f"Bearer {create_token(engine, 'coordinator', 'coordinator-2', NOW)[1]}"
    url = f"/tasks/{item['task_id']}/contact"

    def status(path: str, header: str) -> int:
        answer = client.post(path, json={"outcome": "reached"}, headers={"Authorization": header})
        return answer.status_code

    assert status(url, other) == 403
    for role, expected in (("service", 403), ("auditor", 403), ("revoked", 401),
                           ("forged", 401), ("admin", 200)):  # fmt: skip
        assert status(url, tokens[role]) == expected, role
    assert status("/tasks/999999/contact", tokens["coordinator"]) == 404


def test_the_page_logs_a_call_and_shows_it(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    sign_in(client, tokens["coordinator"])
    task = re.findall(r'data-task="(\d+)"', client.get("/").text)[0]
    page = post_form(client, f"/pages/tasks/{task}/contact", outcome="no_answer",
                     note="rang twice")  # fmt: skip
    assert page.status_code == 200
    assert re.search(r"Contact: no answer, coordinator-1, \w{3} \d\d \w{3} \d\d:\d\d \w+: "
                     r"rang twice", page.text)  # fmt: skip


def test_after_an_action_the_list_says_what_was_done(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    sign_in(client, tokens["coordinator"])
    task = re.findall(r'data-task="(\d+)"', client.get("/").text)[0]
    acked = post_form(client, f"/pages/tasks/{task}/ack")
    assert '<p class="notice" role="status">Referral for P-31 acknowledged.</p>' in acked.text
    logged = post_form(client, f"/pages/tasks/{task}/contact", outcome="reached")
    assert "Contact logged for referral, P-31." in logged.text
    # A crafted address says nothing it did not do.
    assert 'class="notice"' not in client.get("/", params={"did": "hacked", "item": task}).text
    assert 'class="notice"' not in client.get("/", params={"did": "done", "item": 999999}).text
