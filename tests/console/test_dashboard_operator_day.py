"""Issue 22 items 2 and 3 in the dashboard, in headless Chromium: bulk actions on the jobs filter
confirmed with the count, "Run now", the last response and the runs of the attempt history, and
job id prefixes in the address."""

from __future__ import annotations

import time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.console.conftest import Jobs
from tests.console.test_dashboard import (  # noqa: F401 (fixtures)
    Ui,
    browser,
    confirm_dialog,
    login,
    rows,
    screenshot,
    table,
    ui,
    wait_for,
)

COUNT_PENDING = "select count(*) from supaqueue.job where queue = %s and status = 'pending'"


def test_bulk_actions_on_the_filter_confirm_with_the_count(
    browser: WebDriver,  # noqa: F811 (the fixture)
    ui: Ui,  # noqa: F811
    jobs: Jobs,
    tmp_path: Path,
) -> None:
    login(browser, ui)
    browser.get(f"{ui.origin}/jobs?queue=reports")
    wait_for("the reports jobs", lambda: len(rows(browser, "jobs")) == 3)

    browser.find_element(By.ID, "bulk-cancel").click()
    text = confirm_dialog(browser, yes=False)
    assert "Cancel 3 pending jobs of queue reports?" in text, text
    time.sleep(0.5)
    assert jobs.engine.one(COUNT_PENDING, (jobs.reports,)) == 3  # declined: nothing changed
    browser.find_element(By.ID, "bulk-cancel").click()
    confirm_dialog(browser, yes=True)
    wait_for("the cancel", lambda: jobs.engine.one(COUNT_PENDING, (jobs.reports,)) == 0)
    wait_for(
        "the message", lambda: "cancelled 3 job(s)" in browser.find_element(By.ID, "flash").text
    )
    screenshot(browser, tmp_path, "check-bulk")
    # nothing left to cancel: said so, no dialog
    browser.find_element(By.ID, "bulk-cancel").click()
    wait_for(
        "the nothing-to-do message",
        lambda: "no pending job of queue reports" in browser.find_element(By.ID, "flash").text,
    )

    # retry all failed of a filter (queue + error text, which also searches the response)
    browser.get(f"{ui.origin}/jobs?queue=emails")
    wait_for("the emails jobs", lambda: len(rows(browser, "jobs")) >= 5)
    browser.find_element(By.NAME, "error").send_keys("busy")  # only in the response excerpt
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait_for("the error filter", lambda: [k for k, _ in table(browser, "jobs")] == [jobs.failed])
    browser.find_element(By.ID, "bulk-retry").click()
    text = confirm_dialog(browser, yes=True)
    assert 'Retry 1 failed job of queue emails whose error or response contains "busy"?' in text
    wait_for("the retry", lambda: jobs.engine.status(jobs.failed) != "failed")
    assert jobs.engine.status(jobs.cancelled) == "pending"  # its dependent came back


def test_run_now_the_last_response_and_the_runs_of_a_job(
    browser: WebDriver,  # noqa: F811 (the fixture)
    ui: Ui,  # noqa: F811
    jobs: Jobs,
    tmp_path: Path,
) -> None:
    e = jobs.engine
    q = e.queue(workers=1, name="flaky", max_attempts=1)
    job = e.enqueue(q, {"n": 1})
    e.end(
        e.current_job_of(job),
        success=False,
        _status_code=404,
        _error="HTTP 404 Not Found",
        _response_excerpt='{"message":"Requested function was not found"}',
    )
    e.one("select supaqueue.retry_job(%s)", (job,))
    e.end(e.current_job_of(job), success=False, _status_code=503, _error="HTTP 503 again")
    login(browser, ui)
    browser.get(f"{ui.origin}/jobs/{job[:8]}")  # the 8 characters the lists show
    wait_for("the full id in the address", lambda: browser.current_url.endswith(f"/jobs/{job}"))
    wait_for("the attempts", lambda: len(rows(browser, "attempts")) == 3)
    history = [cells for _, cells in table(browser, "attempts")]
    assert history[0][0] == "1" and history[2][0] == "1"
    assert history[1][0].startswith("run 2: started by retry_job")
    facts = browser.find_element(By.ID, "facts").text
    assert "Requested function was not found" not in facts  # the last run answered 503 without
    assert "HTTP 503 again" in facts
    screenshot(browser, tmp_path, "check-runs")

    later = e.enqueue(jobs.reports, {"n": 2}, _run_at="2099-01-01T00:00:00Z")
    browser.get(f"{ui.origin}/jobs/{later}")
    run_now = wait_for(
        "the run-now button",
        lambda: (b := browser.find_element(By.ID, "run-now")).is_displayed() and b,
    )
    assert not browser.find_element(By.ID, "retry").is_displayed()
    run_now.click()
    assert "Run this job now" in confirm_dialog(browser, yes=True)
    wait_for("run_at now", lambda: e.job(later)["run_in_s"] <= 0)
    wait_for("the button to go", lambda: not browser.find_element(By.ID, "run-now").is_displayed())


def test_the_job_page_shows_the_last_response(
    browser: WebDriver,  # noqa: F811 (the fixture)
    ui: Ui,  # noqa: F811
    jobs: Jobs,
) -> None:
    login(browser, ui)
    browser.get(f"{ui.origin}/jobs/{jobs.failed}")
    wait_for(
        "the last response",
        lambda: "last response\nbusy" in browser.find_element(By.ID, "facts").text,
    )
    browser.get(f"{ui.origin}/jobs/ffffffff")
    assert (
        "no job whose id starts with 'ffffffff'" in browser.find_element(By.TAG_NAME, "body").text
    )
