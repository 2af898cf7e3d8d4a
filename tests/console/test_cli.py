"""The operator commands through the real `supaqueue` entry point against a real database."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psycopg
import pytest

from harness.toolchain import REPO as REPO_ROOT
from tests.console.conftest import SUPAQUEUE, Jobs, supaqueue


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    result = supaqueue(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_lists_dev_and_operator_commands() -> None:
    out = ok("--help")
    for command in (
        "dev",
        "status",
        "jobs",
        "job",
        "retry",
        "cancel",
        "purge",
        "pause",
        "resume",
        "ui",
    ):
        assert f"  {command} " in out
    # `dev` is the local stack's own parser, unchanged
    dev = supaqueue("dev", "--help")
    assert dev.returncode == 0 and "{up,down,status,destroy}" in dev.stdout
    bad = supaqueue("dev", "nonsense")
    assert bad.returncode == 1 and "invalid choice" in bad.stderr


def test_dev_through_the_root_is_the_local_stack_cli_unchanged(tmp_path: Path) -> None:
    args = ["dev", "status", "--dir", str(tmp_path / "none"), "-o", "env"]
    direct = subprocess.run(
        [sys.executable, "-m", "supaqueue.local_stack.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    rooted = supaqueue(*args)
    assert (rooted.returncode, rooted.stdout, rooted.stderr) == (
        direct.returncode,
        direct.stdout,
        direct.stderr,
    )
    assert rooted.returncode == 1 and "no local stack" in rooted.stderr


def test_status_table_json_and_watch(jobs: Jobs) -> None:
    table = ok("status", "--db-url", jobs.dsn)
    assert "emails" in table and "reports" in table and "running" in table
    rows = {r["name"]: r for r in json.loads(ok("status", "--db-url", jobs.dsn, "--json"))}
    assert rows["emails"]["busy_workers"] == 1 and rows["emails"]["workers"] == 1
    assert (rows["emails"]["pending"], rows["emails"]["in_progress"]) == (1, 1)
    assert (rows["emails"]["succeeded"], rows["emails"]["failed"]) == (1, 1)
    assert rows["emails"]["rate_limit_per_second"] == 5 and rows["reports"]["pending"] == 3
    # DB_URL works as well as --db-url; --watch redraws (bounded here by --times)
    watched = ok("status", "--json", "--watch", "0.2", "--times", "2", env={"DB_URL": jobs.dsn})
    assert [len(json.loads(line)) for line in watched.splitlines()] == [2, 2]


def test_jobs_filters_and_keyset_paging(jobs: Jobs) -> None:
    every = json.loads(ok("jobs", "--db-url", jobs.dsn, "--json"))
    assert len(every) == 8
    failed = json.loads(ok("jobs", "--db-url", jobs.dsn, "--json", "--state", "failed"))
    assert [j["id"] for j in failed] == [jobs.failed]
    errors = json.loads(ok("jobs", "--db-url", jobs.dsn, "--json", "--error", "unavailable"))
    assert [j["id"] for j in errors] == [jobs.failed]
    both = json.loads(
        ok("jobs", "--db-url", jobs.dsn, "--json", "-s", "pending,in_progress", "--queue", "emails")
    )
    assert {j["id"] for j in both} == {jobs.pending, jobs.in_progress}
    # spelled as `cancel --in-progress` spells it
    hyphen = json.loads(ok("jobs", "--db-url", jobs.dsn, "--json", "-s", "in-progress"))
    assert [j["id"] for j in hyphen] == [jobs.in_progress]
    seen: list[str] = []
    after: list[str] = []
    for _ in range(10):
        page = json.loads(ok("jobs", "--db-url", jobs.dsn, "--json", "--limit", "3", *after))
        if not page:
            break
        seen += [j["id"] for j in page]
        after = ["--after", page[-1]["id"]]
    assert sorted(seen) == sorted(j["id"] for j in every)
    table = ok("jobs", "--db-url", jobs.dsn, "--limit", "3")
    assert "next page: --after" in table
    recent = json.loads(ok("jobs", "--db-url", jobs.dsn, "--json", "--since", "1h"))
    assert len(recent) == 8
    assert json.loads(ok("jobs", "--db-url", jobs.dsn, "--json", "--until", "1h")) == []
    bad = supaqueue("jobs", "--db-url", jobs.dsn, "--state", "done")
    assert "state 'done' is not one of" in one_line_error(bad, 2)
    unknown = supaqueue("jobs", "--db-url", jobs.dsn, "--queue", "nope")
    assert "no queue named 'nope'" in one_line_error(unknown, 3)


def test_job_detail(jobs: Jobs) -> None:
    detail = json.loads(ok("job", jobs.failed, "--db-url", jobs.dsn, "--json"))
    assert detail["status"] == "failed" and detail["payload"] == {"to": "bob@example.com"}
    assert detail["attempt_history"][0]["error"] == "HTTP 503 Service Unavailable"
    assert [d["id"] for d in detail["dependents"]] == [jobs.cancelled]
    table = ok("job", jobs.failed, "--db-url", jobs.dsn)
    assert "HTTP 503 Service Unavailable" in table and "waited for by" in table
    missing = supaqueue("job", "00000000-0000-0000-0000-000000000000", "--db-url", jobs.dsn)
    assert "there is no job" in one_line_error(missing, 3)
    assert "is not a UUID" in one_line_error(supaqueue("job", "x1", "--db-url", jobs.dsn), 2)


def test_job_shows_payload_numbers_exactly(jobs: Jobs) -> None:
    """README "Numbers travel exactly": `supaqueue job` showed 1e-400 as 0.0 and cut a long
    decimal (psycopg loads JSON numbers as Python floats); a value in brackets was taken as rich
    markup; an unset field read "None"."""
    payload = '{"big": 123456789012345678901234567, "tiny": 1e-400, "pi": 3.14159265358979323846, "s": "[bold]x[/bold]"}'  # noqa: E501
    job_id = jobs.engine.one(
        "insert into supaqueue.job (queue, payload) values (%s, %s::jsonb) returning id::text",
        (jobs.reports, payload),
    )
    stored = jobs.engine.one("select payload::text from supaqueue.job where id = %s", (job_id,))
    assert "0.000000000000" in stored and "3.14159265358979323846" in stored
    detail = json.loads(ok("job", job_id, "--db-url", jobs.dsn, "--json"))
    assert detail["payload_text"] == stored and detail["result_text"] == "null"
    table = supaqueue("job", job_id[:8], "--db-url", jobs.dsn)
    assert table.returncode == 0, table.stderr
    # the table wraps long values: compare without the layout's spaces and line breaks
    assert stored.replace(" ", "") in "".join(table.stdout.split()), table.stdout
    dedup = next(line for line in table.stdout.splitlines() if line.startswith("dedup_key"))
    assert dedup.split() == ["dedup_key", "-"], dedup


def test_retry_asks_and_exit_codes_say_what_happened(jobs: Jobs) -> None:
    # no terminal and no --yes: refused, nothing changed
    refused = supaqueue("retry", jobs.failed, "--db-url", jobs.dsn)
    assert "--yes" in one_line_error(refused, 5)
    assert jobs.engine.status(jobs.failed) == "failed"
    done = json.loads(ok("retry", jobs.failed, "--db-url", jobs.dsn, "--yes", "--json"))
    assert done == {"retried": [jobs.failed], "not_retried": []}
    assert jobs.engine.status(jobs.failed) == "pending"
    assert jobs.engine.status(jobs.cancelled) == "pending"  # its dependent came back
    again = supaqueue("retry", jobs.failed, "--db-url", jobs.dsn, "--yes")
    assert again.returncode == 4 and "not retried" in again.stdout
    usage = supaqueue("retry", "--db-url", jobs.dsn, "--yes")
    assert usage.returncode == 2


def test_retry_every_failed_job_of_a_queue(jobs: Jobs) -> None:
    args = ["retry", "--queue", "emails", "--failed", "--db-url", jobs.dsn, "--yes", "--json"]
    nothing = supaqueue(*args, "--error", "timeout")
    assert nothing.returncode == 4 and json.loads(nothing.stdout) == {"retried": 0}
    assert json.loads(ok(*args, "--since", "1h")) == {"retried": 1}
    assert jobs.engine.status(jobs.failed) == "pending"


def run_on_terminal(args: list[str], answer: str) -> tuple[int, str]:
    """Run the command with a pseudo-terminal as stdin/stdout, type `answer` at the prompt."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [SUPAQUEUE, *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={k: v for k, v in os.environ.items() if k != "DB_URL"},
    )
    os.close(secondary)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if not answered and b"Go ahead?" in output:
            os.write(main, answer.encode() + b"\n")
            answered = True
        if proc.poll() is not None and not ready:
            break
    code = proc.wait(timeout=30)
    os.close(main)
    return code, output.decode(errors="replace")


