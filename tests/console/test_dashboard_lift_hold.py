# ruff: noqa: F811  (the fixtures imported from test_dashboard are parameters here)
"""`supaqueue ui` in headless Chromium: a hold by the target's Retry-After is lifted early from
the queues page (the queue's hold, then its keys') and from the queue's page (one key), each once
confirmed, with the answer flashed; the action needs the session's CSRF token."""

from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.console.conftest import Jobs
from tests.console.test_dashboard import (  # noqa: F401 (fixtures)
    Ui,
    browser,
    click,
    confirm_dialog,
    login,
    ui,
    wait_for,
)
from tests.console.test_dashboard_keys import keys_rows
from tests.console.test_dashboard_states import overflow
from tests.console.test_lift_hold_cli import held_queue

BUSY = '#queues tr[data-queue="busy"]'
HELD = "select count(*) from supaqueue.queue_hold where held_until > now()"
HELD_KEYS = "select count(*) from supaqueue.queue_key where held_until > now()"


def flash(browser: WebDriver) -> str:
    return str(browser.find_element(By.ID, "flash").text)


def test_lift_hold_from_the_queues_page(browser: WebDriver, ui: Ui, jobs: Jobs) -> None:
    waiting_keyed, waiting_plain, answered_keyed, answered_plain = held_queue(jobs)
    e = jobs.engine
    login(browser, ui)
    browser.get(ui.origin + "/")
    button = BUSY + " button.lift-hold"
    wait_for("the lift button", lambda: browser.find_element(By.CSS_SELECTOR, button).text)
    assert browser.find_element(By.CSS_SELECTOR, button).text == "Lift hold"
    assert "held until" in browser.find_element(By.CSS_SELECTOR, BUSY).text
    # a queue that is not held has no such button
    assert not browser.find_elements(By.CSS_SELECTOR, '#queues tr[data-queue="emails"] .lift-hold')

    click(browser, button)
    text = confirm_dialog(browser, yes=False)
    assert "Lift the hold of queue busy" in text and "HTTP 429 with Retry-After: 3600 s" in text
    assert "those its Retry-After delayed are due now" in text
    assert e.one(HELD) == 1  # not confirmed: still held (the dialog sends nothing)

    click(browser, button)
    confirm_dialog(browser, yes=True)
    wait_for("the answer", lambda: "hold lifted" in flash(browser))
    assert flash(browser) == (
        "queue busy: hold lifted; 1 job(s) delayed by a Retry-After made due now;"
        " 2 job(s) dispatched; 1 key(s) still held"
    )
    assert e.one(HELD) == 0
    assert e.status(waiting_plain) == e.status(answered_plain) == "in_progress"
    # the row follows: its key is still held, and the button now lifts the keys' holds
    wait_for("the key holds' button", lambda: browser.find_element(By.CSS_SELECTOR, button).text
             == "Lift key holds")  # fmt: skip
    assert "1 key held" in browser.find_element(By.CSS_SELECTOR, BUSY).text
    click(browser, button)
    assert "Lift the holds of 1 key of queue busy" in confirm_dialog(browser, yes=True)
    wait_for("the answer", lambda: "key(s) lifted" in flash(browser))
    assert flash(browser) == (
        "queue busy: holds of 1 key(s) lifted; 1 job(s) delayed by a Retry-After made due now;"
        " 2 job(s) dispatched"
    )
    assert e.one(HELD_KEYS) == 0
    assert e.status(waiting_keyed) == e.status(answered_keyed) == "in_progress"
    wait_for("no hold left", lambda: not browser.find_elements(By.CSS_SELECTOR, button))


def test_at_1024_px_the_lift_buttons_fit(browser: WebDriver, ui: Ui, jobs: Jobs) -> None:
    held_queue(jobs)
    login(browser, ui)
    browser.set_window_size(1024, 900)
    try:
        browser.get(ui.origin + "/")
        wait_for("the lift button", lambda: browser.find_elements(By.CSS_SELECTOR, ".lift-hold"))
        assert overflow(browser) == []
        browser.get(ui.origin + "/queues/busy")
        wait_for("the key's button", lambda: browser.find_elements(By.CSS_SELECTOR, ".lift-hold"))
        assert overflow(browser) == []
    finally:
        browser.set_window_size(1440, 1000)


def test_lift_a_key_hold_from_the_queue_page(browser: WebDriver, ui: Ui, jobs: Jobs) -> None:
    waiting_keyed, _, answered_keyed, _ = held_queue(jobs)
    e = jobs.engine
    e.conn.execute("select supaqueue.lift_hold(id) from supaqueue.queue where name = 'busy'")
    login(browser, ui)
    browser.get(ui.origin + "/queues/busy")
    row = '#keys tr[data-key="tenant-42"]'
    wait_for("the held key", lambda: browser.find_element(By.CSS_SELECTOR, row + " .lift-hold"))
    click(browser, row + " button.lift-hold")
    text = confirm_dialog(browser, yes=True)
    assert "Lift the hold of key tenant-42 of queue busy" in text
    assert "those its Retry-After delayed are due now" in text
    wait_for("the answer", lambda: "key tenant-42" in flash(browser))
    assert flash(browser) == (
        "queue busy: hold of key tenant-42 lifted; 1 job(s) delayed by a Retry-After made due"
        " now; 2 job(s) dispatched"
    )
    assert e.one(HELD_KEYS) == 0
    assert e.status(waiting_keyed) == e.status(answered_keyed) == "in_progress"
    # the table follows: no longer held, no button
    wait_for(
        "the row to follow",
        lambda: {r[0]: r for r in keys_rows(browser)}["tenant-42"][4] == "\u2013",
    )
    assert not browser.find_elements(By.CSS_SELECTOR, row + " .lift-hold")


def test_lift_hold_needs_the_csrf_token_and_says_what_is_wrong(
    browser: WebDriver, ui: Ui, jobs: Jobs
) -> None:
    held_queue(jobs)
    login(browser, ui)
    session = browser.get_cookie("supaqueue_session")
    assert session is not None
    csrf = str(
        browser.find_element(By.CSS_SELECTOR, 'meta[name="csrf-token"]').get_attribute("content")
    )
    path = "/api/queues/busy/lift-hold"
    cookies = {"supaqueue_session": session["value"]}
    with httpx.Client(base_url=ui.origin, timeout=30, cookies=cookies) as client:
        refused = client.post(path, json={})
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
        assert jobs.engine.one(HELD) == 1
        headers = {"X-CSRF-Token": csrf}
        bad = client.post(path, json={"key": 42}, headers=headers)
        assert bad.status_code == 400 and "key must be text" in bad.json()["error"]
        both = client.post(path, json={"key": "a", "all_keys": True}, headers=headers)
        assert both.status_code == 400 and "not both" in both.json()["error"]
        unknown = client.post("/api/queues/nope/lift-hold", json={}, headers=headers)
        assert unknown.status_code == 404 and "no queue named 'nope'" in unknown.json()["error"]
        nothing = client.post(path, json={"key": "other"}, headers=headers)
        assert nothing.status_code == 200 and nothing.json()["lifted"] == 0
        done = client.post(path, json={}, headers=headers)
        assert done.status_code == 200 and done.json()["lifted_queue"] is True
        assert jobs.engine.one(HELD) == 0
