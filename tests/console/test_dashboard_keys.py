# ruff: noqa: F811  (the fixtures imported from test_dashboard are parameters here)
"""`supaqueue ui` in headless Chromium (issue #26): the queues page counts each queue's active
keys and links to the queue's page, which lists its busiest keys (running, ready, hold); a
key's text is shown as text, never as HTML."""

from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.console.conftest import Jobs
from tests.console.test_dashboard import (  # noqa: F401 (fixtures)
    Ui,
    browser,
    click,
    login,
    rows,
    ui,
    wait_for,
)

HTML_KEY = '<b id="injected">tenant-c</b>'


def keys_rows(browser: WebDriver) -> list[list[str]]:
    # read in one script: the live refresh re-renders the rows
    found: list[list[str]] = browser.execute_script(
        "return [...document.querySelectorAll('#keys tbody tr')].map((tr) =>"
        " [...tr.querySelectorAll('td')].map((td) => td.textContent))"
    )
    return found


def test_the_queue_page_lists_its_busiest_keys(browser: WebDriver, ui: Ui, jobs: Jobs) -> None:
    e = jobs.engine
    q = e.queue(workers=2, workers_per_key=1, name="tenants")
    for key, n in (("a", 3), ("b", 2)):
        for _ in range(n):
            e.enqueue(q, {}, _key=key)
    e.conn.execute(
        "insert into supaqueue.queue_key (queue, key, due_at, held_until, hold_reason)"
        " values (%s, %s, now() + interval '10 minutes', now() + interval '10 minutes',"
        " 'HTTP 429 with Retry-After: 600 s (job z)')",
        (q, HTML_KEY),
    )
    e.enqueue(q, {}, _key=HTML_KEY)

    login(browser, ui)
    browser.get(ui.origin + "/")
    cell = '#queues tr[data-queue="tenants"] td.keys'
    wait_for("the key count", lambda: browser.find_element(By.CSS_SELECTOR, cell).text == "3")
    emails = '#queues tr[data-queue="emails"] td.keys'
    assert browser.find_element(By.CSS_SELECTOR, emails).text == "\u2013"  # no keys (an en dash)
    click(browser, cell + " a")
    wait_for("the queue page", lambda: browser.current_url.endswith("/queues/tenants"))
    wait_for("its keys", lambda: len(keys_rows(browser)) == 3)
    got = {r[0]: r for r in keys_rows(browser)}
    assert got["a"][1:3] == ["1", "2"] and got["b"][1:3] == ["1", "1"]
    held = got[HTML_KEY]
    assert held[1:3] == ["0", "1"]
    assert held[4] != "\u2013" and held[5] == "HTTP 429 with Retry-After: 600 s (job z)"
    assert [r[0] for r in keys_rows(browser)] == ["a", "b", HTML_KEY]  # busiest first
    assert not browser.find_elements(By.ID, "injected")  # text, not HTML
    assert browser.find_element(By.ID, "keys-summary").text == "3 active keys"

    # live: a key's job ends, the page follows without a reload
    e.conn.execute(
        "update supaqueue.job set status = 'cancelled', finished_at = now()"
        " where queue = %s and key = 'a' and status = 'pending'",
        (q,),
    )
    wait_for("the new count", lambda: {r[0]: r[2] for r in keys_rows(browser)}.get("a") == "0")


def test_the_page_of_an_unknown_queue_says_so(browser: WebDriver, ui: Ui, jobs: Jobs) -> None:
    with httpx.Client(base_url=ui.origin, timeout=30) as client:  # no session: nothing served
        assert client.get("/queues/emails").status_code == 401
        assert client.get("/api/queues/emails/keys").status_code == 401
    login(browser, ui)
    browser.get(ui.origin + "/queues/nope")
    box = lambda: browser.find_element(By.ID, "problem")  # noqa: E731
    wait_for("the API's error", lambda: "no queue named 'nope'" in box().text)
    assert not rows(browser, "keys")
