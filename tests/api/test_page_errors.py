"""On the coordinator's pages an error is a page saying what happened and what to do next,
never raw JSON; the API keeps answering problems."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.api.page_forms import ORIGIN, form_token, sign_in

HTML = {"Accept": "text/html,application/xhtml+xml"}


def test_an_unknown_episode_page_is_a_page_that_leads_back(
    client: TestClient, tokens: dict[str, str]
) -> None:
    sign_in(client, tokens["coordinator"])
    answer = client.get("/pages/episodes/no-such-episode", headers=HTML)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "may have been closed or removed" in answer.text
    assert '<a href="/">Back to your worklist</a>' in answer.text
    # The API, asked the same by a program, still answers a problem.
    api = client.get("/pages/episodes/no-such-episode")
    assert api.headers["content-type"].startswith("application/problem+json")


def test_done_on_a_stale_page_says_reload_and_changes_nothing(
    client: TestClient, tokens: dict[str, str], late_referral: str
) -> None:
    sign_in(client, tokens["coordinator"])
    task = re.findall(r'data-task="(\d+)"', client.get("/").text)[0]
    confirm = client.get(f"/pages/tasks/{task}/done").text
    # Meanwhile the referral is recorded, which closes the item.
    sent = {"type": "referral_sent", "data": {"service": "spine clinic"}}
    service = {"Authorization": tokens["service"]}
    assert client.post(f"/episodes/{late_referral}/events", json=sent,
                       headers=service).status_code == 200  # fmt: skip
    again = client.post(
        f"/pages/tasks/{task}/done",
        data={"csrf_token": form_token(confirm), "outcome": "referral faxed"},
        headers={"Origin": ORIGIN, **HTML},
    )  # fmt: skip
    assert again.status_code == 422
    assert again.headers["content-type"].startswith("text/html")
    assert "Reload the list" in again.text
    assert "nothing was changed" in again.text
    assert "{" not in again.text.split("<main", 1)[-1].split("</main>", 1)[0]


@pytest.mark.parametrize(("path", "status"), [("/pages/nowhere", 404)])
def test_a_page_that_does_not_exist_is_a_page(
    client: TestClient, tokens: dict[str, str], path: str, status: int
) -> None:
    sign_in(client, tokens["coordinator"])
    answer = client.get(path, headers=HTML)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
