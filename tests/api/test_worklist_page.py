"""The worklist page searched, filtered, ordered and paged, and every action returning to the
list where it stood, with what it did said."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api import pages
from tests.api.page_forms import ORIGIN, form_token, post_form, sign_in


def enrol(client: TestClient, tokens: dict[str, str], ref: str, flag: bool = False) -> None:
    body = {"patient": {"ref": ref}, "onset": "2026-01-05", "coordinator": "coordinator-1"}
    service = {"Authorization": tokens["service"]}
    answer = client.post("/episodes", json=body, headers=service)
    assert answer.status_code == 201, answer.text
    if flag:
        event = {"type": "red_flag", "data": {"kind": "ces"}}
        episode = answer.json()["id"]
        assert client.post(f"/episodes/{episode}/events", json=event,
                           headers=service).status_code == 200  # fmt: skip


def rows(html: str) -> list[str]:
    """The patient references of the coordinator's own list, in order."""
    own = html.split("<h2>Unassigned", 1)[0]
    return re.findall(r'<tr class="[^"]*" data-task="\d+">.*?<td>(P-[\w-]+)</td>', own, re.S)


@pytest.fixture
def morning(client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Five patients of coordinator-1's, one with cauda equina; the page shows the next 60
    days, so that their first follow-ups are on it."""
    monkeypatch.setattr(pages, "WINDOW_DAYS", 60)
    for n in range(4):
        enrol(client, tokens, f"P-{n}")
    enrol(client, tokens, "P-flag", flag=True)
    sign_in(client, tokens["coordinator"])


def test_the_list_is_searched_filtered_and_ordered(client: TestClient, morning: None) -> None:
    everyone = rows(client.get("/").text)
    assert everyone[0] == "P-flag"  # the emergency first
    found = client.get("/", params={"patient_ref": "P-2"}).text
    assert set(rows(found)) == {"P-2"}
    assert 'value="P-2"' in found
    assert "narrowed to patient P-2" in found
    emergencies = client.get("/", params={"severity": "emergency"}).text
    assert set(rows(emergencies)) == {"P-flag"}
    assert rows(client.get("/", params={"status": "escalated"}).text) == []
    by_deadline = client.get("/", params={"sort": "due"}).text
    assert "by deadline, the most overdue first" in by_deadline
    assert sorted(rows(by_deadline)) == sorted(everyone)
    bad = client.get("/", params={"severity": "dire"}, headers={"Accept": "text/html"})
    assert bad.status_code == 422
    assert "<html" in bad.text


def test_the_list_pages_and_keeps_its_filters_on_the_next_page(
    client: TestClient, morning: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = rows(client.get("/", params={"sort": "due"}).text)
    monkeypatch.setattr(pages, "PAGE_ITEMS", 2)
    seen: list[str] = []
    page = client.get("/", params={"sort": "due"}).text
    while True:
        seen += rows(page)
        link = re.search(r'<a href="/\?([^"]+)">Next page</a>', page)
        if link is None:
            break
        query = parse_qs(link.group(1).replace("&amp;", "&"))
        assert query["sort"] == ["due"]
        page = client.get("/?" + link.group(1).replace("&amp;", "&")).text
    assert len(everything) > 2
    assert seen == everything  # every item once, in order, each page kept in due order


def test_an_action_returns_to_the_same_filtered_place_and_says_what_it_did(
    client: TestClient, morning: None
) -> None:
    place = "/?patient_ref=P-3&sort=due"
    page = client.get(place).text
    task = re.search(r'data-task="(\d+)"', page.split("<h2>Unassigned", 1)[0])
    assert task is not None
    assert 'name="back" value="patient_ref=P-3&amp;sort=due"' in page
    answer = client.post(
        f"/pages/tasks/{task.group(1)}/ack",
        data={"csrf_token": form_token(page), "back": "patient_ref=P-3&sort=due"},
        headers={"Origin": ORIGIN}, follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303
    target = urlsplit(answer.headers["location"])
    assert parse_qs(target.query) == {"patient_ref": ["P-3"], "sort": ["due"], "did": ["ack"],
                                      "item": [task.group(1)]}  # fmt: skip
    shown = client.get(answer.headers["location"]).text
    assert "acknowledged." in shown
    assert set(rows(shown)) == {"P-3"}
    # Where a form says to go back to is only ever a list of this page: nothing else rides.
    sneaky = post_form(client, f"/pages/tasks/{task.group(1)}/ack", page=place,
                       back="next=https://elsewhere.example&status=due")  # fmt: skip
    assert sneaky.url.host == "testserver"
    assert "elsewhere" not in str(sneaky.url)


def test_a_rule_filter_and_a_teams_whole_list(
    client: TestClient, tokens: dict[str, str], engine: Engine, morning: None
) -> None:
    from models.teams import add_member
    from tests.api.conftest import NOW

    assert set(rows(client.get("/", params={"rule": "RF-CES"}).text)) == {"P-flag"}
    bad = client.get("/", params={"rule": "no rule"}, headers={"Accept": "text/html"})
    assert bad.status_code == 422
    for name in ("coordinator-1", "alex"):
        add_member(engine, "spine", name, None, NOW)
    service = {"Authorization": tokens["service"]}
    body = {"patient": {"ref": "P-alex"}, "onset": "2026-01-05", "coordinator": "alex"}
    assert client.post("/episodes", json=body, headers=service).json()["team"] == "spine"
    assert "P-alex" not in rows(client.get("/").text)
    team = client.get("/", params={"team": "spine"}).text
    assert "Team spine: every patient's items" in team
    assert "P-alex" in rows(team)
    assert "alex's" in team
    other = client.get("/", params={"team": "elsewhere"}, headers={"Accept": "text/html"})
    assert other.status_code == 403
