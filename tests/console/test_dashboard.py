"""`supaqueue ui` in a real headless browser (Debian's Chromium driven by Selenium) against a real
database with jobs in every state: pages render, charts get data, live updates arrive without a
reload, each action works once confirmed, and nothing is served without the one-time token or
changed without the CSRF token.

Set SUPAQUEUE_SCREENSHOT_DIR=docs/img to refresh the screenshots the README shows.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.console.conftest import SUPAQUEUE, Jobs

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_SECONDS = 60


def require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        # loud, not a skip: `make toolchain` installs them (apt: chromium chromium-driver)
        pytest.fail(
            f"{', '.join(missing)} missing: run `make toolchain` (installs Debian's "
            "chromium and chromium-driver)"
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    require_browser()
    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1440,1000",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


class Ui:
    """A running `supaqueue ui` subprocess."""

    def __init__(self, dsn: str) -> None:
        self.proc = subprocess.Popen(
            [SUPAQUEUE, "ui", "--db-url", dsn, "--no-open"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(WAIT_SECONDS)
        line = first[0] if first else ""
        assert line.startswith("supaqueue ui: http://127.0.0.1:"), (line, self.stop())
        self.url = line.split(": ", 1)[1].strip()
        self.origin = self.url.split("/?", 1)[0]
        self.port = int(self.origin.rsplit(":", 1)[1])

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture
def ui(jobs: Jobs) -> Iterator[Ui]:
    server = Ui(jobs.dsn)
    try:
        yield server
    finally:
        err = server.stop()
        assert server.proc.returncode == 0, err
        assert "Traceback" not in err, err


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the page may be between renders
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def login(browser: WebDriver, ui: Ui) -> None:
    browser.delete_all_cookies()
    browser.get(ui.url)
    wait_for("the token to leave the address", lambda: "token=" not in browser.current_url)


def rows(browser: WebDriver, table: str) -> list[Any]:
    return browser.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")


def table(browser: WebDriver, name: str) -> list[tuple[str, list[str]]]:
    """(data-job or data-queue, cell texts) of each row, read in one script: the live refresh
    re-renders rows, so elements found one at a time could go stale in between."""
    found: list[tuple[str, list[str]]] = [
        (key, cells)
        for key, cells in browser.execute_script(
            f"return [...document.querySelectorAll('#{name} tbody tr')].map((tr) =>"
            " [tr.dataset.job || tr.dataset.queue || '',"
            "  [...tr.querySelectorAll('td')].map((td) => td.textContent)])"
        )
    ]
    return found


def screenshot(browser: WebDriver, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    assert browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    target = os.environ.get("SUPAQUEUE_SCREENSHOT_DIR")
    if target and name.startswith("dashboard-"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def click(browser: WebDriver, selector: str) -> None:
    """Click the element, found again if a live refresh replaced it in between."""

    def attempt() -> bool:
        browser.find_element(By.CSS_SELECTOR, selector).click()
        return True

    wait_for(f"a click on {selector}", attempt)


def confirm_dialog(browser: WebDriver, yes: bool) -> str:
    dialog = wait_for("the confirmation", lambda: browser.find_element(By.ID, "confirm"))
    wait_for("the dialog to open", lambda: dialog.get_attribute("open") is not None)
    text = str(browser.find_element(By.ID, "confirm-text").text)
    browser.find_element(By.ID, "confirm-yes" if yes else "confirm-no").click()
    wait_for("the dialog to close", lambda: dialog.get_attribute("open") is None)
    return text


def test_pages_render_with_charts_and_live_updates(
    browser: WebDriver, ui: Ui, jobs: Jobs, tmp_path: Path
) -> None:
    login(browser, ui)
    wait_for("both queues", lambda: len(rows(browser, "queues")) == 2)
    emails = browser.find_element(By.CSS_SELECTOR, '#queues tr[data-queue="emails"]').text
    assert "running" in emails and "1/1" in emails and "5.00" in emails
    # charts: a point per minute of the last hour, with the job that succeeded and the one that
    # failed in them
    totals = wait_for(
        "chart data",
        lambda: browser.execute_script(
            "const c = window.sqCharts.emails;"
            "if (!c || c.throughput.data[0].length !== 61) return null;"
            "const sum = (i) => c.throughput.data[i].reduce((a, b) => a + b, 0);"
            "return [sum(1), sum(2), c.depth.data[1].length, c.depth.data[1][60]];"
        ),
    )
    # one success, one failure; the depth now: one pending, one in progress
    assert totals == [1, 1, 61, 2]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#charts canvas")) >= 4
    # live: a new job shows up without a reload
    browser.execute_script("window.__noReload = true")
    jobs.engine.insert_job(jobs.reports, {"report": 99})
    wait_for(
        "the new job in the table",
        lambda: (
            browser.find_element(
                By.CSS_SELECTOR, '#queues tr[data-queue="reports"] td:nth-child(5)'
            ).text
            == "4"
        ),
    )
    assert browser.execute_script("return window.__noReload") is True
    screenshot(browser, tmp_path, "check-queues")

    browser.get(f"{ui.origin}/jobs")
    wait_for("every job", lambda: len(rows(browser, "jobs")) == 9)
    Select(browser.find_element(By.NAME, "state")).select_by_value("failed")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait_for(
        "the failed job alone",
        lambda: [key for key, _ in table(browser, "jobs")] == [jobs.failed],
    )
    Select(browser.find_element(By.NAME, "state")).select_by_value("")
    browser.find_element(By.NAME, "error").send_keys("unavailable")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait_for("the error filter", lambda: len(rows(browser, "jobs")) == 1)
    browser.get(f"{ui.origin}/jobs")
    wait_for("every job", lambda: len(rows(browser, "jobs")) == 9)
    screenshot(browser, tmp_path, "check-jobs")

    browser.get(f"{ui.origin}/jobs/{jobs.failed}")
    wait_for("the attempts", lambda: len(rows(browser, "attempts")) == 1)
    attempt = " ".join(table(browser, "attempts")[0][1])
    assert "HTTP 503 Service Unavailable" in attempt and "busy" in attempt and "900 ms" in attempt
    assert jobs.cancelled in browser.find_element(By.ID, "dependents").text
    assert "bob@example.com" in browser.find_element(By.ID, "payload").text
    assert browser.find_element(By.ID, "retry").is_displayed()
    screenshot(browser, tmp_path, "check-job")


def test_job_list_pages_by_keyset(browser: WebDriver, ui: Ui, jobs: Jobs) -> None:
    jobs.engine.conn.execute(
        # older than the other jobs: an unfiltered first page would show those first
        "insert into supaqueue.job (queue, payload, created_at)"
        " select %s, '{}', now() - interval '1 hour' from generate_series(1, 60)",
        (jobs.reports,),
    )
    login(browser, ui)
    browser.get(f"{ui.origin}/jobs?queue=reports")
    # the very first load already applies ?queue= (it once listed every queue until a refresh)
    wait_for(
        "the first load",
        lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-loads") is not None,
    )
    page = table(browser, "jobs")
    assert len(page) == 50 and {cells[1] for _, cells in page} == {"reports"}
    first = {key for key, _ in page}
    browser.find_element(By.ID, "next").click()
    wait_for("the second page", lambda: len(rows(browser, "jobs")) == 13)
    second = {key for key, _ in table(browser, "jobs")}
    assert not first & second
    assert browser.find_element(By.ID, "page-info").text == "page 2"


def test_actions_work_once_confirmed(browser: WebDriver, ui: Ui, jobs: Jobs) -> None:
    login(browser, ui)
    browser.get(f"{ui.origin}/jobs/{jobs.failed}")
    retry = wait_for(
        "the retry button", lambda: (b := browser.find_element(By.ID, "retry")).is_displayed() and b
    )
    retry.click()
    assert "Retry this job" in confirm_dialog(browser, yes=False)
    time.sleep(0.5)
    assert jobs.engine.status(jobs.failed) == "failed"  # not confirmed: nothing changed
    retry.click()
    confirm_dialog(browser, yes=True)
    wait_for("the retry", lambda: jobs.engine.status(jobs.failed) == "pending")
    assert jobs.engine.status(jobs.cancelled) == "pending"

    browser.get(f"{ui.origin}/jobs/{jobs.in_progress}")
    cancel = wait_for(
        "the cancel button",
        lambda: (b := browser.find_element(By.ID, "cancel")).is_displayed() and b,
    )
    cancel.click()
    confirm_dialog(browser, yes=True)
    wait_for("the cancel", lambda: jobs.engine.status(jobs.in_progress) == "cancelled")
    wait_for(
        "the page to follow",
        lambda: (
            browser.find_element(By.TAG_NAME, "body").get_attribute("data-status") == "cancelled"
        ),
    )

    browser.get(ui.origin + "/")
    click(browser, 'button.pause[data-queue="emails"]')
    assert "Pause queue emails" in confirm_dialog(browser, yes=True)
    paused = "select operator_paused_at is not null from supaqueue.queue where name = 'emails'"
    wait_for("the pause", lambda: jobs.engine.one(paused) is True)
    wait_for(
        "the state column",
        lambda: (
            "paused (operator)"
            in browser.find_element(By.CSS_SELECTOR, '#queues tr[data-queue="emails"]').text
        ),
    )
    click(browser, 'button.pause[data-queue="emails"]')
    confirm_dialog(browser, yes=True)
    wait_for("the resume", lambda: jobs.engine.one(paused) is False)

    finished = (
        "select count(*) from supaqueue.job j join supaqueue.queue q on q.id = j.queue"
        " where q.name = 'emails' and j.finished_at is not null"
    )
    before = jobs.engine.one(finished)
    assert before >= 2
    click(browser, 'button.purge[data-queue="emails"]')
    assert "Delete the finished jobs" in confirm_dialog(browser, yes=True)
    wait_for("the purge", lambda: jobs.engine.one(finished) == 0)
    wait_for("the message", lambda: "purged" in browser.find_element(By.ID, "flash").text)


def test_refused_without_the_token_or_the_csrf_token(
    browser: WebDriver, ui: Ui, jobs: Jobs
) -> None:
    with httpx.Client(base_url=ui.origin, timeout=30, follow_redirects=False) as client:
        assert client.get("/").status_code == 401
        assert client.get("/api/figures").status_code == 401
        assert client.post("/api/queues/emails/pause", json={}).status_code == 401
        wrong = client.get("/", params={"token": "not-the-token"})
        assert wrong.status_code == 403
        # a page whose Host is not ours (DNS rebinding) is refused before anything else
        assert client.get("/", headers={"Host": f"evil.example:{ui.port}"}).status_code == 421
    login(browser, ui)  # uses the token
    with httpx.Client(base_url=ui.origin, timeout=30) as client:
        token = ui.url.split("token=", 1)[1]
        assert client.get("/", params={"token": token}).status_code == 403  # one time only
    session = browser.get_cookie("supaqueue_session")
    assert session is not None and session["httpOnly"] and session["sameSite"] == "Strict"
    meta = browser.find_element(By.CSS_SELECTOR, 'meta[name="csrf-token"]')
    csrf = str(meta.get_attribute("content") or "")
    cookies = {"supaqueue_session": session["value"]}
    paused = "select operator_paused_at is not null from supaqueue.queue where name = 'emails'"
    with httpx.Client(base_url=ui.origin, timeout=30, cookies=cookies) as client:
        assert client.get("/api/figures").status_code == 200
        no_csrf = client.post("/api/queues/emails/pause", json={})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
        cross = client.post(
            "/api/queues/emails/pause",
            json={},
            headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        form = client.post(
            "/api/queues/emails/pause", data={"x": "1"}, headers={"X-CSRF-Token": csrf}
        )
        assert form.status_code == 403
        assert jobs.engine.one(paused) is False
        done = client.post(
            "/api/queues/emails/pause", json={}, headers={"X-CSRF-Token": csrf, "Origin": ui.origin}
        )
        assert done.status_code == 200 and jobs.engine.one(paused) is True
    # nothing listens anywhere but 127.0.0.1
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", ui.port), timeout=5).close()


# an hour of traffic: jobs waited up to 10 minutes, 1 in 11 failed
HISTORY = """
with finished as (
  insert into supaqueue.job (queue, payload, status, attempts, created_at, finished_at,
                            last_status_code, last_error, result)
  select q.id, jsonb_build_object('n', g), s.status, 1,
         t.at - (g %% 40) * interval '15 seconds', t.at,
         case when s.status = 'success' then 200 else 503 end,
         case when s.status = 'failed' then 'HTTP 503 Service Unavailable' end,
         case when s.status = 'success' then '{"ok": true}'::jsonb end
    from supaqueue.queue q, generate_series(1, %(n)s) g,
         lateral (select now() - (g * 3600.0 / %(n)s) * interval '1 second'
                    + (hashtext(q.name) %% 7) * interval '1 second' as at) t,
         lateral (select (case when (g + length(q.name)) %% 11 = 0 then 'failed'
                               else 'success' end)::supaqueue.job_status as status) s
   where q.name in ('emails', 'thumbnails')
  returning id, queue, status, finished_at
)
insert into supaqueue.job_attempt (job, queue, attempt, started_at, ended_at, outcome,
                                   status_code, error, duration_ms)
