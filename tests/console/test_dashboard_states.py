# ruff: noqa: F811  (the fixtures imported from test_dashboard / test_cli are parameters here)
"""`supaqueue ui` in headless Chromium: the API's error shown (no such job, an unknown queue, the
database down), the last minute's rates, both pauses, paging in the URL, the layout at 1,024 px,
and the Schedules page (schedules, triggers, the jobs each made, run now)."""

from __future__ import annotations

from pathlib import Path

from psycopg.types.json import Jsonb
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from supaqueue.local_stack.postgres import Cluster
from tests.console.conftest import Jobs
from tests.console.test_dashboard import (  # noqa: F401 (fixtures)
    Ui,
    browser,
    click,
    confirm_dialog,
    login,
    rows,
    screenshot,
    table,
    ui,
    wait_for,
)


def problem(browser: WebDriver) -> str:
    box = browser.find_element(By.ID, "problem")
    return str(box.text) if box.is_displayed() else ""


def test_the_apis_error_is_shown_not_an_empty_page(
    browser: WebDriver, ui: Ui, jobs: Jobs, pg_cluster: Cluster
) -> None:
    login(browser, ui)
    missing = "00000000-0000-4000-8000-000000000000"
    browser.get(f"{ui.origin}/jobs/{missing}")
    text = wait_for("the error", lambda: problem(browser))
    assert f"there is no job {missing}" in text
    assert browser.find_element(By.ID, "live").text != "offline"  # the server did answer

    # a queue that is not there (removed): no job listed, and the page says why
    browser.get(f"{ui.origin}/jobs?queue=removed")
    text = wait_for("the error", lambda: problem(browser))
    assert "no queue named 'removed'" in text and "emails" in text
    assert rows(browser, "jobs") == []
    assert "removed (unknown)" in browser.find_element(By.NAME, "queue").text

    # the database goes down: the API's message, not a silent empty page
    browser.get(ui.origin + "/")
    wait_for("both queues", lambda: len(rows(browser, "queues")) == 2)
    dbname = jobs.dsn.rsplit("/", 1)[1]
    with pg_cluster.connect(user=pg_cluster.admin_user) as admin:
        admin.execute(f'alter database "{dbname}" allow_connections false')
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where application_name = 'supaqueue-ui'"
        )
        try:
            text = wait_for("the database error", lambda: problem(browser))
            assert "cannot connect to the database" in text, text
            assert browser.find_element(By.ID, "live").text == "error"
        finally:
            admin.execute(f'alter database "{dbname}" allow_connections true')
    wait_for("the recovery", lambda: problem(browser) == "")


def test_rates_of_the_last_minute_and_both_pauses(browser: WebDriver, ui: Ui, jobs: Jobs) -> None:
    jobs.engine.conn.execute(
        "insert into supaqueue.job (queue, status, finished_at)"
        " select %s, 'success', now() - interval '20 seconds' from generate_series(1, 100)",
        (jobs.reports,),
    )
    jobs.engine.conn.execute(
        "update supaqueue.queue set paused = true, operator_paused_at = now() where name = 'emails'"
    )
    login(browser, ui)
    cell = '#queues tr[data-queue="reports"] td:nth-child(9)'
    wait_for("the ok/min", lambda: browser.find_element(By.CSS_SELECTOR, cell).text == "100")
    state = browser.find_element(By.CSS_SELECTOR, '#queues tr[data-queue="emails"]').text
    assert "paused (stack + operator)" in state


def test_the_page_is_in_the_url(browser: WebDriver, ui: Ui, jobs: Jobs) -> None:
    jobs.engine.conn.execute(
        "insert into supaqueue.job (queue, payload, created_at)"
        " select %s, '{}', now() - interval '1 hour' from generate_series(1, 60)",
        (jobs.reports,),
    )
    login(browser, ui)
    browser.get(f"{ui.origin}/jobs?queue=reports")
    wait_for("the first page", lambda: len(rows(browser, "jobs")) == 50)
    first = [key for key, _ in table(browser, "jobs")]
    browser.find_element(By.ID, "next").click()
    wait_for("the second page", lambda: len(rows(browser, "jobs")) == 13)
    second = [key for key, _ in table(browser, "jobs")]
    url = browser.current_url
    assert "after=" in url and "page=2" in url and "queue=reports" in url
    browser.refresh()  # a reload (or a shared link) shows the same page
    wait_for("the same page", lambda: [key for key, _ in table(browser, "jobs")] == second)
    assert browser.find_element(By.ID, "page-info").text == "page 2"
    browser.back()
    wait_for("page 1 again", lambda: [key for key, _ in table(browser, "jobs")] == first)
    assert "after=" not in browser.current_url


