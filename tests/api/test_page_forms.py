"""The page's forms refuse what another site sends them (CSRF and login CSRF), and change
nothing when they do; a page session's cookie alone never posts to the API."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from api.app import create_app
from api.security import WebSettings
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from models.tables import Task, WebSession
from tests.api.page_forms import ORIGIN, form_token, sign_in

FORGED = "0" * 64


@pytest.fixture
def escalated(client: TestClient, tokens: dict[str, str], late_referral: str) -> str:
    """Signed in as the coordinator; the id of the escalated referral on top of the list."""
    assert sign_in(client, tokens["coordinator"]).status_code == 303
    return re.findall(r'data-task="(\d+)"', client.get("/").text)[0]


def task_row(engine: Engine, task_id: str) -> tuple[str, object]:
    with engine.connect() as connection:
        row = connection.execute(
            select(Task.status, Task.acknowledged_at).where(Task.id == int(task_id))
        ).one()
    return row.status, row.acknowledged_at


def sessions(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(WebSession)) or 0)


REFUSALS = {
    "no token": ({"Origin": ORIGIN}, None, "carried no CSRF token"),
    "a forged token": ({"Origin": ORIGIN}, FORGED, "is not this browser's"),
    "another site's origin": ({"Origin": "https://evil.example"}, "good", "https://evil.example"),
    "a sibling site": (
        {"Origin": "http://testserver:8081", "Sec-Fetch-Site": "same-site"},
        "good",
        "same-site",
    ),
    "an opaque origin": ({"Origin": "null"}, "good", "'null'"),
    "another site's referer": ({"Referer": "https://evil.example/x"}, "good", "evil.example"),
    "no origin at all": ({}, "good", "no Origin or Referer"),
}


def test_a_form_without_its_token_or_from_elsewhere_is_refused_and_changes_nothing(
    client: TestClient, engine: Engine, escalated: str
) -> None:
    before = task_row(engine, escalated)
    assert before[1] is None  # not acknowledged, not done
    for action in ("ack", "done"):
        for how, (headers, token, reason) in REFUSALS.items():
            data = {} if token is None else {"csrf_token": token}
            if token == "good":
                data["csrf_token"] = form_token(client.get("/").text)
            answer = client.post(f"/pages/tasks/{escalated}/{action}", data=data, headers=headers)
            assert answer.status_code == 403, (action, how)
            assert answer.headers["content-type"].startswith("text/html")
            text = html.unescape(answer.text)
            assert "This form was not accepted" in text
            assert reason in text, (action, how)
            assert "Nothing was changed" in text
            assert task_row(engine, escalated) == before, (action, how)


@pytest.mark.parametrize(
    "headers",
    [{"Origin": ORIGIN}, {"Referer": ORIGIN + "/"}, {"Sec-Fetch-Site": "same-origin"}],
    ids=["origin", "referer", "fetch-metadata"],
)
def test_our_own_form_is_accepted_by_origin_referer_or_fetch_metadata(
    client: TestClient, engine: Engine, escalated: str, headers: dict[str, str]
) -> None:
    token = form_token(client.get("/").text)
    answer = client.post(
        f"/pages/tasks/{escalated}/ack", data={"csrf_token": token}, headers=headers,
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303
    assert task_row(engine, escalated)[1] is not None


def test_another_browsers_token_does_not_open_this_browsers_forms(
    client: TestClient, engine: Engine, escalated: str, tokens: dict[str, str]
) -> None:
    app = client.app
    with TestClient(app) as other:
        assert sign_in(other, tokens["coordinator"]).status_code == 303
        theirs = form_token(other.get("/").text)
    answer = client.post(
        f"/pages/tasks/{escalated}/ack", data={"csrf_token": theirs}, headers={"Origin": ORIGIN}
    )
    assert answer.status_code == 403
    assert task_row(engine, escalated)[1] is None


def test_sign_out_from_elsewhere_is_refused_and_the_session_goes_on(
    client: TestClient, escalated: str
) -> None:
    token = form_token(client.get("/").text)
    refused = client.post(
        "/signout", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    assert f'data-task="{escalated}"' in client.get("/").text  # still signed in


def test_sign_in_csrf_is_refused_and_opens_no_session(
    client: TestClient, engine: Engine, tokens: dict[str, str]
) -> None:
    attacker = tokens["admin"].removeprefix("Bearer ")
    # The attacker's own sign-in page gives a token bound to the attacker's cookie ...
    with TestClient(client.app) as elsewhere:
        theirs = form_token(elsewhere.get("/").text)
    # ... which the victim's browser, without that cookie, cannot use.
    fresh = client.post("/signin", data={"token": attacker, "csrf_token": theirs},
                        headers={"Origin": ORIGIN})  # fmt: skip
    assert fresh.status_code == 403
    assert "no session cookie" in fresh.text
    client.get("/")  # the victim's browser now holds a pre-session cookie of its own
    assert client.post("/signin", data={"token": attacker, "csrf_token": theirs},
                       headers={"Origin": ORIGIN}).status_code == 403  # fmt: skip
    own = form_token(client.get("/").text)
    cross = client.post("/signin", data={"token": attacker, "csrf_token": own},
                        headers={"Origin": "https://evil.example"})  # fmt: skip
    assert cross.status_code == 403
    assert "carepath_session" not in client.cookies
    assert sessions(engine) == 0


def test_the_session_cookie_alone_never_posts_to_the_api(
    client: TestClient, engine: Engine, escalated: str, late_referral: str
) -> None:
    """The JSON API's writes take a bearer token: a signed-in browser cannot be made to
    drive them, whatever its cookie."""
    headers = {"Origin": ORIGIN}
    assert client.post(f"/tasks/{escalated}/ack", headers=headers).status_code == 401
    event = {"type": "red_flag", "data": {"kind": "ces"}}
    answer = client.post(f"/episodes/{late_referral}/events", json=event, headers=headers)
    assert answer.status_code == 401
    assert task_row(engine, escalated)[1] is None
    view = client.get(f"/episodes/{late_referral}")  # reads do open with the cookie
    assert view.status_code == 200
    assert view.json()["red_flag"] is None


@pytest.fixture
def clinic(engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    """The API configured at https://carepath.clinic.example, reached at another name."""
    web = WebSettings(base_url="https://carepath.clinic.example")
    app = create_app(engine, clock, PathwayDefaults(), web=web)
    with TestClient(app, base_url="https://testserver") as client:
        yield client


def test_with_a_base_url_forms_must_come_from_it_whatever_the_host(
    clinic: TestClient, tokens: dict[str, str]
) -> None:
    token = tokens["coordinator"].removeprefix("Bearer ")
    csrf = form_token(clinic.get("/").text)
    # The request's own origin (its Host header) is not the configured one.
    own = clinic.post("/signin", data={"token": token, "csrf_token": csrf},
                      headers={"Origin": "https://testserver"})  # fmt: skip
    assert own.status_code == 403
    assert "not from carepath at https://carepath.clinic.example" in html.unescape(own.text)
    configured = clinic.post(
        "/signin", data={"token": token, "csrf_token": csrf},
        headers={"Origin": "https://carepath.clinic.example"}, follow_redirects=False,
    )  # fmt: skip
    assert configured.status_code == 303
