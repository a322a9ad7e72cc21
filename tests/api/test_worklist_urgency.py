"""The worklist in urgency order: an emergency above weeks-old routine work, how late each
item is, its assignee and its times in the clinic's zone; filters; due order on request."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from models.repository import EpisodeRepository
from models.worklist import iso_duration
from schedulers.worker import Worker

CHICAGO = "America/Chicago"


def listed(client: TestClient, tokens: dict[str, str], **params: Any) -> dict[str, Any]:
    answer = client.get(
        "/worklist", params=params, headers={"Authorization": tokens["coordinator"]}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def morning(
    client: TestClient, tokens: dict[str, str], late_referral: str, clock: FakeClock,
    engine: Engine,
) -> str:  # fmt: skip
    """Beside the escalated referral, a routine first follow-up days overdue, and a Chicago
    patient with cauda equina flagged just now."""
    service = {"Authorization": tokens["service"]}
    old = {"patient": {"ref": "P-old"}, "onset": "2025-12-01", "coordinator": "coordinator-1",
           "enrolled_at": "2025-12-02T15:00:00Z", "clinic_timezone": CHICAGO}  # fmt: skip
    assert client.post("/episodes", json=old, headers=service).status_code == 201
    clock.set(clock.now() + timedelta(days=3))  # its follow-up, due by the end of that day, missed
    Worker(EpisodeRepository(engine, PathwayDefaults()), clock).sweep()
    ces = {"patient": {"ref": "P-flag"}, "onset": "2026-01-20", "coordinator": "coordinator-1",
           "clinic_timezone": CHICAGO}  # fmt: skip
    episode = client.post("/episodes", json=ces, headers=service).json()["id"]
    flag = {"type": "red_flag", "data": {"kind": "ces"}, "actor": "dr-a"}
    assert client.post(f"/episodes/{episode}/events", json=flag, headers=service).status_code == 200
    return str(episode)


def test_the_emergency_comes_first_then_the_referral_then_routine_work(
    client: TestClient, tokens: dict[str, str], morning: str, clock: FakeClock
) -> None:
    body = listed(client, tokens)
    assert body["sort"] == "urgency"
    items = body["items"]
    first = items[0]
    assert (first["episode_id"], first["key"], first["severity"]) == (morning, "ces_emergency",
                                                                      "emergency")  # fmt: skip
    assert first["overdue_by"] is None
    assert first["due_in"] == "PT6H"  # RF-CES: due six hours after the flag
    assert first["assignee"] == "coordinator-1"
    severities = [i["severity"] for i in items]
    order = ["emergency", "urgent", "referral", "review", "routine"]
    assert [order.index(s) for s in severities] == sorted(order.index(s) for s in severities)
    assert (items[1]["key"], items[1]["status"]) == ("referral", "escalated")
    routine = [i for i in items if i["severity"] == "routine" and i["overdue_by"]]
    assert routine, "the missed follow-up is listed, below"
    lateness = [datetime.fromisoformat(i["due_at"]) for i in routine]
    assert lateness == sorted(lateness)  # the most overdue first, within a severity


def test_times_are_the_clinics_and_how_late_is_said(
    client: TestClient, tokens: dict[str, str], morning: str, clock: FakeClock
) -> None:
    ces = listed(client, tokens, patient_ref="P-flag")["items"]
    assert {i["key"] for i in ces} >= {"ces_emergency"}
    item = next(i for i in ces if i["key"] == "ces_emergency")
    assert item["time_zone"] == CHICAGO
    due = datetime.fromisoformat(item["due_at"])
    assert due.utcoffset() == ZoneInfo(CHICAGO).utcoffset(due.replace(tzinfo=None))
    assert due == clock.now() + timedelta(hours=6)
    clock.set(clock.now() + timedelta(hours=8, minutes=30))
    late = next(i for i in listed(client, tokens, patient_ref="P-flag")["items"]
                if i["key"] == "ces_emergency")  # fmt: skip
    assert (late["overdue_by"], late["due_in"]) == ("PT2H30M", None)


def test_filters_narrow_the_list(client: TestClient, tokens: dict[str, str], morning: str) -> None:
    everything = listed(client, tokens, window="60d")["items"]
    for params, keep in (
        ({"patient_ref": "P-old"}, lambda i: i["patient_ref"] == "P-old"),
        ({"severity": "referral"}, lambda i: i["severity"] == "referral"),
        ({"rule": "RF-CES"}, lambda i: i["rule"] == "RF-CES"),
        ({"status": "escalated"}, lambda i: i["status"] == "escalated"),
    ):
        narrowed = listed(client, tokens, window="60d", **params)["items"]
        assert narrowed, params
        assert narrowed == [i for i in everything if keep(i)], params
    assert listed(client, tokens, patient_ref="P-nobody")["items"] == []


@pytest.mark.parametrize(
    "params",
    [{"severity": "severe"}, {"status": "done"}, {"rule": "not a rule"}, {"sort": "name"},
     {"patient_ref": "P" * 129}],
)  # fmt: skip
def test_a_bad_filter_is_refused_naming_it(
    client: TestClient, tokens: dict[str, str], params: dict[str, str]
) -> None:
    answer = client.get(
        "/worklist", params=params, headers={"Authorization": tokens["coordinator"]}
    )
    assert answer.status_code == 422
    assert next(iter(params)) in answer.text


def test_due_order_is_by_deadline_alone_and_pages_keep_to_their_order(
    client: TestClient, tokens: dict[str, str], morning: str
) -> None:
    by_due = listed(client, tokens, sort="due", window="60d")
    deadlines = [datetime.fromisoformat(i["due_at"]) for i in by_due["items"]]
    assert deadlines == sorted(deadlines)
    assert by_due["items"][0]["severity"] != "emergency"  # older deadlines first
    paged: list[Any] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"sort": "due", "window": "60d", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = listed(client, tokens, **params)
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == by_due["items"]
    urgent_page = listed(client, tokens, limit=1)
    crossed = client.get(
        "/worklist", params={"sort": "due", "cursor": urgent_page["next_cursor"]},
        headers={"Authorization": tokens["coordinator"]},
    )  # fmt: skip
    assert (crossed.status_code, crossed.json()["field"]) == (422, "cursor")


def test_an_iso_duration_counts_days_hours_and_minutes() -> None:
    assert iso_duration(timedelta(days=2, hours=3, minutes=15, seconds=59)) == "P2DT3H15M"
    assert iso_duration(timedelta(hours=6)) == "PT6H"
    assert iso_duration(timedelta(days=1)) == "P1D"
    assert iso_duration(timedelta(seconds=30)) == "PT0M"


def test_the_page_puts_the_emergency_first_in_the_clinics_time(
    client: TestClient, tokens: dict[str, str], morning: str, clock: FakeClock
) -> None:
    from tests.api.page_forms import sign_in

    assert sign_in(client, tokens["coordinator"]).status_code == 303
    page = client.get("/").text
    rows = re.findall(r'<tr class="(\w+) (\w+)" data-task="\d+">', page)
    assert rows[0] == ("due", "emergency")
    assert rows[1] == ("escalated", "referral")
    due = (clock.now() + timedelta(hours=6)).astimezone(ZoneInfo(CHICAGO))
    assert due.strftime("%a %d %b %H:%M %Z") in page  # e.g. "Tue 20 Jan 04:00 CST"
    assert "due in 6 h" in page


def test_the_calendar_shows_all_day_events_a_client_displays_with_neutral_names(
    client: TestClient, tokens: dict[str, str], morning: str, clock: FakeClock, engine: Engine
) -> None:
    from icalendar import Calendar

    from api.tokens import create_token

    feed = create_token(engine, "calendar", "coordinator-1", clock.now())[1]
    answer = client.get("/calendar/coordinator-1.ics", params={"token": feed})
    assert answer.status_code == 200
    calendar = Calendar.from_ical(answer.content)
    assert calendar.walk("VTODO") == []
    assert str(calendar["refresh-interval"].to_ical().decode()) == "PT1H"
    events = calendar.walk("VEVENT")
    listed_items = listed(client, tokens, window="90d")["items"]
    assert len(events) == len(listed_items)
    today = clock.now().astimezone(ZoneInfo(CHICAGO)).date()
    for event in events:
        start, end = event.decoded("dtstart"), event.decoded("dtend")
        assert not isinstance(start, datetime)  # all-day: a date, no time
        assert end - start == timedelta(days=1)
        (alarm,) = event.walk("VALARM")
        assert alarm["action"] == "DISPLAY"
        summary = str(event["summary"])
        if summary.startswith("Overdue: "):
            assert start == today  # moved to today in the clinic's calendar
        said = (summary + " " + str(event["description"])).lower()
        assert not re.search(r"ces|cauda|opioid|rf-|ref-|fu-|med-|_|workup|review_", said)
    summaries = {str(e["summary"]) for e in events}
    assert "Emergency item: P-flag" in summaries
    assert "Overdue: Follow-up: P-old" in summaries
    old = next(e for e in events if str(e["summary"]) == "Overdue: Follow-up: P-old")
    assert old.decoded("dtstart") == today


def test_under_a_red_flag_the_episode_page_leads_with_the_emergency(
    client: TestClient, tokens: dict[str, str], morning: str, clock: FakeClock
) -> None:
    from tests.api.page_forms import sign_in

    assert sign_in(client, tokens["coordinator"]).status_code == 303
    page = client.get(f"/pages/episodes/{morning}").text
    main = page.split("<main", 1)[1]
    flag = main.index('class="red-flag emergency"')
    assert flag < main.index("<dl>") < main.index("Statechart")  # first, the diagram below
    assert "Red flag, emergency: Cauda equina syndrome suspected" in main
    assert "(RF-CES)" in main
    due = (clock.now() + timedelta(hours=6)).astimezone(ZoneInfo(CHICAGO))
    assert f"{due.strftime('%a %d %b %H:%M %Z')}</time>: <strong>due in 6 h</strong>" in main
    # Where routine care stands is said as where it resumes, in a coordinator's words.
    assert "<dt>Care, when it resumes</dt><dd>Conservative care</dd>" in main
    assert "<dd>No referral needed</dd>" in main
    assert "Recommendations for routine care (paused)</summary>" in main
    assert '<details class="statechart">' in main


def test_without_a_red_flag_the_page_says_where_care_stands(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    from tests.api.page_forms import sign_in

    sign_in(client, tokens["coordinator"])
    main = client.get(f"/pages/episodes/{late_referral}").text.split("<main", 1)[1]
    assert "red-flag" not in main
    assert "<dt>Red flag</dt><dd>none</dd>" in main
    assert "<dd>Referral overdue</dd>" in main or "<dd>Referral due</dd>" in main
    assert "overdue by" in main


def test_an_episode_without_a_coordinator_is_on_the_unassigned_queue(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    from tests.api.page_forms import sign_in

    service = {"Authorization": tokens["service"]}
    nobodys = {"patient": {"ref": "P-nobody"}, "onset": "2026-01-05"}
    episode = client.post("/episodes", json=nobodys, headers=service).json()["id"]
    flag = {"type": "red_flag", "data": {"kind": "ces"}}
    assert client.post(f"/episodes/{episode}/events", json=flag, headers=service).status_code == 200
    queue = listed(client, tokens, unassigned="true", window="60d")
    assert queue["coordinator"] is None
    assert {i["patient_ref"] for i in queue["items"]} == {"P-nobody"}
    assert queue["items"][0]["severity"] == "emergency"  # an emergency on nobody's list no more
    assert all(i["assignee"] is None for i in queue["items"])
    own = listed(client, tokens, window="60d")["items"]
    assert "P-nobody" not in {i["patient_ref"] for i in own}
    mixed = client.get("/worklist", params={"unassigned": "true", "coordinator": "x"},
                       headers={"Authorization": tokens["coordinator"]})  # fmt: skip
    assert (mixed.status_code, mixed.json()["field"]) == (422, "unassigned")
    sign_in(client, tokens["coordinator"])
    page = client.get("/").text
    unassigned = page.split("<h2>Unassigned: clinic-wide</h2>", 1)[1]
    assert "P-nobody" in unassigned
    assert "P-nobody" not in page.split("<h2>Unassigned: clinic-wide</h2>", 1)[0]
    assert client.get("/", params={"coordinator": "coordinator-2"}).status_code == 403


def test_an_admin_opens_any_coordinators_list_on_the_page(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    from tests.api.page_forms import sign_in

    sign_in(client, tokens["admin"])
    own = client.get("/").text
    assert "Worklist for admin-1" in own
    assert '<label for="coordinator">Open a coordinator' in own
    theirs = client.get("/", params={"coordinator": "coordinator-1"}).text
    assert "Worklist for coordinator-1" in theirs
    assert "P-31" in theirs.split("<h2>Unassigned: clinic-wide</h2>", 1)[0]
