"""The coordinator page in a real browser: headless Chromium (Debian's), driven by Selenium.

Signs in as a coordinator, finds the overdue referral on top, acknowledges it, opens the
episode and sees the statechart with its active states highlighted, leaves the list idle
past the session's limit on the app's clock, signs in again and signs out. The
browser enforces the page's Content-Security-Policy without a single violation, on the
pages and on /docs. A page on another origin of the same site (so SameSite cookies go with
its posts) cannot acknowledge an item, sign the browser in with its own token, or frame the
page; a plain link from another site still opens the page signed in. Screenshots are kept
in artifacts/screenshots/.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from api.tokens import create_token
from tests.api.browser_kit import (
    NO_BROWSER,
    SCREENSHOTS,
    Served,
    backend,
    console_errors,
    sign_in,
    waiting,
)

pytestmark = NO_BROWSER


def test_a_coordinator_signs_in_acknowledges_the_escalation_and_sees_the_diagram(
    served: Served, browser: Any, db_url: str
) -> None:
    from selenium.webdriver.common.by import By

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(browser, served)
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert rows[0].get_attribute("class") == "escalated referral"  # status, then severity
    assert "referral" in rows[0].text
    assert "P-31" in rows[0].text
    # The stylesheet is the service's own file, and applied: statuses shown in capitals.
    status = rows[0].find_element(By.CSS_SELECTOR, ".status")
    assert status.value_of_css_property("text-transform") == "uppercase"
    browser.save_screenshot(str(SCREENSHOTS / f"worklist-{backend(db_url)}.png"))

    rows[0].find_element(By.XPATH, ".//button[starts-with(@aria-label, 'Acknowledge')]").click()
    # The form posts, and the browser follows the redirect back to the list.
    wait = waiting(browser)
    wait.until(lambda b: "(seen)" in b.find_element(By.CSS_SELECTOR, "tbody tr").text.lower())
    first = browser.find_elements(By.CSS_SELECTOR, "tbody tr")[0]
    assert "escalated (seen)" in first.text.lower()  # shown in capitals by the stylesheet
    browser.save_screenshot(str(SCREENSHOTS / f"acknowledged-{backend(db_url)}.png"))

    first.find_element(By.LINK_TEXT, "referral").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "img.diagram"))
    assert served.episode in browser.current_url
    diagram = browser.find_element(By.CSS_SELECTOR, "img.diagram")
    deadline = time.monotonic() + 10
    while not browser.execute_script("return arguments[0].naturalWidth", diagram):
        assert time.monotonic() < deadline, "the diagram did not load"
        time.sleep(0.1)
    browser.save_screenshot(str(SCREENSHOTS / f"episode-{backend(db_url)}.png"))
    assert console_errors(browser) == []  # the pages: no CSP violation, nothing missing

    # The browser does enforce the policy: a script slipped into the page does not run.
    browser.execute_script(
        "const s = document.createElement('script');"
        "s.textContent = 'document.body.dataset.injected = 1';"
        "document.head.appendChild(s);"
    )
    assert browser.execute_script("return document.body.dataset.injected") is None
    assert any("Content Security Policy" in line for line in console_errors(browser))

    # The same drawing the page shows, fetched with the page's cookie: the active states.
    browser.get(f"{served.url}/episodes/{served.episode}/diagram.svg")
    active = browser.find_elements(By.CSS_SELECTOR, "g.active title")
    assert {"acute", "overdue"} <= {element.get_attribute("textContent") for element in active}
    console_errors(browser)  # a drawing opened on its own asks for /favicon.ico: a 404

    # The API docs: Swagger UI from carepath's own copy, started by its own script.
    browser.get(served.url + "/docs")
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock"))
    browser.save_screenshot(str(SCREENSHOTS / f"docs-{backend(db_url)}.png"))
    assert console_errors(browser) == []

    # Idle: 29 minutes keep the session, 30 more end it; the list left open then posts.
    browser.get(served.url + "/")
    served.clock.advance(timedelta(minutes=29))
    browser.refresh()
    assert browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    served.clock.advance(timedelta(minutes=30))
    row = browser.find_elements(By.CSS_SELECTOR, "tbody tr")[0]
    row.find_element(By.XPATH, ".//a[starts-with(@aria-label, 'Mark')]").click()
    wait.until(lambda b: b.find_elements(By.ID, "token"))
    assert "Your session has ended" in browser.page_source
    served.escalated_task()  # found: the referral is still escalated, not marked done

    sign_in(browser, served)  # signing in again works at once
    browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
    wait.until(lambda b: b.find_elements(By.ID, "token"))
    # The session is over on the server: its pages are closed to this browser now.
    browser.get(f"{served.url}/pages/episodes/{served.episode}")
    assert browser.find_elements(By.ID, "token")
    assert "session has ended" not in browser.page_source  # its cookie went at sign-out
    assert "P-31" not in browser.page_source  # nothing of the patient's
    # Signing in again leads back to the page that asked for it.
    browser.find_element(By.ID, "token").send_keys(served.token)
    browser.find_element(By.CSS_SELECTOR, "form[action='/signin'] button").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "img.diagram"))
    assert browser.current_url == f"{served.url}/pages/episodes/{served.episode}"


class Attacker:
    """A page on another origin of the same site (127.0.0.1, another port), whose forms
    post to carepath and which frames carepath's list."""

    def __init__(self, page: str) -> None:
        body = page.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_a_page_elsewhere_cannot_post_the_forms_nor_frame_the_page(
    served: Served, browser: Any, db_url: str
) -> None:
    from selenium.webdriver.common.by import By

    task_id, _ = served.escalated_task()
    _, attackers_token = create_token(served.engine, "coordinator", "mallory", served.clock.now())
    attacker = Attacker(
        f"""<!doctype html><html lang="en"><title>Win a prize</title>
        <form method="post" action="{served.url}/pages/tasks/{task_id}/ack">
          <input type="hidden" name="csrf_token" value="{"0" * 64}">
          <button id="acknowledge">Claim your prize</button></form>
        <form method="post" action="{served.url}/signin">
          <input type="hidden" name="token" value="{attackers_token}">
          <button id="sign-in">Claim another</button></form>
        <a href="{served.url}/pages/episodes/{served.episode}">the patient</a>
        <iframe src="{served.url}/" title="carepath"></iframe></html>"""
    )
    try:
        sign_in(browser, served)
        console_errors(browser)
        browser.get(attacker.url)
        # The framed list is refused by the browser (frame-ancestors 'none').
        deadline = time.monotonic() + 10
        framed: list[str] = []
        while not any("frame-ancestors" in line for line in framed):
            assert time.monotonic() < deadline, f"the page was framed: {framed}"
            framed += console_errors(browser)
            time.sleep(0.1)
        for button in ("acknowledge", "sign-in"):
            browser.get(attacker.url)
            browser.find_element(By.ID, button).click()
            waiting(browser).until(lambda b: "carepath" in b.title)
            assert "This form was not accepted" in browser.page_source, button
            assert "another site" in browser.page_source
        browser.save_screenshot(str(SCREENSHOTS / f"refused-{backend(db_url)}.png"))
        assert served.escalated_task()[1] is None  # not acknowledged
        browser.get(served.url + "/")
        assert "Worklist for nurse.jones" in browser.page_source  # not signed in as mallory
        assert "(seen)" not in browser.find_element(By.CSS_SELECTOR, "tbody tr").text.lower()
        # A plain link from another site (a web calendar's, here localhost) still opens the
        # episode page, signed in: the page reopens itself from carepath with the cookie.
        browser.get(attacker.url.replace("127.0.0.1", "localhost"))
        browser.find_element(By.LINK_TEXT, "the patient").click()
        waiting(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, "img.diagram"))
        assert browser.current_url == f"{served.url}/pages/episodes/{served.episode}"
    finally:
        attacker.close()


def test_on_a_phone_the_list_and_the_episode_fit_the_screen(
    browser: Any, served: Served, db_url: str
) -> None:
    """At 390 px wide (a phone) nothing scrolls sideways and every action is on screen."""
    from selenium.webdriver.common.by import By

    browser.set_window_size(390, 844)
    sign_in(browser, served)
    width = browser.execute_script("return window.innerWidth")
    assert width <= 390

    def fits() -> None:
        scrolled = browser.execute_script("return document.documentElement.scrollWidth")
        assert scrolled <= width, f"{scrolled} px wide in a {width} px window"

    fits()
    for button in browser.find_elements(By.CSS_SELECTOR, "tbody button"):
        right = browser.execute_script("return arguments[0].getBoundingClientRect().right", button)
        assert right <= width, button.text
    browser.save_screenshot(str(SCREENSHOTS / f"worklist-phone-{backend(db_url)}.png"))
    browser.get(f"{served.url}/pages/episodes/{served.episode}")
    waiting(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, "h2"))
    fits()
    browser.save_screenshot(str(SCREENSHOTS / f"episode-phone-{backend(db_url)}.png"))