select id, queue, 1, finished_at - interval '1 second', finished_at,
       case when status = 'success' then 'success' else 'failure' end,
       case when status = 'success' then 200 else 503 end,
       case when status = 'failed' then 'HTTP 503 Service Unavailable' end,
       80 + abs(hashtext(id::text)) %% 900
  from finished
"""


def test_screenshots_with_an_hour_of_history(
    browser: WebDriver, jobs: Jobs, tmp_path: Path
) -> None:
    """The README's screenshots: an hour of traffic on two queues, charts full of it."""
    thumbnails = jobs.engine.queue(workers=3, name="thumbnails", timeout_ms=120000)
    jobs.engine.conn.execute(HISTORY, {"n": 240})
    for i in range(5):
        jobs.engine.insert_job(thumbnails, {"image": i})
    server = Ui(jobs.dsn)
    try:
        login(browser, server)
        points = wait_for(
            "an hour of points",
            lambda: browser.execute_script(
                "const c = window.sqCharts.thumbnails;"
                "return c && c.throughput.data[1].filter((v) => v > 0).length;"
            ),
        )
        assert points >= 50
        depth = browser.execute_script("return window.sqCharts.thumbnails.depth.data[1]")
        assert depth[-1] == 5  # 2 pending + 3 in progress now
        browser.set_window_size(1440, 1480)
        screenshot(browser, tmp_path, "dashboard-queues")
        browser.set_window_size(1440, 1000)
        browser.get(f"{server.origin}/jobs?queue=emails")
        wait_for("a full page", lambda: len(rows(browser, "jobs")) == 50)
        queues = {cells[1] for _, cells in table(browser, "jobs")}
        assert queues == {"emails"}  # the ?queue= filter holds from the first load
        screenshot(browser, tmp_path, "dashboard-jobs")
        browser.get(f"{server.origin}/jobs/{jobs.failed}")
        wait_for("the attempts", lambda: len(rows(browser, "attempts")) == 1)
        screenshot(browser, tmp_path, "dashboard-job")
    finally:
        server.stop()


