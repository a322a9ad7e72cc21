"""The coordinator's pages, driven as a browser without JavaScript would: forms and links."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def sign_in(client: TestClient, tokens: dict[str, str], role: str = "coordinator") -> int:
    token = tokens[role].removeprefix("Bearer ")
    answer = client.post("/signin", data={"token": token}, follow_redirects=False)
    return answer.status_code


def test_the_home_page_asks_for_a_token_first(client: TestClient, tokens: dict[str, str]) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert '<label for="token">' in page.text
    assert sign_in(client, tokens, "service") == 401  # not a coordinator
    assert client.post("/signin", data={"token": "cp_wrong"}).status_code == 401
    assert 'role="alert"' in client.post("/signin", data={"token": "cp_wrong"}).text


def test_a_coordinator_works_the_list_from_the_page(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    answer = client.post(
        "/signin", data={"token": tokens["coordinator"].removeprefix("Bearer ")},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie

    page = client.get("/").text
    rows = re.findall(r'<tr class="(\w+)" data-task="(\d+)">', page)
    assert rows[0][0] == "escalated"  # the overdue referral, escalated, on top
    assert "P-31" in page
    task = rows[0][1]
    acked = client.post(f"/pages/tasks/{task}/ack", follow_redirects=True)
    assert acked.status_code == 200
    assert "escalated (seen)" in acked.text

    episode = client.get(f"/pages/episodes/{late_referral}")
    assert episode.status_code == 200
    assert f'src="/episodes/{late_referral}/diagram.svg"' in episode.text
    assert "PH-SUBACUTE" in episode.text or "PH-ACUTE" in episode.text  # recommendations
    assert "Timeline" in episode.text
    diagram = client.get(f"/episodes/{late_referral}/diagram.svg")  # with the page's cookie
    assert diagram.status_code == 200
    assert 'class="node active"' in diagram.text

    done = client.post(f"/pages/tasks/{task}/done", follow_redirects=True)
    assert f'data-task="{task}"' not in done.text
    client.post("/signout")
    assert '<label for="token">' in client.get("/").text
