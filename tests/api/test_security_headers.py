"""Security headers on every answer, no inline script or style on any page, the API docs
from carepath itself, and links from the configured base URL whatever the Host header."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.security import (
    CONTENT_SECURITY_POLICY,
    WebSettingError,
    WebSettings,
    default_base_url,
    parse_base_url,
    parse_trusted_proxies,
)
from api.tokens import create_token
from engine.clinic_time import FakeClock
from engine.settings import PathwayDefaults
from tests.api.conftest import NOW
from tests.api.page_forms import sign_in

EXPECTED = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
INLINE = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", re.IGNORECASE)


def assert_protected(answer: object, cached: bool = False) -> None:
    headers = answer.headers  # type: ignore[attr-defined]
    for name, value in EXPECTED.items():
        assert headers[name] == value, name
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers.get_list("cache-control") == (
        ["public, max-age=3600"] if cached else ["no-store"]
    )


def test_every_page_and_json_answer_carries_the_headers_and_no_store(
    client: TestClient, tokens: dict[str, str], late_referral: str, engine: Engine
) -> None:
    bearer = {"Authorization": tokens["service"]}
    feed = create_token(engine, "calendar", "coordinator-1", NOW)[1]
    answers = {
        "sign-in page": client.get("/"),
        "episode JSON": client.get(f"/episodes/{late_referral}", headers=bearer),
        "episode list": client.get("/episodes", headers=bearer),
        "worklist": client.get("/worklist", headers={"Authorization": tokens["coordinator"]}),
        "calendar": client.get("/calendar/coordinator-1.ics", params={"token": feed}),
        "a 401 problem": client.get(f"/episodes/{late_referral}"),
        "a 404 problem": client.get("/no-such-route"),
        "health": client.get("/healthz"),
        "openapi": client.get("/openapi.json"),
        "docs": client.get("/docs"),
    }
    sign_in(client, tokens["coordinator"])
    answers["worklist page"] = client.get("/")
    answers["episode page"] = client.get(f"/pages/episodes/{late_referral}")
    answers["refused form"] = client.post("/signout", data={"csrf_token": "x"})
    for name, answer in answers.items():
        assert answer.status_code < 500, name
        assert_protected(answer)
    for name in ("sign-in page", "worklist page", "episode page", "refused form", "docs"):
        assert not INLINE.search(answers[name].text), f"{name} has inline script or style"


def test_the_assets_are_served_by_carepath_and_may_be_cached(client: TestClient) -> None:
    docs = client.get("/docs").text
    linked = re.findall(r'(?:src|href)="([^"]+)"', docs)
    assert linked, "the docs page links no assets"
    for url in linked:
        if url == "data:,":  # no favicon request
            continue
        assert url.startswith("/assets/"), f"/docs loads {url} from elsewhere"
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert_protected(answer, cached=True)
    assert "SwaggerUIBundle" in client.get("/assets/docs.js").text
    assert client.get("/assets/carepath.css").headers["content-type"].startswith("text/css")
    assert client.get("/assets/../api/app.py").status_code == 404
    assert client.get("/assets/swagger-ui/index.html").status_code == 404  # listed files only
    assert client.get("/redoc").status_code == 404


def test_hsts_only_with_an_https_base_url(engine: Engine, clock: FakeClock) -> None:
    for base, expected in (("https://carepath.clinic.example", True), (None, False)):
        app = create_app(engine, clock, PathwayDefaults(), web=WebSettings(base_url=base))
        with TestClient(app) as client:
            answer = client.get("/healthz")
        assert ("strict-transport-security" in answer.headers) is expected, base


def test_calendar_links_open_the_episode_page_at_the_base_url_whatever_the_host(
    client: TestClient, late_referral: str, engine: Engine, clock: FakeClock
) -> None:
    from icalendar import Calendar

    feed = create_token(engine, "calendar", "coordinator-1", NOW)[1]
    web = WebSettings(base_url="https://carepath.clinic.example")
    with TestClient(create_app(engine, clock, PathwayDefaults(), web=web)) as configured:
        for host in ("testserver", "evil.example", "carepath.clinic.example:8443"):
            answer = configured.get(
                "/calendar/coordinator-1.ics", params={"token": feed}, headers={"Host": host}
            )
            (event, *_) = Calendar.from_ical(answer.content).walk("VEVENT")
            page = f"https://carepath.clinic.example/pages/episodes/{late_referral}"
            assert str(event["url"]) == f"{page}#task-referral", host
    # With no base URL configured there is no address to link to: no link, not a guess.
    answer = client.get(
        "/calendar/coordinator-1.ics", params={"token": feed}, headers={"Host": "evil.example"}
    )
    assert b"evil.example" not in answer.content
    assert "url" not in Calendar.from_ical(answer.content).walk("VEVENT")[0]


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://carepath.clinic.example", "https://carepath.clinic.example"),
        ("https://Carepath.Clinic.Example:443/", "https://carepath.clinic.example"),
        ("http://10.0.0.5:8000", "http://10.0.0.5:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_a_base_url_is_kept_as_its_origin(given: str, origin: str) -> None:
    assert parse_base_url(given) == origin


@pytest.mark.parametrize(
    "given",
    ["carepath.clinic.example", "ftp://x.example", "https://x.example/carepath",
     "https://x.example/?a=1", "https://user@x.example", "https://x.example:99999"],
)  # fmt: skip
def test_an_unusable_base_url_is_refused_by_name(given: str) -> None:
    with pytest.raises(WebSettingError) as refused:
        parse_base_url(given)
    assert refused.value.setting == "CAREPATH_BASE_URL"


def test_web_settings_from_the_environment() -> None:
    web = WebSettings.from_env(
        {"CAREPATH_BASE_URL": "https://c.example/", "CAREPATH_SESSION_IDLE_MINUTES": "15",
         "CAREPATH_SESSION_MAX_HOURS": "8"}
    )  # fmt: skip
    assert web.base_url == "https://c.example"
    assert (web.session.idle.total_seconds(), web.session.absolute.total_seconds()) == (
        900,
        8 * 3600,
    )
    defaults = WebSettings.from_env({})
    assert defaults.base_url is None
    assert (defaults.session.idle.total_seconds(), defaults.session.absolute.total_seconds()) == (
        1800,
        12 * 3600,
    )
    for env, name in (
        ({"CAREPATH_SESSION_IDLE_MINUTES": "soon"}, "CAREPATH_SESSION_IDLE_MINUTES"),
        ({"CAREPATH_SESSION_MAX_HOURS": "-1"}, "CAREPATH_SESSION_MAX_HOURS"),
        ({"CAREPATH_SESSION_IDLE_MINUTES": "900"}, "CAREPATH_SESSION_IDLE_MINUTES"),  # > 12 h
    ):
        with pytest.raises(WebSettingError) as refused:
            WebSettings.from_env(env)
        assert refused.value.setting == name


def test_trusted_proxies_and_the_default_base_url() -> None:
    assert parse_trusted_proxies("10.0.0.2, 10.1.0.0/16") == "10.0.0.2,10.1.0.0/16"
    assert parse_trusted_proxies(" ") is None
    with pytest.raises(WebSettingError, match="proxy.example"):
        parse_trusted_proxies("proxy.example")
    assert default_base_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert default_base_url("::1", 8000) == "http://[::1]:8000"
    with pytest.raises(WebSettingError, match="--base-url"):
        default_base_url("0.0.0.0", 8000)