def test_a_held_dispatch_shows_on_the_queues_page(browser: WebDriver, ui: Ui, jobs: Jobs) -> None:
    """Issue 21 item 6: the dispatcher answered 404 (sql/0018): every queue shows it, with why."""
    login(browser, ui)
    browser.get(ui.origin + "/")
    wait_for("the queues", lambda: rows(browser, "queues"))
    jobs.engine.conn.execute(
        "insert into supaqueue.dispatch_hold (reason) values ('the dispatcher answered HTTP 404')"
    )
    state = '#queues tr[data-queue="emails"] .state'
    wait_for(
        "the held state",
        lambda: browser.find_element(By.CSS_SELECTOR, state).text == "held: no dispatcher",
    )
    title = browser.find_element(By.CSS_SELECTOR, state).get_attribute("title")
    assert title == "the dispatcher answered HTTP 404"


def test_holds_by_a_retry_after_show_on_the_queues_page(
    browser: WebDriver, ui: Ui, jobs: Jobs
) -> None:
    """Issue 26 item 3 (sql/0027): a queue held by its target's Retry-After shows until when,
    with why as the state's title; a queue with held keys shows how many; both end by
    themselves (here: the holds are moved into the past)."""
    login(browser, ui)
    browser.get(ui.origin + "/")
    wait_for("the queues", lambda: rows(browser, "queues"))
    conn = jobs.engine.conn
    conn.execute(
        "insert into supaqueue.queue_hold (queue, held_until, reason)"
        " values (%s, now() + interval '30 minutes', 'HTTP 429 with Retry-After: 1800 s (job x)')",
        (jobs.reports,),
    )
    conn.execute(
        "insert into supaqueue.queue_key (queue, key, held_until, hold_reason)"
        " values (%s, 'tenant-a', now() + interval '1 minute', 'HTTP 503 with Retry-After: 60 s')",
        (jobs.emails,),
    )

    def state(queue: str) -> Any:
        return browser.find_element(By.CSS_SELECTOR, f'#queues tr[data-queue="{queue}"] .state')

    wait_for("the held queue", lambda: state("reports").text.startswith("held until "))
    assert state("reports").get_attribute("title") == "HTTP 429 with Retry-After: 1800 s (job x)"
    wait_for("the held key", lambda: state("emails").text == "running, 1 key held")
    assert state("emails").get_attribute("title") == "HTTP 503 with Retry-After: 60 s"
    conn.execute("update supaqueue.queue_hold set held_until = now() - interval '1 second'")
    conn.execute("update supaqueue.queue_key set held_until = now() - interval '1 second'")
    wait_for("the holds' end", lambda: state("reports").text == state("emails").text == "running")