def test_destructive_commands_say_what_they_do_and_ask(jobs: Jobs) -> None:
    code, out = run_on_terminal(["cancel", jobs.pending, "--db-url", jobs.dsn], "n")
    assert code == 5 and f"Cancel 1 job(s) and their pending dependents: {jobs.pending}" in out
    assert jobs.engine.status(jobs.pending) == "pending"
    code, out = run_on_terminal(["cancel", jobs.pending, "--db-url", jobs.dsn], "y")
    assert code == 0 and f"cancelled {jobs.pending}" in out
    assert jobs.engine.status(jobs.pending) == "cancelled"
    code, out = run_on_terminal(["purge", "--queue", "emails", "--db-url", jobs.dsn], "n")
    # 4: success, failed, its cancelled dependent and the job cancelled just above
    assert code == 5 and "Delete 4 success/failed/cancelled job(s) of queue emails" in out


def test_cancel_in_progress_and_finished(jobs: Jobs) -> None:
    out = json.loads(
        ok("cancel", jobs.in_progress, jobs.success, "--db-url", jobs.dsn, "-y", "--json")
    )
    assert out == {"cancelled": [jobs.in_progress], "not_cancelled": [jobs.success]}
    assert jobs.engine.status(jobs.in_progress) == "cancelled"
    # the freed worker took the pending job
    assert jobs.engine.status(jobs.pending) == "in_progress"
    finished = supaqueue("cancel", jobs.success, "--db-url", jobs.dsn, "-y")
    assert finished.returncode == 4


