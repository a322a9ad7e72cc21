"""Driving the coordinator page's forms as a browser does: the CSRF token from the page, and
the Origin a browser sends with a form post."""

from __future__ import annotations

import re

import httpx2 as httpx
from fastapi.testclient import TestClient

ORIGIN = "http://testserver"  # TestClient's own origin
FORM_TOKEN = re.compile(r'<input type="hidden" name="csrf_token" value="([0-9a-f]*)">')


def form_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = FORM_TOKEN.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, token: str) -> httpx.Response:
    """Open the sign-in page, then post its form with ``token``."""
    page = client.get("/")
    return client.post(
        "/signin",
        data={"token": token.removeprefix("Bearer "), "csrf_token": form_token(page.text)},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )


def post_form(client: TestClient, action: str, page: str = "/", **fields: str) -> httpx.Response:
    """Post the form at ``action`` with the CSRF token ``page`` carries, following the
    redirect as a browser does."""
    token = form_token(client.get(page).text)
    return client.post(
        action, data={"csrf_token": token, **fields}, headers={"Origin": ORIGIN},
        follow_redirects=True,
    )  # fmt: skip