def overflow(browser: WebDriver) -> list[str]:
    """What sticks out of the window: the page itself, or an action button."""
    found: list[str] = browser.execute_script(
        "const w = document.documentElement.clientWidth; const out = [];"
        "if (document.documentElement.scrollWidth > w) out.push('page ' +"
        "  document.documentElement.scrollWidth + ' > ' + w);"
        "for (const b of document.querySelectorAll('td.actions button')) {"
        "  const r = b.getBoundingClientRect();"
        "  if (r.right > w || r.width === 0) out.push(b.textContent + ' at ' + r.right); }"
        "return out;"
    )
    return found


def test_at_1024_px_nothing_is_clipped(
    browser: WebDriver, ui: Ui, jobs: Jobs, tmp_path: Path
) -> None:
    login(browser, ui)
    browser.set_window_size(1024, 900)
    try:
        browser.get(ui.origin + "/")
        wait_for("both queues", lambda: len(rows(browser, "queues")) == 2)
        wait_for("the charts", lambda: len(browser.find_elements(By.CSS_SELECTOR, "canvas")) >= 4)
        assert overflow(browser) == []
        purge = browser.find_element(By.CSS_SELECTOR, 'button.purge[data-queue="emails"]')
        assert purge.is_displayed()
        screenshot(browser, tmp_path, "check-queues-1024")
        for path in ("/jobs", f"/jobs/{jobs.failed}", "/schedules"):
            browser.get(ui.origin + path)
            wait_for(
                f"{path} to load", lambda: browser.execute_script("return document.readyState")
            )
            assert overflow(browser) == [], path
    finally:
        browser.set_window_size(1440, 1000)


def test_schedules_page_lists_runs_and_shows_the_jobs_each_made(
    browser: WebDriver, ui: Ui, jobs: Jobs, tmp_path: Path
) -> None:
    jobs.engine.one(
        "insert into supaqueue.schedule (name, queue, cron, timezone, payload, next_run_at)"
        " values ('nightly', %s, '0 3 * * *', 'UTC', %s, now() - interval '1 second')"
        " returning id",
        (jobs.reports, Jsonb({"report": "daily"})),
    )
    jobs.engine.one("select supaqueue.enqueue_due_schedules()")
    jobs.engine.conn.execute("create table public.orders (id bigint primary key)")
    jobs.engine.one(
        "select supaqueue.set_table_trigger(null, 'new-orders', %s, 'public', 'orders',"
        " array['INSERT'], 'new.id > 0')",
        (jobs.emails,),
    )
    jobs.engine.conn.execute("insert into public.orders values (1), (2)")
    login(browser, ui)
    browser.get(ui.origin + "/schedules")
    wait_for("the schedule", lambda: len(rows(browser, "schedules")) == 1)
    schedule = " ".join(table(browser, "schedules")[0][1])
    assert "nightly" in schedule and "reports" in schedule and "0 3 * * *" in schedule
    wait_for("the trigger", lambda: len(rows(browser, "triggers")) == 1)
    trigger = " ".join(table(browser, "triggers")[0][1])
    assert "new-orders" in trigger and "public.orders" in trigger and "new.id > 0" in trigger

    # which jobs the trigger made
    click(browser, 'a.made-link[data-kind="trigger"]')
    wait_for("the trigger's jobs", lambda: len(rows(browser, "made-jobs")) == 2)
    assert "show=trigger" in browser.current_url

    # run the schedule now: one more job of it, then its jobs are listed
    click(browser, 'button.run-now[data-schedule="nightly"]')
    assert "Enqueue one job of schedule nightly" in confirm_dialog(browser, yes=True)
    made = "select count(*) from supaqueue.job where source = 'schedule'"
    wait_for("the run", lambda: jobs.engine.one(made) == 2)
    # The page lists the schedule's jobs before it flashes its answer, and the trigger's two jobs
    # already filled the same table: wait for the flash and the URL, not the row count alone.
    wait_for("the flash", lambda: "enqueued job" in browser.find_element(By.ID, "flash").text)
    assert "show=schedule" in browser.current_url
    wait_for("the schedule's jobs", lambda: len(rows(browser, "made-jobs")) == 2)
    screenshot(browser, tmp_path, "dashboard-schedules")

    # a job's page says where it came from
    job = table(browser, "made-jobs")[0][0]
    browser.get(f"{ui.origin}/jobs/{job}")
    wait_for("the source", lambda: "schedule nightly" in browser.find_element(By.ID, "facts").text)