def test_purge_by_state_and_age(jobs: Jobs) -> None:
    base = ["purge", "--queue", "emails", "--db-url", jobs.dsn, "--yes", "--json"]
    assert supaqueue(*base, "--older-than", "1h").returncode == 4  # all finished just now
    assert json.loads(ok(*base, "--state", "success")) == {"purged": 1}
    assert json.loads(ok(*base)) == {"purged": 2}
    bad = supaqueue(*base, "--state", "pending")
    assert "cannot be purged" in one_line_error(bad, 2)
    assert jobs.engine.status(jobs.pending) == "pending"


def test_pause_and_resume(jobs: Jobs) -> None:
    paused = json.loads(ok("pause", "emails", "--db-url", jobs.dsn, "--yes", "--json"))
    assert paused["paused_by_operator_since"] is not None
    assert "paused (operator)" in ok("status", "--db-url", jobs.dsn)
    jobs.engine.conn.execute("update supaqueue.queue set paused = true where name = 'emails'")
    out = ok("resume", "emails", "--db-url", jobs.dsn, "--yes")
    assert "stack declares it paused" in out
    assert "paused (stack)" in ok("status", "--db-url", jobs.dsn)
    assert "no queue named" in one_line_error(supaqueue("pause", "x", "--db-url", jobs.dsn), 3)


