"""The coordinator's pages, driven as a browser without JavaScript would: forms and links."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.tokens import digest
from models.tables import WebSession
from tests.api.page_forms import ORIGIN, form_token, post_form, sign_in


def test_the_home_page_asks_for_a_token_first(client: TestClient, tokens: dict[str, str]) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert '<label for="token">' in page.text
    assert sign_in(client, tokens["service"]).status_code == 401  # not a coordinator
    refused = sign_in(client, "cp_wrong")
    assert refused.status_code == 401
    assert 'role="alert"' in refused.text
    assert "carepath_session" not in refused.headers.get("set-cookie", "")


def test_a_coordinator_works_the_list_from_the_page(
    client: TestClient, tokens: dict[str, str], late_referral: str, engine: Engine
) -> None:
    answer = sign_in(client, tokens["coordinator"])
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/" in cookie
    # The cookie names a session; the token stays with the coordinator.
    session_id = client.cookies["carepath_session"]
    token = tokens["coordinator"].removeprefix("Bearer ")
    assert token not in answer.headers["set-cookie"]
    assert len(session_id) >= 43  # 256 random bits, URL-safe base64
    with engine.connect() as connection:
        (stored,) = connection.execute(select(WebSession.session_hash)).scalars().all()
    assert stored == digest(session_id)

    page = client.get("/").text
    rows = re.findall(r'<tr class="(\w+) (\w+)" data-task="(\d+)">', page)
    assert rows[0][:2] == ("escalated", "referral")  # the missed referral, on top
    assert "P-31" in page
    assert re.search(r"overdue by \d+ d( \d+ h)?</span>", page)
    task = rows[0][2]
    acked = post_form(client, f"/pages/tasks/{task}/ack")
    assert acked.status_code == 200
    assert "escalated (seen)" in acked.text

    episode = client.get(f"/pages/episodes/{late_referral}")
    assert episode.status_code == 200
    assert f'src="/episodes/{late_referral}/diagram.svg"' in episode.text
    assert "PH-SUBACUTE" in episode.text or "PH-ACUTE" in episode.text  # recommendations
    assert "Timeline" in episode.text
    assert "<dd>lumbosacral-radiculopathy, version 1.0.0</dd>" in episode.text
    diagram = client.get(f"/episodes/{late_referral}/diagram.svg")  # with the page's cookie
    assert diagram.status_code == 200
    assert 'class="node active"' in diagram.text

    # Done asks what came of it, and a referral still to be made is not silenced.
    confirm = client.get(f"/pages/tasks/{task}/done")
    assert confirm.status_code == 200
    assert "The episode's referral is still overdue" in confirm.text
    assert 'name="outcome" maxlength="200" size="40" required' in confirm.text
    refused = post_form(client, f"/pages/tasks/{task}/done", page=f"/pages/tasks/{task}/done",
                        outcome="phoned the spine clinic")  # fmt: skip
    assert refused.status_code == 409
    assert f'data-task="{task}"' in client.get("/").text  # still on the list
    signed_out = post_form(client, "/signout")
    assert '<label for="token">' in signed_out.text
    assert "carepath_session" not in client.cookies
    # The old cookie, replayed, opens nothing.
    client.cookies.set("carepath_session", session_id)
    assert client.get(f"/episodes/{late_referral}/diagram.svg").status_code == 401
    again = client.get("/")
    assert "session has ended" in again.text
    assert '<label for="token">' in again.text


def test_a_link_from_another_site_reopens_itself_then_leads_on_after_sign_in(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    """A web calendar's link arrives without the SameSite=Strict cookie: the page opens
    itself again from carepath (no script), and sign-in leads back to it."""
    here = f"/pages/episodes/{late_referral}"
    html = {"Accept": "text/html"}
    hop = client.get(here, headers={**html, "Sec-Fetch-Site": "cross-site"})
    assert hop.status_code == 200
    assert f'<meta http-equiv="refresh" content="0; url={here}">' in hop.text
    assert '<label for="token">' not in hop.text
    page = client.get(here, headers={**html, "Sec-Fetch-Site": "same-origin"})
    assert page.status_code == 401
    assert f'<input type="hidden" name="next" value="{here}">' in page.text
    token = tokens["coordinator"].removeprefix("Bearer ")
    for given, landing in ((here, here), ("https://evil.example/", "/"), ("//evil.example", "/")):
        client.cookies.clear()
        csrf = form_token(client.get("/").text)
        answer = client.post(
            "/signin", data={"token": token, "csrf_token": csrf, "next": given},
            headers={"Origin": ORIGIN}, follow_redirects=False,
        )  # fmt: skip
        assert answer.status_code == 303, given
        assert answer.headers["location"] == landing
