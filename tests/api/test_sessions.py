"""The page's server-side sessions: idle and absolute expiry on the app's clock, sign-out,
revocation of the token (at once, whatever the token cache), and the Secure flag."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from api.app import create_app
from api.security import WebSettings
from api.sessions import SessionPolicy
from api.tokens import create_token
from cli.main import app as cli
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from tests.api.conftest import NOW
from tests.api.page_forms import form_token, sign_in

SIGNED_IN = "Worklist for"
ENDED = "Your session has ended"


@pytest.fixture
def cached(engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    """The app as `serve` runs it: live tokens remembered for 5 seconds."""
    app = create_app(engine, clock, PathwayDefaults(), token_cache_seconds=5)
    with TestClient(app) as client:
        yield client


def coordinator(engine: Engine) -> tuple[int, str]:
    return create_token(engine, "coordinator", "coordinator-1", NOW)


def test_a_session_ends_after_30_idle_minutes_and_activity_keeps_it(
    cached: TestClient, engine: Engine, clock: FakeClock
) -> None:
    assert sign_in(cached, coordinator(engine)[1]).status_code == 303
    for _ in range(4):  # a request every 29 minutes: two hours and still signed in
        clock.advance(timedelta(minutes=29))
        assert SIGNED_IN in cached.get("/").text
    clock.advance(timedelta(minutes=30))
    page = cached.get("/")
    assert ENDED in page.text
    assert SIGNED_IN not in page.text


def test_a_busy_session_still_ends_12_hours_after_sign_in(
    cached: TestClient, engine: Engine, clock: FakeClock
) -> None:
    assert sign_in(cached, coordinator(engine)[1]).status_code == 303
    session_id = cached.cookies["carepath_session"]
    for _ in range(12 * 3 - 1):  # every 20 minutes, up to 11 h 40 min
        clock.advance(timedelta(minutes=20))
        assert SIGNED_IN in cached.get("/").text
    clock.advance(timedelta(minutes=20))
    assert ENDED in cached.get("/").text
    cached.cookies.set("carepath_session", session_id)
    assert cached.get("/episodes").status_code == 401  # nor does it read the API


def test_the_limits_come_from_the_settings(engine: Engine, clock: FakeClock) -> None:
    web = WebSettings(session=SessionPolicy(timedelta(minutes=5), timedelta(hours=1)))
    with TestClient(create_app(engine, clock, PathwayDefaults(), web=web)) as client:
        answer = sign_in(client, coordinator(engine)[1])
        assert "max-age=3600" in answer.headers["set-cookie"].lower()
        clock.advance(timedelta(minutes=4, seconds=59))
        assert SIGNED_IN in client.get("/").text
        clock.advance(timedelta(minutes=5))
        assert ENDED in client.get("/").text


def test_revoking_the_token_ends_its_sessions_at_once(
    cached: TestClient, engine: Engine, db_url: str, late_referral: str
) -> None:
    token_id, token = coordinator(engine)
    assert sign_in(cached, token).status_code == 303
    session_id = cached.cookies["carepath_session"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert cached.get(f"/episodes/{late_referral}", headers=bearer).status_code == 200  # cached
    revoked = CliRunner().invoke(
        cli, ["token", "revoke", str(token_id)], env={"CAREPATH_DATABASE_URL": db_url}
    )
    assert revoked.exit_code == 0, revoked.output
    # The page, the drawing and the API through the cookie stop now, not in 5 seconds ...
    assert ENDED in cached.get("/").text
    cached.cookies.set("carepath_session", session_id)
    assert cached.get(f"/episodes/{late_referral}/diagram.svg").status_code == 401
    cached.cookies.set("carepath_session", session_id)
    episode_page = cached.get(f"/pages/episodes/{late_referral}", headers={"Accept": "text/html"})
    assert episode_page.status_code == 401
    assert ENDED in episode_page.text
    # ... and the revoked token opens no new session.
    assert sign_in(cached, token).status_code == 401


@pytest.mark.parametrize(
    ("scheme", "base_url", "secure"),
    [
        ("http", None, False),
        ("https", None, True),  # served over TLS (uvicorn's scope says https)
        ("http", "https://carepath.clinic.example", True),  # TLS ends at a proxy
    ],
)
def test_the_cookies_are_secure_when_served_over_tls(
    engine: Engine, clock: FakeClock, scheme: str, base_url: str | None, secure: bool
) -> None:
    web = WebSettings(base_url=base_url)
    app = create_app(engine, clock, PathwayDefaults(), web=web)
    with TestClient(app, base_url=f"{scheme}://testserver") as client:
        presession = client.get("/").headers["set-cookie"].lower()
        assert ("; secure" in presession) is secure
        page = client.get("/").text
        answer = client.post(
            "/signin",
            data={"token": coordinator(engine)[1], "csrf_token": form_token(page)},
            headers={"Origin": base_url or f"{scheme}://testserver"},
            follow_redirects=False,
        )
    if not secure or scheme == "https":
        assert answer.status_code == 303, answer.text
        session = next(c for c in answer.headers.get_list("set-cookie") if "carepath_session=" in c)
        assert ("; secure" in session.lower()) is secure
    else:
        # Over plain HTTP a browser (and this client) keeps a Secure cookie to itself: the
        # form's pre-session cookie does not come back, and the form is refused.
        assert answer.status_code == 403