def test_a_queue_name_must_match_exactly(jobs: Jobs) -> None:
    """`supaqueue pause $'emails\\n'` paused `emails` (issue 21 item 4): names match exactly."""
    for name in ("emails\n", " emails", "EMAILS", "emails "):
        failed = supaqueue("pause", name, "--db-url", jobs.dsn, "--yes")
        assert f"no queue named {name!r}" in one_line_error(failed, 3), name
    paused = jobs.engine.one("select operator_paused_at from supaqueue.queue where name = 'emails'")
    assert paused is None
    # and no queue can be named so: the slug is matched whole in SQL (no `$` before a final \n)
    with pytest.raises(psycopg.errors.CheckViolation):
        jobs.engine.queue(workers=0, name="emails\n")


def test_connection_errors_never_show_the_password(jobs: Jobs) -> None:
    nothing = supaqueue("status")
    assert "--stack" in one_line_error(nothing, 1)
    url = "postgresql://postgres:NotThePassword123@127.0.0.1:1/postgres"
    failed = supaqueue("status", "--db-url", url)
    line = one_line_error(failed, 1)
    assert "cannot connect" in line and "127.0.0.1:1" in line
    assert "NotThePassword123" not in failed.stderr + failed.stdout
    assert "not a Postgres connection URL" in one_line_error(
        supaqueue("status", "--db-url", "x"), 1
    )


