"""A sign-in link signs its holder in once, while it is fresh and its token is live; opening
it uses nothing."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from api.sign_in_links import create_link
from api.tokens import create_token, revoke_token
from cli.main import app
from engine.clinic_time import FakeClock
from models.tables import SignInLink
from tests.api.page_forms import ORIGIN, form_token


def use(client: TestClient, code: str) -> httpx.Response:
    page = client.get(f"/signin/link/{code}")
    assert page.status_code == 200
    assert f'name="link" value="{code}"' in page.text
    return client.post(
        "/signin", data={"link": code, "csrf_token": form_token(page.text)},
        headers={"Origin": ORIGIN}, follow_redirects=False,
    )  # fmt: skip


def test_a_link_signs_in_once_and_opening_it_uses_nothing(
    client: TestClient, engine: Engine, clock: FakeClock
) -> None:
    token_id, _ = create_token(engine, "coordinator", "nurse.ade", clock.now())
    code = create_link(engine, token_id, clock.now())
    for _ in range(3):  # a mail scanner's previews
        assert client.get(f"/signin/link/{code}").status_code == 200
    signed_in = use(client, code)
    assert signed_in.status_code == 303
    assert "Worklist for nurse.ade" in client.get("/").text
    with engine.connect() as connection:
        (stored,) = connection.execute(select(SignInLink.code_hash, SignInLink.used_at)).all()
    assert stored.used_at is not None
    assert code not in stored.code_hash  # only its hash is kept
    client.cookies.clear()
    again = use(client, code)
    assert again.status_code == 401
    assert "has been used, has expired" in again.text


@pytest.mark.parametrize("spoiled", ["expired", "revoked", "unknown"])
def test_a_stale_link_opens_nothing(
    client: TestClient, engine: Engine, clock: FakeClock, spoiled: str
) -> None:
    token_id, _ = create_token(engine, "coordinator", "nurse.ade", clock.now())
    code = create_link(engine, token_id, clock.now(), timedelta(hours=1))
    if spoiled == "expired":
        clock.set(clock.now() + timedelta(hours=1, seconds=1))
    elif spoiled == "revoked":
        revoke_token(engine, token_id, clock.now())
    else:
        code = code[:-4] + "AAAA"
    answer = use(client, code)
    assert answer.status_code == 401
    assert "carepath_session" not in client.cookies


def test_the_command_line_hands_out_a_link_at_the_base_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'carepath.db'}"
    monkeypatch.setenv("CAREPATH_BASE_URL", "https://carepath.clinic.example")
    assert CliRunner().invoke(app, ["--db", db, "db", "upgrade"]).exit_code == 0
    made = CliRunner().invoke(
        app, ["--db", db, "token", "create", "--role", "coordinator", "--subject", "alex",
              "--sign-in-link", "--link-valid-hours", "8"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    printed = json.loads(made.stdout)
    assert re.fullmatch(r"https://carepath\.clinic\.example/signin/link/[\w-]{43}",
                        printed["sign_in_link"])  # fmt: skip
    refused = CliRunner().invoke(
        app, ["--db", db, "token", "create", "--role", "service", "--sign-in-link"]
    )
    assert refused.exit_code == 2
    assert "--sign-in-link" in refused.stderr
