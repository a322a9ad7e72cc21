"""A coordinator's morning in headless Chromium, at desktop width and on a phone: the
emergency on top, a search by reference and a filter, a new patient claimed from the team's
queue and handed to a colleague, the referral snoozed, a call logged, the emergency marked
done with its outcome and reopened, each action confirmed on the list, and an error shown as
a page. Screenshots of each step are kept in artifacts/screenshots/."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine.events import parse_opening
from engine.settings import PathwayDefaults
from models.repository import EpisodeRepository
from models.teams import add_member
from tests.api.browser_kit import NO_BROWSER, SCREENSHOTS, Served, backend, sign_in, waiting

# The pages, not the database, are under test here: one backend is enough (the routes'
# work on both is tested beside them), and it keeps the suite's time down.
pytestmark = [NO_BROWSER, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]
TEAM = "spine"


def flagged(served: Served, ref: str, kind: str, coordinator: str | None) -> str:
    repo = EpisodeRepository(served.engine, PathwayDefaults())
    now = served.clock.now()
    opening = parse_opening({"patient": {"ref": ref}, "team": TEAM, "coordinator": coordinator,
                             "onset": (now - timedelta(days=3)).date().isoformat(),
                             "clinic_timezone": "America/Chicago"})  # fmt: skip
    episode = str(repo.open(opening, now)["id"])
    repo.apply(episode, {"type": "red_flag", "data": {"kind": kind}, "actor": "dr-a"}, now)
    return episode


@pytest.mark.parametrize("width", [1400, 390])
def test_a_coordinators_morning(served: Served, browser: Any, db_url: str, width: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(width, 1000 if width > 400 else 844)
    for name in ("nurse.jones", "nurse.smith"):
        add_member(served.engine, TEAM, name, None, served.clock.now())
    flagged(served, "P-44", "ces", "nurse.jones")  # cauda equina: due within hours
    flagged(served, "P-new", "malignancy", None)  # the team's, in nobody's charge
    wait = waiting(browser)

    def shot(step: str) -> None:
        browser.save_screenshot(str(SCREENSHOTS / f"morning-{step}-{width}-{backend(db_url)}.png"))

    def mine() -> list[Any]:
        return browser.find_elements(By.CSS_SELECTOR, "tr[data-task]")

    def row_of(ref: str) -> Any:
        return next(row for row in mine() if ref in row.text)

    def confirmed(words: str) -> None:
        wait.until(lambda b: words in b.find_element(By.CSS_SELECTOR, "[role=status]").text)

    sign_in(browser, served)
    assert "P-44" in mine()[0].text  # the emergency on top
    assert "emergency" in mine()[0].get_attribute("class")
    shot("1-list")

    # A search by reference, then a filter by severity, then back to everything.
    browser.find_element(By.ID, "patient_ref").send_keys("P-31")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait.until(lambda b: all("P-31" in row.text for row in mine()))
    Select(browser.find_element(By.ID, "severity")).select_by_value("referral")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait.until(lambda b: "severity=referral" in b.current_url)
    assert mine()
    assert all("referral" in row.text for row in mine())
    shot("2-search")
    browser.find_element(By.LINK_TEXT, "Clear").click()
    wait.until(lambda b: len(mine()) >= 2)

    # The team's new patient: claimed, then handed to a colleague.
    queue = browser.find_element(By.CSS_SELECTOR, "tr[data-unassigned]")
    assert "P-new" in queue.text
    queue.find_element(By.XPATH, ".//button[text()='Claim']").click()
    confirmed("claimed: now on your list")
    new = row_of("P-new")
    Select(new.find_element(By.CSS_SELECTOR, "select[name=assignee]")).select_by_value(
        "nurse.smith")  # fmt: skip
    new.find_element(By.XPATH, ".//button[text()='Assign']").click()
    confirmed("handed over to nurse.smith")
    assert not [row for row in mine() if "P-new" in row.text]
    shot("3-assigned")

    # The referral waits four hours, for a reason; a call to the emergency's patient.
    referral = row_of("P-31")
    Select(referral.find_element(By.CSS_SELECTOR, "select[name=hours]")).select_by_value("4")
    referral.find_element(By.CSS_SELECTOR, "input[name=reason]").send_keys("clinic opens at 9")
    referral.find_element(By.XPATH, ".//button[text()='Snooze']").click()
    confirmed("snoozed until")
    assert not [row for row in mine() if "P-31" in row.text]
    emergency = row_of("P-44")
    Select(emergency.find_element(By.CSS_SELECTOR, "select[name=outcome]")).select_by_value(
        "no_answer")  # fmt: skip
    emergency.find_element(By.CSS_SELECTOR, "input[name=note]").send_keys("rang twice")
    emergency.find_element(By.XPATH, ".//button[text()='Log contact']").click()
    confirmed("Contact logged")
    assert "Contact: no answer, nurse.jones" in row_of("P-44").text
    shot("4-call")

    # Done, with what came of it (required for an emergency), then taken back.
    row_of("P-44").find_element(By.XPATH, ".//a[starts-with(@aria-label, 'Mark')]").click()
    wait.until(lambda b: b.find_elements(By.ID, "outcome"))
    assert browser.find_element(By.ID, "outcome").get_attribute("required") is not None
    browser.find_element(By.ID, "outcome").send_keys("seen in the emergency department")
    shot("5-done")
    browser.find_element(By.XPATH, "//button[text()='Confirm done']").click()
    confirmed("marked done")
    assert not [row for row in mine() if "P-44" in row.text]
    browser.find_element(By.XPATH, "//button[text()='Undo: reopen it']").click()
    confirmed("reopened")
    assert "P-44" in mine()[0].text
    assert "reopened by nurse.jones" in mine()[0].text.lower()  # who and when, on the item
    shot("6-reopened")

    # An item that is not there: a page that says so and leads back, never JSON.
    browser.get(f"{served.url}/pages/tasks/999999/done")
    assert "Back to your worklist" in browser.page_source
    assert '"detail"' not in browser.page_source
    shot("7-error")
