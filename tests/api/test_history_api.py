"""An episode's view carries its recent steps; the rest of its timeline and its closed due
items are a page at a time, on the API and the coordinator's page."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient

from engine.clinic_time import FakeClock
from tests.api.conftest import OPENING
from tests.api.page_forms import sign_in

VISIT = {"type": "assessment", "data": {"vas_leg": 6, "odi": 40}}
MRI = {"type": "order", "data": {"kind": "mri"}}


def episode_with_history(
    client: TestClient, tokens: dict[str, str], clock: FakeClock, visits: int
) -> str:
    """Opened, then a visit and a refused MRI order a day, ``visits`` times."""
    service = {"Authorization": tokens["service"]}
    episode = str(client.post("/episodes", json=OPENING, headers=service).json()["id"])
    for _ in range(visits):
        clock.advance(timedelta(hours=6))
        assert client.post(f"/episodes/{episode}/events", json=VISIT, headers=service).is_success
        refused = client.post(f"/episodes/{episode}/events", json=MRI, headers=service)
        assert refused.status_code == 409
    return episode


def test_the_view_carries_the_recent_steps_and_a_cursor_for_the_rest(
    client: TestClient, tokens: dict[str, str], clock: FakeClock
) -> None:
    episode = episode_with_history(client, tokens, clock, visits=12)
    coordinator = {"Authorization": tokens["coordinator"]}
    view = client.get(f"/episodes/{episode}", headers=coordinator).json()
    assert [s["type"] for s in view["timeline"]] == ["order", "assessment"] * 5
    newest = view["timeline"][0]
    assert newest["accepted"] is False
    assert newest["rules"] == ["IMG-NO-EARLY"]
    steps = list(view["timeline"])
    cursor = view["timeline_next_cursor"]
    while cursor:
        page = client.get(
            f"/episodes/{episode}/timeline", params={"cursor": cursor, "limit": 4},
            headers=coordinator,
        ).json()  # fmt: skip
        assert len(page["items"]) <= 4
        steps += page["items"]
        cursor = page["next_cursor"]
    assert len(steps) == 25  # the opening, 12 visits, 12 refused orders
    assert [s["seq"] for s in steps] == sorted((s["seq"] for s in steps), reverse=True)
    assert steps[-1]["trigger"] == "open"
    # The view lists the open items and the last closed one of each kind; the rest are paged.
    assert len(view["due"]) == 5
    closed = client.get(
        f"/episodes/{episode}/due", params={"status": "closed"}, headers=coordinator
    ).json()
    # Each visit closed the review the one before booked: the first follow-up, then 1 to 11.
    assert [d["key"] for d in closed["items"]][:2] == ["periodic_review_11", "periodic_review_10"]
    assert len(closed["items"]) == 12
    assert closed["next_cursor"] is None


def test_history_routes_answer_problems_naming_what_is_wrong(
    client: TestClient, tokens: dict[str, str], clock: FakeClock
) -> None:
    episode = episode_with_history(client, tokens, clock, visits=1)
    service = {"Authorization": tokens["service"]}
    for route in ("timeline", "due"):
        for cursor in ("zz", "OTk5OTk5OTk5OTk="):  # not base64; a position no row has
            bad = client.get(f"/episodes/{episode}/{route}?cursor={cursor}", headers=service)
            assert bad.status_code == 422
            assert bad.json()["field"] == "cursor"
        assert client.get(f"/episodes/nope/{route}", headers=service).status_code == 404
        assert client.get(f"/episodes/{episode}/{route}").status_code == 401
        auditor = {"Authorization": tokens["auditor"]}
        assert client.get(f"/episodes/{episode}/{route}", headers=auditor).status_code == 403
    too_many = client.get(f"/episodes/{episode}/timeline?limit=501", headers=service)
    assert too_many.status_code == 422
    assert client.get(f"/episodes/{episode}/due?status=late", headers=service).status_code == 422


def test_the_episode_page_shows_recent_steps_with_a_link_to_earlier_ones(
    client: TestClient, tokens: dict[str, str], clock: FakeClock
) -> None:
    episode = episode_with_history(client, tokens, clock, visits=30)
    assert sign_in(client, tokens["coordinator"]).status_code == 303
    page = client.get(f"/pages/episodes/{episode}")
    assert page.status_code == 200
    assert len(re.findall(r"<tr( class=\"refused\")?>\s*<td>", page.text)) == 50
    earlier = re.search(r'href="(/pages/episodes/[^"]+\?cursor=[^"]+)"', page.text)
    assert earlier is not None
    older = client.get(earlier.group(1).replace("&amp;", "&"))
    assert older.status_code == 200
    assert len(re.findall(r"<tr( class=\"refused\")?>\s*<td>", older.text)) == 11  # 61 in all
    assert "Earlier steps" in older.text
    assert f'href="/pages/episodes/{episode}">Most recent steps' in older.text
    assert "?cursor=" not in older.text  # nothing before the opening
