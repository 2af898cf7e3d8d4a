"""All-or-nothing plans (issue 22 item 1), real Pulumi engine, local stack.

A refusal that can be known before a change stops the whole `destroy` or `up` before its first
resource changes, naming every blocker and what to do; afterwards a preview shows no change:
- destroy with pending jobs in a queue paused by the operator (it used to delete the other
  queue, the destroy guard and a schedule, then fail on the queue);
- destroy with a user view over supaqueue.job (it used to remove a queue, the settings rows and
  the Vault secret, then say "nothing else was" removed);
- an `up` removing a queue together with the trigger and the schedule that feed it (it used to
  drop the trigger, then fail on the queue).
And what a change does to live work is said at preview.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness.pulumi_project import PulumiProject
from tests.e2e.test_lifecycle import enqueue, scalar, uninstall

pytestmark = [pytest.mark.engine, pytest.mark.stack]

WAIT_SECONDS = 120
ECHO = {"name": "plan-echo", "edge_function_name": "demo-target", "workers": 2}
PIPELINE = {"name": "plan-pipeline", "edge_function_name": "demo-target", "workers": 2}
SCHEDULE = {"name": "plan-nightly", "cron": "0 3 * * *", "queue": "plan-pipeline"}
TABLE = "public.e2e_plan_orders"


@pytest.fixture
def project(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    db_url = local_stack.env["DB_URL"]
    uninstall(db_url)
    execute(db_url, f"drop table if exists {TABLE}; create table {TABLE} (id int primary key)")
    created = PulumiProject.create(tmp_path, "plan", local_stack.env)
    try:
        yield created
    finally:
        execute(db_url, "drop view if exists public.plan_user_view")
        created.cleanup()
        execute(db_url, f"drop table if exists {TABLE}")


def execute(db_url: str, statement: str, *params: Any) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(statement, params)


def refused(project: PulumiProject, *args: str) -> str:
    """The command fails, with a message and no traceback or Python class path."""
    done = project.run(*args, check=False)
    shown = done.stdout + done.stderr
    assert done.returncode != 0, done.stdout[-3000:]
    assert "Traceback" not in shown
    assert "supaqueue.errors" not in shown, shown[-3000:]
    return shown


def installation(db_url: str) -> dict[str, Any]:
    """Everything a half-applied destroy or up took away before."""
    with psycopg.connect(db_url, autocommit=True) as conn:

        def one(query: str) -> Any:
            row = conn.execute(query).fetchone()
            return None if row is None else row[0]

        if not one("select to_regnamespace('supaqueue') is not null"):
            return {"schema": False}
        return {
            "schema": True,
            "queues": one("select array_agg(name order by name) from supaqueue.queue"),
            "jobs": one("select count(*) from supaqueue.job"),
            "settings": one("select array_agg(key order by key) from supaqueue.settings"),
            "vault": one("select count(*) from vault.secrets where name = 'supaqueue_secret'"),
            "schedules": one("select array_agg(name order by name) from supaqueue.schedule"),
            "triggers": one("select array_agg(name order by name) from supaqueue.table_trigger"),
            "table_triggers": one(
                "select count(*) from pg_trigger"
                f" where tgrelid = '{TABLE}'::regclass and not tgisinternal"
            ),
        }


def test_a_refused_destroy_changes_nothing(project: PulumiProject, local_stack: Any) -> None:
    db_url = local_stack.env["DB_URL"]
    project.configure(target="local", demo=True, queues=[ECHO, PIPELINE], schedules=[SCHEDULE])
    project.up()
    echo = project.outputs()["queue_ids"]["plan-echo"]

    # 5 pending jobs in a queue the operator paused (the dev stack's demo-echo in the issue).
    execute(db_url, "select supaqueue.pause_queue(%s)", echo)
    enqueue(db_url, echo, 5)
    before = installation(db_url)
    assert before["queues"] == ["plan-echo", "plan-pipeline"] and before["jobs"] == 5

    out = refused(project, "destroy", "--yes", "--skip-preview")
    Path("/tmp/plan-destroy.txt").write_text(out)
    assert "supaqueue was not removed, and nothing else was" in out
    assert "queue 'plan-echo' with 5 pending jobs, paused by the operator" in out
    assert "discard_unfinished_on_delete: true" in out
    assert installation(db_url) == before
    project.run("preview", "--expect-no-changes")

    # The jobs cancelled, a user's view over supaqueue.job: refused again, and still nothing
    # removed (the message used to say so while the queue, settings and secret were gone).
    execute(db_url, "select supaqueue.cancel_job(id) from supaqueue.job")
    execute(db_url, "create view public.plan_user_view as select id, status from supaqueue.job")
    before = installation(db_url)
    out = refused(project, "destroy", "--yes", "--skip-preview")
    assert "supaqueue was not removed, and nothing else was" in out
    assert "view public.plan_user_view" in out
    assert "plan-echo" not in out  # its jobs are finished now: no longer a blocker
    assert installation(db_url) == before
    project.run("preview", "--expect-no-changes")

    execute(db_url, "drop view public.plan_user_view")
    project.run("destroy", "--yes", "--skip-preview")
    assert installation(db_url)["schema"] is False


def test_removing_a_queue_with_what_feeds_it_is_all_or_nothing(
    project: PulumiProject, local_stack: Any
) -> None:
    db_url = local_stack.env["DB_URL"]
    doomed = {"name": "plan-doomed", "edge_function_name": "demo-target", "paused": True}
    trigger = {"name": "plan-orders", "table": TABLE, "events": ["INSERT"], "queue": "plan-doomed"}
    schedule = dict(SCHEDULE, queue="plan-doomed")
    declared = {"queues": [ECHO, doomed], "triggers": [trigger], "schedules": [schedule]}
    project.configure(target="local", demo=True, **declared)
    project.up()
    ids = project.outputs()["queue_ids"]
    execute(db_url, f"insert into {TABLE} values (1), (2), (3)")  # 3 pending jobs (paused)
    before = installation(db_url)
    assert before["jobs"] == 3 and before["table_triggers"] > 0

    # Remove the queue, its trigger and its schedule, and change another queue, in one `up`.
    project.configure(target="local", demo=True, queues=[dict(ECHO, workers=3)])
    for command in (("preview",), ("up", "--yes", "--skip-preview")):
        out = refused(project, *command)
        Path(f"/tmp/plan-refused-{command[0]}.txt").write_text(out)
        assert "nothing was changed" in out
        assert "removes queue 'plan-doomed' with 3 pending jobs, paused by the stack" in out
        assert "discard_unfinished_on_delete: true" in out
        assert installation(db_url) == before
    workers = "select count(*) from supaqueue.worker where queue = %s"
    assert scalar(db_url, workers, ids["plan-echo"]) == 2  # the other change waited too
    project.configure(target="local", demo=True, **declared)
    project.run("preview", "--expect-no-changes")

    # Said on purpose: the jobs may go. Then the same removal goes through, and says what it
    # discards at preview.
    project.configure(
        target="local",
        demo=True,
        **{**declared, "queues": [ECHO, dict(doomed, discard_unfinished_on_delete=True)]},
    )
    project.up()
    project.configure(target="local", demo=True, queues=[ECHO])
    done = project.run("preview")
    shown = done.stdout + done.stderr
    Path("/tmp/plan-discard.txt").write_text(shown)
    assert "removes queue 'plan-doomed', discarding its 3 pending jobs" in shown, shown[-3000:]
    project.up()
    after = installation(db_url)
    assert after["queues"] == ["plan-echo"] and after["jobs"] == 0
    assert after["triggers"] is None and after["schedules"] is None
    assert after["table_triggers"] == 0


def test_preview_says_what_a_change_does_to_live_work(
    project: PulumiProject, local_stack: Any
) -> None:
    db_url = local_stack.env["DB_URL"]
    busy = {"name": "plan-busy", "edge_function_name": "demo-target", "workers": 4,
            "max_attempts": 5, "timeout_ms": 60000}  # fmt: skip
    project.configure(target="local", demo=True, queues=[busy])
    project.up()
    queue = project.outputs()["queue_ids"]["plan-busy"]
    # 4 calls in flight (the target holds each for 45 s) and 2 pending jobs that already ran
    # twice (set in SQL: their attempts are what the engine counts).
    enqueue(db_url, queue, 4, '{"sleep_ms": 45000}')
    deadline = time.monotonic() + WAIT_SECONDS
    running = "select count(*) from supaqueue.job where queue = %s and status = 'in_progress'"
    while scalar(db_url, running, queue) < 4:
        assert time.monotonic() < deadline, "the 4 calls did not start"
        time.sleep(0.2)
    execute(
        db_url,
        "insert into supaqueue.job (queue, payload, attempts, run_at)"
        " select %s, '{}', 2, now() + interval '1 hour' from generate_series(1, 2)",
        queue,
    )
    try:
        project.configure(
            target="local",
            demo=True,
            queues=[dict(busy, workers=1, max_attempts=3), dict(busy, name="plan-nowhere",
                    edge_function_name="not-deployed-anywhere")],
        )  # fmt: skip
        done = project.run("preview", "--diff")
        shown = done.stdout + done.stderr
        assert "workers 4 → 1: the 4 calls in flight finish first" in shown, shown[-4000:]
        assert (
            "max_attempts 5 → 3: 2 unfinished job(s) have already used 2 or more attempts" in shown
        )
        assert "'not-deployed-anywhere', which is not deployed" in shown
        assert "'demo-target', which is not deployed" not in shown
        # Lists compactly: the 98 default non-retryable statuses on one line.
        assert '"400-407,409-428,430-499"' in shown, shown[-4000:]
        assert shown.count("\n") < 200, shown
    finally:
        execute(db_url, "select supaqueue.cancel_job(id) from supaqueue.job")


def test_preview_json_steps(project: PulumiProject) -> None:
    """Adding a queue is still exactly one create: neither the preflight nor the destroy guard
    is updated for it."""
    project.configure(target="local", queues=[ECHO])
    project.up()
    project.configure(target="local", queues=[ECHO, PIPELINE])
    steps = json.loads(project.run("preview", "--json").stdout)["steps"]
    assert [(s["urn"].split("::")[-1], s["op"]) for s in steps if s["op"] != "same"] == [
        ("supaqueue-queue-plan-pipeline", "create")
    ]
