"""Care teams on the API: a coordinator reaches their team's patients and no others; cover
brings a colleague's list into theirs; claim and assign hand a patient over, on record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.tokens import create_token
from engine.clinic_time import FakeClock
from models.teams import add_member, set_cover
from tests.api.conftest import NOW
from tests.api.page_forms import post_form, sign_in

NORTH, SOUTH = "spine-north", "spine-south"


@pytest.fixture
def staff(engine: Engine) -> dict[str, dict[str, str]]:
    """alex and sam in the north team, robin in the south: a coordinator token each."""
    for team, name in ((NORTH, "alex"), (NORTH, "sam"), (SOUTH, "robin")):
        add_member(engine, team, name, f"{name}@clinic.example", NOW)
    return {name: {"Authorization": f"Bearer {create_token(engine, 'coordinator', name, NOW)[1]}"}
            for name in ("alex", "sam", "robin")}  # fmt: skip


def enrol(client: TestClient, tokens: dict[str, str], **opening: Any) -> dict[str, Any]:
    body = {"patient": {"ref": "P-1"}, "onset": "2026-01-05", **opening}
    answer = client.post("/episodes", json=body, headers={"Authorization": tokens["service"]})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def items(client: TestClient, who: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/worklist", params={"window": "60d", **params}, headers=who)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def first_item(client: TestClient, who: dict[str, str], **params: Any) -> int:
    return int(items(client, who, **params)[0]["task_id"])


def test_an_episode_opened_for_a_coordinator_joins_their_only_team(
    client: TestClient, tokens: dict[str, str], staff: dict[str, dict[str, str]]
) -> None:
    assert enrol(client, tokens, coordinator="alex")["team"] == NORTH
    assert enrol(client, tokens, coordinator="nobody-known")["team"] is None
    assert enrol(client, tokens, team=SOUTH)["team"] == SOUTH
    unknown = client.post("/episodes", json={"patient": {"ref": "P-2"}, "onset": "2026-01-05",
                                             "team": "spine-west"},
                          headers={"Authorization": tokens["service"]})  # fmt: skip
    assert (unknown.status_code, unknown.json()["field"]) == (422, "team")


EPISODE_ROUTES = [
    ("GET", "/episodes/{id}", None),
    ("GET", "/episodes/{id}/timeline", None),
    ("GET", "/episodes/{id}/due", None),
    ("GET", "/episodes/{id}/diagram.svg", None),
    ("POST", "/episodes/{id}/events", {"type": "assessment", "data": {"vas_leg": 5, "odi": 30}}),
]
TASK_ROUTES = [
    ("POST", "/tasks/{task}/ack", None),
    ("POST", "/tasks/{task}/contact", {"outcome": "no_answer"}),
    ("POST", "/tasks/{task}/done", {"outcome": "seen"}),
    ("POST", "/tasks/{task}/claim", None),
    ("POST", "/tasks/{task}/assign", {"to": "sam"}),
]


@pytest.mark.parametrize(("method", "path", "body"), EPISODE_ROUTES + TASK_ROUTES,
                         ids=lambda v: str(v)[:22])  # fmt: skip
@pytest.mark.parametrize("who", ["robin", "sam", "clinician", "service"])
def test_a_coordinator_outside_the_care_team_is_refused_on_every_route(
    client: TestClient, tokens: dict[str, str], staff: dict[str, dict[str, str]],
    method: str, path: str, body: Any, who: str,
) -> None:  # fmt: skip
    """robin (south) reaches none of alex's (north) patient; sam (north) does, as do the
    clinic-wide roles (refused, if at all, for another reason than the team)."""
    episode = enrol(client, tokens, coordinator="alex")
    task = first_item(client, staff["alex"])
    headers = staff.get(who) or {"Authorization": tokens[who]}
    answer = client.request(method, path.format(id=episode["id"], task=task), json=body,
                            headers=headers)  # fmt: skip
    if who == "robin":
        assert answer.status_code == 403, answer.text
        assert "care team" in answer.json()["detail"]
        assert client.get(f"/episodes/{episode['id']}", headers=staff["alex"]).json()[
            "version"] == episode["version"]  # fmt: skip
    elif path.startswith("/tasks/") and who in ("clinician", "service"):
        assert answer.status_code == 403  # the worklist is a coordinator's
    elif path.endswith("/claim"):
        assert answer.status_code == 409  # alex has it: nothing to claim
    else:
        assert answer.status_code in (200, 201), answer.text


def test_a_coordinators_episode_list_and_openings_keep_to_their_team(
    client: TestClient, tokens: dict[str, str], staff: dict[str, dict[str, str]]
) -> None:
    north = enrol(client, tokens, coordinator="alex")["id"]
    south = enrol(client, tokens, coordinator="robin")["id"]
    nobodys = enrol(client, tokens)["id"]
    listed = client.get("/episodes", headers=staff["sam"]).json()["items"]
    assert {e["id"] for e in listed} == {north, nobodys}
    everyone = client.get("/episodes", headers={"Authorization": tokens["service"]}).json()
    assert {e["id"] for e in everyone["items"]} == {north, south, nobodys}
    opening = {"patient": {"ref": "P-9"}, "onset": "2026-01-05", "coordinator": "robin"}
    refused = client.post("/episodes", json=opening, headers=staff["sam"])
    assert refused.status_code == 403
    for_alex = client.post("/episodes", json={**opening, "coordinator": "alex"},
                           headers=staff["sam"])  # fmt: skip
    assert for_alex.status_code == 201
    assert for_alex.json()["team"] == NORTH


def test_claiming_an_unassigned_item_takes_the_patient_on_once(
    client: TestClient, tokens: dict[str, str], staff: dict[str, dict[str, str]]
) -> None:
    episode = enrol(client, tokens, team=NORTH)["id"]
    queue = items(client, staff["alex"], team=NORTH, unassigned="true")
    assert {i["episode_id"] for i in queue} == {episode}
    assert items(client, staff["robin"], unassigned="true") == []  # not the clinic-wide queue
    other_team = client.get("/worklist", params={"team": NORTH, "unassigned": "true"},
                            headers=staff["robin"])  # fmt: skip
    assert other_team.status_code == 403
    task = queue[0]["task_id"]
    claimed = client.post(f"/tasks/{task}/claim", headers=staff["alex"])
    assert claimed.status_code == 200, claimed.text
    taken = claimed.json()
    assert (taken["assignee"], taken["episode"]["coordinator"]) == ("alex", "alex")
    assert items(client, staff["alex"], team=NORTH, unassigned="true") == []
    assert task in {i["task_id"] for i in items(client, staff["alex"])}
    again = client.post(f"/tasks/{task}/claim", headers=staff["sam"])
    assert again.status_code == 409
    assert "alex" in again.json()["detail"]
    steps = client.get(f"/episodes/{episode}/timeline", headers=staff["sam"]).json()["items"]
    handover = next(s for s in steps if s["type"] == "handover")
    assert (handover["actor"], handover["accepted"]) == ("alex", True)


def test_assigning_hands_the_patient_to_a_teammate_and_no_one_else(
    client: TestClient, tokens: dict[str, str], staff: dict[str, dict[str, str]]
) -> None:
    episode = enrol(client, tokens, coordinator="alex")["id"]
    task = first_item(client, staff["alex"])
    outsider = client.post(f"/tasks/{task}/assign", json={"to": "robin"}, headers=staff["alex"])
    assert (outsider.status_code, outsider.json()["field"]) == (422, "to")
    assert "spine-north" in outsider.json()["detail"]
    blank = client.post(f"/tasks/{task}/assign", json={"to": " "}, headers=staff["alex"])
    assert (blank.status_code, blank.json()["field"]) == (422, "to")
    handed = client.post(f"/tasks/{task}/assign", json={"to": "sam", "note": "on leave"},
                         headers=staff["alex"])  # fmt: skip
    assert handed.status_code == 200, handed.text
    assert handed.json()["episode"]["coordinator"] == "sam"
    assert items(client, staff["alex"]) == []
    assert {i["task_id"] for i in items(client, staff["sam"])} >= {task}
    assert all(i["assignee"] == "sam" for i in items(client, staff["sam"]))
    # Through the events route too, and held to the same directory.
    stale = {"type": "handover", "data": {"from": "alex", "to": "alex"}}
    refused = client.post(f"/episodes/{episode}/events", json=stale, headers=staff["sam"])
    assert refused.status_code == 409
    assert "sam's" in refused.json()["detail"]
    away = {"type": "handover", "data": {"from": "sam", "to": "robin"}}
    wrong = client.post(f"/episodes/{episode}/events", json=away,
                        headers={"Authorization": tokens["service"]})  # fmt: skip
    assert (wrong.status_code, wrong.json()["field"]) == (422, "data.to")


def test_cover_brings_a_colleagues_list_in_until_it_ends(
    client: TestClient, tokens: dict[str, str], staff: dict[str, dict[str, str]],
    engine: Engine, clock: FakeClock,
) -> None:  # fmt: skip
    episode = enrol(client, tokens, coordinator="robin")["id"]
    task = first_item(client, staff["robin"])
    assert client.get(f"/episodes/{episode}", headers=staff["alex"]).status_code == 403
    set_cover(engine, "robin", "alex", NOW + timedelta(days=2), "admin", NOW)
    body = client.get("/worklist", params={"window": "60d"}, headers=staff["alex"]).json()
    assert body["covering"] == ["robin"]
    assert task in {i["task_id"] for i in body["items"]}
    assert {i["assignee"] for i in body["items"]} == {"robin"}
    assert client.post(f"/tasks/{task}/contact", json={"outcome": "reached"},
                       headers=staff["alex"]).status_code == 200  # fmt: skip
    theirs = client.get("/worklist", params={"coordinator": "robin"}, headers=staff["alex"])
    assert theirs.status_code == 200
    sams = client.get("/worklist", params={"coordinator": "sam"}, headers=staff["alex"])
    assert sams.status_code == 403
    clock.set(NOW + timedelta(days=2))
    assert items(client, staff["alex"]) == []
    assert client.get(f"/episodes/{episode}", headers=staff["alex"]).status_code == 403


def test_the_page_claims_and_hands_over_with_a_confirmation(
    client: TestClient, tokens: dict[str, str], staff: dict[str, dict[str, str]]
) -> None:
    episode = enrol(client, tokens, team=NORTH)["id"]
    flag = {"type": "red_flag", "data": {"kind": "ces"}}  # its work-up due within hours
    assert client.post(f"/episodes/{episode}/events", json=flag,
                       headers={"Authorization": tokens["service"]}).status_code == 200  # fmt: skip
    sign_in(client, staff["alex"]["Authorization"])
    page = client.get("/").text
    assert "<h2>Unassigned: team spine-north</h2>" in page
    task = first_item(client, staff["alex"], team=NORTH, unassigned="true")
    claimed = post_form(client, f"/pages/tasks/{task}/claim")
    assert claimed.status_code == 200
    assert "claimed: now on your list" in claimed.text
    mine = claimed.text.split("<h2>Unassigned", 1)[0]
    assert f'data-task="{task}"' in mine
    assert '<option value="sam">sam</option>' in mine
    handed = post_form(client, f"/pages/tasks/{task}/assign", assignee="sam")
    assert "handed over to sam" in handed.text
    assert f'data-task="{task}"' not in handed.text.split("<h2>Unassigned", 1)[0]
    client.headers["Accept"] = "text/html"  # as a browser asks
    taken = post_form(client, f"/pages/tasks/{task}/claim")  # sam has it now
    assert taken.status_code == 409
    assert "already on sam" in taken.text
    assert "<html" in taken.text


def test_covering_a_colleague_shows_their_items_but_not_the_queues_of_their_other_team(
    client: TestClient, tokens: dict[str, str], staff: dict[str, dict[str, str]],
    engine: Engine,
) -> None:  # fmt: skip
    add_member(engine, SOUTH, "alex", None, NOW)  # alex: north and south; sam: north only
    set_cover(engine, "alex", "sam", NOW + timedelta(days=2), "admin", NOW)
    south = enrol(client, tokens, team=SOUTH)["id"]
    flag = {"type": "red_flag", "data": {"kind": "ces"}}
    assert client.post(f"/episodes/{south}/events", json=flag,
                       headers={"Authorization": tokens["service"]}).status_code == 200  # fmt: skip
    sign_in(client, staff["sam"]["Authorization"])
    page = client.get("/", params={"coordinator": "alex"}).text
    assert "team spine-south" not in page
    assert "team spine-north" in page
    assert '<option value="robin">' not in page


def test_a_task_action_is_on_record_in_the_access_log_and_so_is_a_refusal(
    client: TestClient, tokens: dict[str, str], staff: dict[str, dict[str, str]],
    engine: Engine,
) -> None:  # fmt: skip
    from models.access_reading import AccessFilter, page

    episode = enrol(client, tokens, coordinator="alex")["id"]
    task = first_item(client, staff["alex"])
    logged = client.post(f"/tasks/{task}/contact", json={"outcome": "reached"},
                         headers=staff["alex"])  # fmt: skip
    assert logged.status_code == 200
    later = {"until": "2030-01-01T00:00:00Z", "reason": "x"}
    refused = client.post(f"/tasks/{task}/snooze", json=later, headers=staff["robin"])
    assert refused.status_code == 403
    rows = page(engine, AccessFilter(), 0, 1000)[0]
    said = {(r["actor"], r["route"], r["outcome"]) for r in rows}
    assert ("alex", "POST /tasks/{task_id}/contact", "answered") in said
    assert ("robin", "POST /tasks/{task_id}/snooze", "forbidden") in said
    contact = next(r for r in rows if r["route"] == "POST /tasks/{task_id}/contact")
    assert episode in contact["episode_ids"]


def test_the_pages_of_another_teams_patient_are_refused_as_pages(
    client: TestClient, tokens: dict[str, str], staff: dict[str, dict[str, str]]
) -> None:
    episode = enrol(client, tokens, coordinator="alex")["id"]
    task = first_item(client, staff["alex"])
    sign_in(client, staff["robin"]["Authorization"])
    html = {"Accept": "text/html"}
    for path in (f"/pages/episodes/{episode}", f"/pages/tasks/{task}/done"):
        answer = client.get(path, headers=html)
        assert answer.status_code == 403, path
        assert "<html" in answer.text
        assert "P-1" not in answer.text  # nothing of the patient's
    posted = post_form(client, f"/pages/tasks/{task}/ack")
    assert posted.status_code == 403
    assert client.get("/", params={"coordinator": "alex"}, headers=html).status_code == 403
