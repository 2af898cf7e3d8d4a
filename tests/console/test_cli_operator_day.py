"""Issue 22 items 2 and 3 through the real `supaqueue` entry point: why a job failed (error and
response in the job view and the error search), job id prefixes, retries marked, emptying a
queue on purpose (`cancel --queue Q --pending/--in-progress`, confirmed with the count) and
`run-now`."""

from __future__ import annotations

import json

from tests.console.conftest import Jobs, supaqueue
from tests.console.test_cli import ok, one_line_error

NOT_FOUND_BODY = '{"code":"NOT_FOUND","message":"Requested function was not found"}'


def not_found_job(jobs: Jobs) -> str:
    """A job of a queue whose target function is not deployed: `HTTP 404 Not Found`, with the
    reason only in the answer."""
    e = jobs.engine
    q = e.queue(workers=1, name="missing-fn", max_attempts=1)
    job = e.enqueue(q, {"n": 1})
    e.end(
        e.current_job_of(job),
        success=False,
        _status_code=404,
        _error="HTTP 404 Not Found",
        _response_excerpt=NOT_FOUND_BODY,
    )
    return job


def test_the_job_view_shows_the_error_and_the_response(jobs: Jobs) -> None:
    job = not_found_job(jobs)
    out = ok("job", job, "--db-url", jobs.dsn)
    assert "HTTP 404 Not Found" in out
    assert "Requested function was not found" in out  # was only in --json before
    detail = json.loads(ok("job", job, "--db-url", jobs.dsn, "--json"))
    assert detail["last_response_excerpt"] == NOT_FOUND_BODY


def test_the_error_search_finds_text_of_the_response(jobs: Jobs) -> None:
    job = not_found_job(jobs)
    rows = json.loads(
        ok("jobs", "--db-url", jobs.dsn, "--error", "function was NOT found", "--json")
    )
    assert [r["id"] for r in rows] == [job]


def test_job_id_prefixes_where_unambiguous(jobs: Jobs) -> None:
    e = jobs.engine
    short = jobs.failed[:8]  # what the dashboard shows
    assert json.loads(ok("job", short, "--db-url", jobs.dsn, "--json"))["id"] == jobs.failed
    # two jobs that share a prefix: a clear error listing both
    q = e.queue(workers=0, name="twins")
    twins = ["abcdef01-0000-4000-8000-000000000001", "abcdef01-0000-4000-8000-000000000002"]
    for twin in twins:
        e.conn.execute("insert into supaqueue.job (id, queue) values (%s, %s)", (twin, q))
    line = one_line_error(supaqueue("job", "abcdef01", "--db-url", jobs.dsn), 2)
    assert "matches 2 jobs" in line and twins[0] in line and twins[1] in line
    assert "give more characters" in line
    line = one_line_error(supaqueue("job", "0000000f", "--db-url", jobs.dsn), 3)
    assert "no job whose id starts with '0000000f'" in line
    line = one_line_error(supaqueue("job", "nope!", "--db-url", jobs.dsn), 2)
    assert "is not a UUID or the start of one" in line
    # the other commands that take ids too
    assert "cancelled" in ok("cancel", twins[0][:-1] + "1", "--db-url", jobs.dsn, "--yes")


def test_retries_are_marked_in_the_attempt_history(jobs: Jobs) -> None:
    job = not_found_job(jobs)  # its queue has a free worker: the retry dispatches at once
    ok("retry", job[:8], "--db-url", jobs.dsn, "--yes")
    e = jobs.engine
    e.end(e.current_job_of(job), success=False, _status_code=500, _error="HTTP 500 again")
    out = ok("job", job, "--db-url", jobs.dsn)
    assert "run 2" in out and "retry_job" in out and "via supaqueue-console" in out
    detail = json.loads(ok("job", job, "--db-url", jobs.dsn, "--json"))
    assert [(a["attempt"], a["run"]) for a in detail["attempt_history"]] == [(1, 1), (1, 2)]
    assert [a["action"] for a in detail["operator_actions"]] == ["retry_job"]


def test_cancel_a_queues_pending_jobs_confirmed_with_the_count(jobs: Jobs) -> None:
    # no terminal and no --yes: refused, saying how many it would cancel
    line = one_line_error(
        supaqueue("cancel", "--queue", "reports", "--pending", "--db-url", jobs.dsn), 5
    )
    assert "Cancel 3 pending job(s) of queue reports" in line and "--yes" in line
    assert (
        jobs.engine.one(
            "select count(*) from supaqueue.job where queue = %s and status = 'pending'",
            (jobs.reports,),
        )
        == 3
    )
    out = ok("cancel", "--queue", "reports", "--pending", "--db-url", jobs.dsn, "--yes", "--json")
    assert json.loads(out) == {"cancelled": 3, "matched": 3}
    nothing = supaqueue("cancel", "--queue", "reports", "--pending", "--db-url", jobs.dsn, "--yes")
    assert nothing.returncode == 4 and "no pending job of queue reports" in nothing.stdout
    both = ["--pending", "--in-progress"]
    nothing = supaqueue("cancel", "--queue", "reports", *both, "--db-url", jobs.dsn, "--yes")
    assert nothing.returncode == 4
    assert "no pending or in-progress job of queue reports" in nothing.stdout
    bad = supaqueue("cancel", "--queue", "reports", "--db-url", jobs.dsn)
    assert bad.returncode == 2 and "--pending and/or --in-progress" in bad.stderr


def test_cancel_a_queues_in_progress_jobs(jobs: Jobs) -> None:
    e = jobs.engine
    lease = e.current_job_of(jobs.in_progress)
    out = ok("cancel", "-q", "emails", "--in-progress", "--db-url", jobs.dsn, "--yes")
    assert "cancelled 1 job(s) of queue emails" in out
    assert e.status(jobs.in_progress) == "cancelled"
    assert e.end(lease, _status_code=200) is False  # its late answer changes nothing
    assert e.status(jobs.in_progress) == "cancelled"


def test_run_now(jobs: Jobs) -> None:
    e = jobs.engine
    later = e.enqueue(jobs.reports, {"n": 9}, _run_at="2099-01-01T00:00:00Z")
    out = ok("run-now", later[:8], "--db-url", jobs.dsn)
    assert f"job {later} is due now" in out
    assert e.job(later)["run_in_s"] <= 0
    again = supaqueue("run-now", later, "--db-url", jobs.dsn)
    assert again.returncode == 4 and "was not delayed" in again.stdout


def test_help_lists_run_now_and_the_cancel_options() -> None:
    assert "  run-now " in ok("--help")
    cancel = ok("cancel", "--help")
    assert "--pending" in cancel and "--in-progress" in cancel and "--queue" in cancel