@pytest.fixture
def pulumi_project(tmp_path: Path) -> Path:
    """A throw-away Pulumi project folder using this checkout's toolchain and scripts."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    for name in ("scripts", "toolchain", ".toolchain", ".venv"):
        (project / name).symlink_to(REPO_ROOT / name)
    (tmp_path / "state").mkdir()
    return project


def test_stack_reads_the_db_url_secret_through_pulumi(jobs: Jobs, pulumi_project: Path) -> None:
    env = {
        "SUPAQUEUE_ROOT": str(pulumi_project),
        "PULUMI_BACKEND_URL": f"file://{pulumi_project.parent / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "test-only-passphrase",
        "SUPAQUEUE_STACK_CACHE_DIR": str(pulumi_project.parent / "stack-cache"),
    }
    script = str(pulumi_project / "scripts" / "pulumi-stack.sh")

    def pulumi(*args: str) -> None:
        result = subprocess.run(
            [script, "optest", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    pulumi("config", "set", "supaqueue:target", "supabase")
    missing = supaqueue("status", "--stack", "optest", env=env)
    assert "supaqueue:dbUrl" in one_line_error(missing, 1)
    pulumi("config", "set", "--secret", "supaqueue:dbUrl", jobs.dsn)
    stack_file = (pulumi_project / "Pulumi.optest.yaml").read_text()
    assert jobs.dsn not in stack_file  # kept encrypted in the stack file
    rows = json.loads(ok("status", "--stack", "optest", "--json", env=env))
    assert {r["name"] for r in rows} == {"emails", "reports"}
    # a local-target stack without dbUrl uses the local stack, which is not running here
    pulumi("config", "rm", "supaqueue:dbUrl")
    pulumi("config", "set", "supaqueue:target", "local")
    if supaqueue("dev", "status").returncode == 0:
        warnings.warn(
            "this checkout's local stack runs: the not-running branch is unchecked", stacklevel=1
        )
    else:
        local = supaqueue("status", "--stack", "optest", env=env)
        assert "local stack" in one_line_error(local, 1)
    both = supaqueue("status", "--stack", "optest", "--db-url", jobs.dsn, env=env)
    assert "not both" in one_line_error(both, 2)  # bad usage, as documented


def test_status_shows_each_queues_next_scheduled_run(jobs: Jobs) -> None:
    # A schedule on `reports` (as the Schedule provider writes it): status names it and its
    # next slot; a queue without a schedule shows none.
    jobs.engine.one(
        "insert into supaqueue.schedule (name, queue, cron, timezone, payload, next_run_at)"
        " values ('nightly', %s, '0 3 * * *', 'UTC', '{}',"
        " (supaqueue.cron_next_runs('0 3 * * *', 'UTC', 1))[1]) returning id",
        (jobs.reports,),
    )
    rows = {r["name"]: r for r in json.loads(ok("status", "--db-url", jobs.dsn, "--json"))}
    assert rows["reports"]["next_schedule"] == "nightly"
    assert rows["reports"]["next_schedule_at"].endswith(("03:00:00+00:00", "03:00:00Z"))
    assert rows["emails"]["next_schedule"] is None
    table = ok("status", "--db-url", jobs.dsn)
    assert "nightly" in table and "next schedule" in table


def test_status_shows_queues_and_keys_held_by_a_retry_after(jobs: Jobs) -> None:
    """Issue 26 item 3 (sql/0027): a 429/503 with Retry-After held `reports`, and two keys of
    `emails`: the table's state and a line each under it, the --json rows' fields."""
    rows = {r["name"]: r for r in json.loads(ok("status", "--db-url", jobs.dsn, "--json"))}
    assert rows["emails"]["held_until"] is None and rows["emails"]["held_keys"] == 0
    conn = jobs.engine.conn
    conn.execute(
        "insert into supaqueue.queue_hold (queue, held_until, reason)"
        " values (%s, now() + interval '30 minutes', 'HTTP 429 with Retry-After: 1800 s (job x)')",
        (jobs.reports,),
    )
    conn.execute(
        "insert into supaqueue.queue_key (queue, key, held_until, hold_reason) values"
        " (%(q)s, 'a', now() + interval '1 minute', 'HTTP 503 with Retry-After: 60 s (job y)'),"
        " (%(q)s, 'b', now() + interval '50 seconds', 'HTTP 429 with Retry-After: 50 s (job z)'),"
        " (%(q)s, 'c', now() - interval '1 second', 'over')",
        {"q": jobs.emails},
    )
    try:
        table = ok("status", "--db-url", jobs.dsn)
        assert "held until" in table and "running, 2 keys held" in table
        assert "queue reports held until" in table
        assert "HTTP 429 with Retry-After: 1800 s (job x)" in table
        assert "queue emails: 2 key(s) held, the longest until" in table
        assert "HTTP 503 with Retry-After: 60 s (job y)" in table
        rows = {r["name"]: r for r in json.loads(ok("status", "--db-url", jobs.dsn, "--json"))}
        assert rows["reports"]["hold_reason"] == "HTTP 429 with Retry-After: 1800 s (job x)"
        assert rows["reports"]["held_until"] is not None and rows["reports"]["held_keys"] == 0
        assert rows["emails"]["held_until"] is None and rows["emails"]["held_keys"] == 2
        assert rows["emails"]["key_hold_reason"] == "HTTP 503 with Retry-After: 60 s (job y)"
    finally:
        conn.execute("delete from supaqueue.queue_hold")
        conn.execute("update supaqueue.queue_key set held_until = null, hold_reason = null")


def test_status_shows_a_dispatch_held_for_a_missing_dispatcher(jobs: Jobs) -> None:
    """Issue 21 item 6: the tick holds dispatch when the dispatcher answers 404 (sql/0018)."""
    import psycopg

    rows = json.loads(ok("status", "--db-url", jobs.dsn, "--json"))
    assert {r["dispatch_held_since"] for r in rows} == {None}
    with psycopg.connect(jobs.dsn, autocommit=True) as conn:
        conn.execute(
            "insert into supaqueue.dispatch_hold (reason, returned)"
            " values ('the dispatcher http://x/supaqueue answered HTTP 404 (gone)', 3)"
        )
    table = ok("status", "--db-url", jobs.dsn)
    assert "held: no dispatcher" in table and "answered HTTP 404 (gone)" in table
    rows = json.loads(ok("status", "--db-url", jobs.dsn, "--json"))
    assert all(r["dispatch_held_since"] for r in rows)
    assert {r["dispatch_hold_reason"] for r in rows} == {
        "the dispatcher http://x/supaqueue answered HTTP 404 (gone)"
    }
