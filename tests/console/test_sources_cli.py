"""Schedules and triggers in the console, job sources, the last minute's rates, exit codes as the
README documents them, and `status --watch` into a file: through the real `supaqueue` entry point
against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from psycopg.types.json import Jsonb

from tests.console.conftest import SUPAQUEUE, Jobs, supaqueue
from tests.console.test_cli import ok, one_line_error


def add_schedule(jobs: Jobs, name: str = "nightly") -> None:
    jobs.engine.one(
        "insert into supaqueue.schedule (name, queue, cron, timezone, payload, next_run_at)"
        " values (%s, %s, '0 3 * * *', 'UTC', %s, now() - interval '1 second') returning id",
        (name, jobs.reports, Jsonb({"report": "daily"})),
    )


def add_trigger(jobs: Jobs) -> None:
    jobs.engine.conn.execute("create table public.orders (id bigint primary key)")
    jobs.engine.one(
        "select supaqueue.set_table_trigger(null, 'new-orders', %s, 'public', 'orders',"
        " array['INSERT'], null)",
        (jobs.emails,),
    )


def test_schedules_triggers_and_the_jobs_each_made(jobs: Jobs) -> None:
    add_schedule(jobs)
    jobs.engine.one("select supaqueue.enqueue_due_schedules()")
    add_trigger(jobs)
    jobs.engine.conn.execute("insert into public.orders values (1), (2)")

    listed = json.loads(ok("schedules", "--db-url", jobs.dsn, "--json"))
    assert [(s["name"], s["queue_name"], s["jobs_last_day"]) for s in listed] == [
        ("nightly", "reports", 1)
    ]
    assert listed[0]["next_run_at"] and listed[0]["last_slot"]
    table = ok("schedules", "--db-url", jobs.dsn)
    assert "nightly" in table and "0 3 * * * (UTC)" in table

    one = json.loads(ok("schedules", "nightly", "--db-url", jobs.dsn, "--json"))
    assert len(one["jobs"]) == 1 and one["jobs"][0]["queue_name"] == "reports"
    scheduled_job = one["jobs"][0]["id"]
    detail = json.loads(ok("job", scheduled_job, "--db-url", jobs.dsn, "--json"))
    assert (detail["source"], detail["source_name"]) == ("schedule", "nightly")
    assert "schedule nightly" in ok("job", scheduled_job, "--db-url", jobs.dsn)
    # a job inserted with plain SQL says so
    assert "sql" in ok("job", jobs.pending, "--db-url", jobs.dsn)

    trig = json.loads(ok("triggers", "--db-url", jobs.dsn, "--json"))
    assert [(t["name"], t["table_name"], t["jobs_last_day"]) for t in trig] == [
        ("new-orders", "orders", 2)
    ]
    made = json.loads(ok("triggers", "new-orders", "--db-url", jobs.dsn, "--json"))["jobs"]
    assert len(made) == 2
    assert "new-orders" in ok("triggers", "new-orders", "--db-url", jobs.dsn)

    missing = supaqueue("schedules", "weekly", "--db-url", jobs.dsn)
    assert "no schedule named 'weekly' (schedules: nightly)" in one_line_error(missing, 3)
    assert "(triggers: new-orders)" in one_line_error(
        supaqueue("triggers", "x", "--db-url", jobs.dsn), 3
    )


def test_run_a_schedule_now(jobs: Jobs) -> None:
    add_schedule(jobs)
    refused = supaqueue("run-schedule", "nightly", "--db-url", jobs.dsn)
    assert "--yes" in one_line_error(refused, 5)
    assert jobs.engine.one("select count(*) from supaqueue.job where source = 'schedule'") == 0
    out = json.loads(ok("run-schedule", "nightly", "--db-url", jobs.dsn, "--yes", "--json"))
    assert out["schedule"] == "nightly"
    row = jobs.engine.conn.execute(
        "select source_name, payload, status::text from supaqueue.job where id = %s",
        (out["job"],),
    ).fetchone()
    assert row == {"source_name": "nightly", "payload": {"report": "daily"}, "status": "pending"}
    assert "no schedule named" in one_line_error(
        supaqueue("run-schedule", "x", "--db-url", jobs.dsn, "--yes"), 3
    )


def test_ok_per_minute_is_the_last_minute(jobs: Jobs) -> None:
    # 100 successes in the last minute, none before: the hour's average is 1.67/min, the column
    # says what the chart's last minute shows
    jobs.engine.conn.execute(
        "insert into supaqueue.job (queue, status, finished_at)"
        " select %s, 'success', now() - interval '20 seconds' from generate_series(1, 100)",
        (jobs.reports,),
    )
    rows = {r["name"]: r for r in json.loads(ok("status", "--db-url", jobs.dsn, "--json"))}
    assert rows["reports"]["succeeded_last_minute"] == 100
    assert round(rows["reports"]["succeeded_per_minute"], 2) == 1.67
    table = ok("status", "--db-url", jobs.dsn)
    line = next(x for x in table.splitlines() if " reports " in x)
    assert " 100 " in line and "1.67" not in line


def test_exit_codes_are_the_documented_ones(jobs: Jobs) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "2 bad usage" in readme and "4 nothing to do" in readme
    ok("pause", "emails", "--db-url", jobs.dsn, "--yes")
    again = supaqueue("pause", "emails", "--db-url", jobs.dsn, "--yes")
    assert again.returncode == 4 and "nothing to do" in again.stdout
    ok("resume", "emails", "--db-url", jobs.dsn, "--yes")
    assert supaqueue("resume", "emails", "--db-url", jobs.dsn, "--yes").returncode == 4
    both = supaqueue("status", "--stack", "dev", "--db-url", jobs.dsn)
    assert "not both" in one_line_error(both, 2)


def test_a_queue_paused_by_stack_and_operator_shows_both(jobs: Jobs) -> None:
    jobs.engine.conn.execute("update supaqueue.queue set paused = true where name = 'emails'")
    ok("pause", "emails", "--db-url", jobs.dsn, "--yes")
    assert "paused (stack + operator)" in ok("status", "--db-url", jobs.dsn)
    resumed = supaqueue("resume", "emails", "--db-url", jobs.dsn, "--yes")
    assert resumed.returncode == 0 and "stack declares it paused" in resumed.stdout
    assert "paused (stack)" in ok("status", "--db-url", jobs.dsn)


def test_status_watch_into_a_file_writes_each_draw_at_once(jobs: Jobs, tmp_path: Path) -> None:
    out = tmp_path / "status.txt"
    env = {k: v for k, v in os.environ.items() if k != "DB_URL"}
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [SUPAQUEUE, "status", "--db-url", jobs.dsn, "--watch", "1"],
            stdout=sink,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while "emails" not in out.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.2)
            # still running (no Ctrl-C yet), and the first table is already in the file
            assert proc.poll() is None
            assert "emails" in out.read_text(), "nothing written within 60 s while running"
        finally:
            proc.terminate()
            proc.wait(timeout=30)
