"""Every page a coordinator sees, checked by axe-core in headless Chromium: no violation of
any rule axe runs (WCAG 2.x A and AA, and its best practices), at desktop width and at a
phone's 390 px.

axe-core comes from the npm registry (``tests/browser/package.json``, installed by
``make setup``) and is injected into each page as it stands, after sign-in, so that the
pages are checked with their forms, tables and notices filled in. Screenshots of each page
are kept in artifacts/screenshots/.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.sign_in_links import create_link
from api.tokens import create_token
from engine.settings import PathwayDefaults
from models.repository import EpisodeRepository
from models.tables import Task
from tests.api.browser_kit import NO_BROWSER, SCREENSHOTS, Served, backend, sign_in, waiting

AXE = Path(__file__).resolve().parents[1] / "browser" / "node_modules" / "axe-core" / "axe.min.js"

MISSING = "axe-core is not installed: run make setup (npm ci in tests/browser)"
# What axe checks is the pages' markup, the same on either backend: one is enough.
pytestmark = [NO_BROWSER, pytest.mark.skipif(not AXE.exists(), reason=MISSING),
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]  # fmt: skip


def violations(browser: Any) -> list[str]:
    """What axe-core finds wrong with the page as it stands, one line per rule and node."""
    browser.execute_script(AXE.read_text("utf-8"))
    found = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        "  .then(r => done(r.violations.map(v => ({id: v.id, help: v.help,"
        "    nodes: v.nodes.map(n => n.target.join(' '))}))))"
        "  .catch(e => done([{id: 'axe-error', help: String(e), nodes: []}]));"
    )
    return [f"{v['id']}: {v['help']} at {', '.join(v['nodes'])}" for v in found]


def flagged_episode(served: Served) -> str:
    """A cauda equina patient of nurse.jones's, flagged now: the episode page leads with it."""
    from engine.events import parse_opening

    repo = EpisodeRepository(served.engine, PathwayDefaults())
    now = served.clock.now()
    opening = parse_opening({"patient": {"ref": "P-44"}, "onset": (now - timedelta(days=3))
                             .date().isoformat(), "coordinator": "nurse.jones",
                             "clinic_timezone": "America/Chicago"})  # fmt: skip
    episode = str(repo.open(opening, now)["id"])
    repo.apply(episode, {"type": "red_flag", "data": {"kind": "ces"}, "actor": "dr-a"}, now)
    return episode


@pytest.mark.parametrize("width", [1400, 390])
def test_every_page_a_coordinator_sees_has_no_accessibility_violation(
    served: Served, browser: Any, db_url: str, width: int
) -> None:
    from selenium.webdriver.common.by import By

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(width, 1000 if width > 400 else 844)
    flagged = flagged_episode(served)
    with served.engine.connect() as connection:
        work_up = connection.execute(
            select(Task.id).where(Task.episode_id == flagged, Task.severity == 0)
        ).scalar_one()
    token_id, _ = create_token(served.engine, "coordinator", "nurse.jones", served.clock.now())

    browser.get(served.url + "/")
    found = {"sign-in": violations(browser)}
    sign_in(browser, served)
    found["worklist"] = violations(browser)
    browser.get(f"{served.url}/pages/episodes/{flagged}")
    waiting(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, "h2"))
    found["episode under a red flag"] = violations(browser)
    browser.get(f"{served.url}/pages/episodes/{served.episode}")
    found["episode"] = violations(browser)
    browser.get(f"{served.url}/pages/tasks/{work_up}/done")
    found["done, confirmed"] = violations(browser)
    browser.find_element(By.ID, "outcome").send_keys("seen in the emergency department")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/done'] button").click()
    waiting(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, "[role=status]"))
    found["worklist, after an action"] = violations(browser)
    browser.save_screenshot(str(SCREENSHOTS / f"worklist-done-{width}-{backend(db_url)}.png"))
    browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
    waiting(browser).until(lambda b: b.find_elements(By.ID, "token"))
    sign_in(browser, served)
    browser.get(f"{served.url}/pages/tasks/999999/done")
    found["an error page"] = violations(browser)
    browser.get(served.url + "/")
    browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
    link = create_link(served.engine, token_id, served.clock.now(), timedelta(hours=1))
    browser.get(f"{served.url}/signin/link/{link}")
    found["a sign-in link"] = violations(browser)
    browser.save_screenshot(str(SCREENSHOTS / f"sign-in-link-{width}-{backend(db_url)}.png"))

    assert {page: lines for page, lines in found.items() if lines} == {}


def test_axe_finds_what_a_page_gets_wrong(served: Served, browser: Any) -> None:
    """The check can fail: an image without a text alternative, slipped into the sign-in
    page, is named."""
    browser.get(served.url + "/")
    browser.execute_script(
        "const img = document.createElement('img'); img.src = '/favicon.ico';"
        "document.querySelector('main').appendChild(img);"
    )
    assert any(line.startswith("image-alt:") for line in violations(browser))
