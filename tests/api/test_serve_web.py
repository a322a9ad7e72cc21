"""`carepath serve`'s browser-facing settings: its base URL (its own address by default),
and X-Forwarded-Proto believed only from the proxies it is told to trust."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.tokens import create_token
from cli.main import app
from models.db import make_engine
from tests.api.test_serve import CAREPATH_COMMAND, free_port


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--host", "0.0.0.0"], "--base-url: is required with --host '0.0.0.0'"),
        (["--base-url", "carepath.clinic.example"], "--base-url: must be an http"),
        (["--base-url", "https://c.example/carepath"], "--base-url: must be scheme, host"),
        (["--trusted-proxies", "the-proxy"], "--trusted-proxies: 'the-proxy' is not an IP"),
    ],
)
def test_serve_refuses_unusable_web_settings_by_name(arguments: list[str], message: str) -> None:
    refused = CliRunner().invoke(app, ["serve", *arguments], env={"CAREPATH_BASE_URL": ""})
    assert refused.exit_code == 2
    assert message in refused.stderr


def fetch(url: str, headers: dict[str, str]) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, refused.headers, refused.read()


@pytest.mark.parametrize("trusted", [None, "127.0.0.1"], ids=["no-proxy", "trusted-proxy"])
def test_serve_links_to_its_own_address_and_believes_only_trusted_proxies(
    sqlite_template: Path, tmp_path: Path, trusted: str | None
) -> None:
    """On SQLite only: what is checked here is the same on either database."""
    database = tmp_path / "carepath.db"
    shutil.copy(sqlite_template, database)
    db_url = f"sqlite:///{database}"
    engine = make_engine(db_url)
    port = free_port()
    _, feed = create_token(engine, "calendar", "demo", datetime.now(UTC))
    command = ["serve", "--demo", "--port", str(port), "--interval", "60"]
    command += ["--trusted-proxies", trusted] if trusted else []
    environment = {**os.environ, "CAREPATH_DATABASE_URL": db_url}
    environment.pop("CAREPATH_BASE_URL", None)
    process = subprocess.Popen(
        [str(CAREPATH_COMMAND), *command], env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                status, _, body = fetch(url + "/healthz", {})
                assert json.loads(body)["database"] == "ok"
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the service did not come up"
                time.sleep(0.1)
        # A client (not a proxy we trust) claiming TLS is not believed; our proxy is.
        _, headers, _ = fetch(url + "/", {"X-Forwarded-Proto": "https"})
        assert ("secure" in headers["set-cookie"].lower()) is (trusted is not None)
        _, headers, _ = fetch(url + "/", {})
        assert "secure" not in headers["set-cookie"].lower()
        # The calendar links to serve's own address, whatever Host the request names.
        status, _, feed_body = fetch(f"{url}/calendar/demo.ics?token={feed}",
                                     {"Host": "evil.example"})  # fmt: skip
        assert status == 200
        assert f"URL:{url}/pages/episodes/".encode() in feed_body
        assert b"evil.example" not in feed_body
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.communicate()
        engine.dispose()
    assert f"carepath on {url} (API docs at /docs)" in err
