"""The coordinator page in a real browser: headless Chromium (Debian's), driven by Selenium.

Signs in as a coordinator, finds the overdue referral on top, acknowledges it, opens the
episode and sees the statechart with its active states highlighted. Screenshots are kept
in artifacts/screenshots/.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import Engine

from api.app import create_app
from api.tokens import create_token
from engine.clinic_time import FakeClock
from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.repository import EpisodeRepository
from schedulers.worker import Worker

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
ONSET = datetime(2026, 1, 5, tzinfo=UTC)

pytestmark = pytest.mark.skipif(
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


@pytest.fixture
def served(engine: Engine) -> Iterator[tuple[str, str, str]]:
    """The API on a free port in this process; yields its URL, a token, the episode id."""
    clock = FakeClock(ONSET + timedelta(days=20))
    episode = late_referral(engine, clock)
    _, token = create_token(engine, "coordinator", "nurse.jones", clock.now())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(engine, clock, PathwayDefaults()), host="127.0.0.1", port=port,
        log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", token, episode
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_coordinator_signs_in_acknowledges_the_escalation_and_sees_the_diagram(
    served: tuple[str, str, str], browser: object, db_url: str
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    url, token, episode = served
    backend = db_url.split(":", 1)[0].split("+")[0]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    browser.get(url + "/")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form[action='/signin'] button").click()
    # A page being replaced can hand back elements that are gone: look again.
    wait = WebDriverWait(browser, 10, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "tbody tr"))
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert rows[0].get_attribute("class") == "escalated"
    assert "referral" in rows[0].text
    assert "P-31" in rows[0].text
    browser.save_screenshot(str(SCREENSHOTS / f"worklist-{backend}.png"))

    rows[0].find_element(By.XPATH, ".//button[starts-with(@aria-label, 'Acknowledge')]").click()
    # The form posts, and the browser follows the redirect back to the list.
    wait.until(lambda b: "(seen)" in b.find_element(By.CSS_SELECTOR, "tbody tr").text.lower())
    first = browser.find_elements(By.CSS_SELECTOR, "tbody tr")[0]
    assert "escalated (seen)" in first.text.lower()  # shown in capitals by the stylesheet
    browser.save_screenshot(str(SCREENSHOTS / f"acknowledged-{backend}.png"))

    first.find_element(By.LINK_TEXT, "referral").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "img.diagram"))
    assert episode in browser.current_url
    diagram = browser.find_element(By.CSS_SELECTOR, "img.diagram")
    deadline = time.monotonic() + 10
    while not browser.execute_script("return arguments[0].naturalWidth", diagram):
        assert time.monotonic() < deadline, "the diagram did not load"
        time.sleep(0.1)
    browser.save_screenshot(str(SCREENSHOTS / f"episode-{backend}.png"))
    # The same drawing the page shows, fetched with the page's cookie: the active states.
    browser.get(f"{url}/episodes/{episode}/diagram.svg")
    active = browser.find_elements(By.CSS_SELECTOR, "g.active title")
    assert {"acute", "overdue"} <= {element.get_attribute("textContent") for element in active}
