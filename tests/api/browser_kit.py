"""Headless Chromium (Debian's) driven by Selenium against the API served on a free port in
this process: the fixtures (``served``, ``browser``, registered in tests/api/conftest.py) and
helpers of the browser tests."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine, select

from api.app import create_app
from api.security import WebSettings
from api.tokens import create_token
from engine.clinic_time import FakeClock
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.repository import EpisodeRepository
from models.tables import Task
from schedulers.worker import Worker

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
ONSET = datetime(2026, 1, 5, tzinfo=UTC)

NO_BROWSER = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium and chromium-driver are not installed (scripts/install-system-deps.sh)",
)


def late_referral(engine: Engine, clock: FakeClock) -> str:
    repo = EpisodeRepository(engine, PathwayDefaults())
    enrolled = ONSET + timedelta(days=1)
    opening = parse_opening(
        {"patient": {"ref": "P-31", "age": 47}, "onset": "2026-01-05",
         "enrolled_at": enrolled.isoformat(), "coordinator": "nurse.jones"}
    )  # fmt: skip
    episode = str(repo.open(opening, enrolled)["id"])
    severe = {"type": "assessment", "data": {"vas_leg": 9, "odi": 70, "severe_disabling": True}}
    repo.apply(episode, severe, enrolled + timedelta(days=1))
    Worker(repo, clock).sweep()  # 2 weeks and more later: the referral has escalated
    return episode


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    url: str
    token: str
    episode: str
    clock: FakeClock
    engine: Engine

    def escalated_task(self) -> tuple[int, Any]:
        """The referral's task id, and when it was acknowledged (None: not yet)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(Task.id, Task.acknowledged_at).where(
                    Task.episode_id == self.episode, Task.status == "escalated"
                )
            ).one()
        return row.id, row.acknowledged_at


@pytest.fixture
def served(engine: Engine) -> Iterator[Served]:
    """The API on a free port in this process, configured at its own address as `serve`
    is, on a clock the test moves."""
    clock = FakeClock(ONSET + timedelta(days=20))
    episode = late_referral(engine, clock)
    _, token = create_token(engine, "coordinator", "nurse.jones", clock.now())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(engine, clock, PathwayDefaults(), web=WebSettings(base_url=url))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield Served(url, token, episode, clock, engine)
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def waiting(browser: Any) -> Any:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # A page being replaced can hand back elements that are gone (stale, or "node does not
    # belong to the document"): look again, until the deadline says otherwise.
    return WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,))


def sign_in(browser: Any, served: Served, token: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    browser.get(served.url + "/")
    browser.find_element(By.ID, "token").send_keys(token or served.token)
    browser.find_element(By.CSS_SELECTOR, "form[action='/signin'] button").click()
    waiting(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, "tbody tr"))


def console_errors(browser: Any) -> list[str]:
    """What the console logged as errors since last asked (CSP violations among them)."""
    return [entry["message"] for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE"]  # fmt: skip


def backend(db_url: str) -> str:
    return db_url.split(":", 1)[0].split("+")[0]
