"""Triggers and schedules through their whole life, real Pulumi CLI, local stack (issue 13):

preview validates and shows next run times → up → row changes and schedule slots become jobs
that succeed at the demo target → change both, up (in place) → dropped by hand (a table trigger,
the schedule's row, a table under a second trigger): preview fails saying what to run, refresh + up
put them back and remove the trigger whose table is gone → remove both, up (gone) → destroy
(nothing of supaqueue left, the user's table and rows intact).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness.pulumi_project import PulumiProject
from tests.e2e.test_lifecycle import scalar, uninstall
from tests.e2e.test_two_stacks import failed as preview_fails

pytestmark = [pytest.mark.engine, pytest.mark.stack]

# The 1.4 tick loop starts at the next minute boundary: allow for that, on a loaded machine.
WAIT_SECONDS = 180
QUEUE = {
    "name": "e2e-hooks",
    "edge_function_name": "demo-target",
    "workers": 2,
    "timeout_ms": 5000,
    "backoff_base_ms": 100,
}
TRIGGER = {
    "name": "e2e-orders",
    "table": "public.e2e_orders",
    "events": ["INSERT"],
    "queue": "e2e-hooks",
    "when": "NEW.status = 'paid'",
}
SCHEDULE = {
    "name": "e2e-beat",
    "cron": "2 seconds",
    "queue": "e2e-hooks",
    "payload": {"from": "schedule", "v": 1},
}


@pytest.fixture
def project(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    db_url = local_stack.env["DB_URL"]
    uninstall(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("drop table if exists public.e2e_orders")
        conn.execute("create table public.e2e_orders (id int primary key, status text)")
        conn.execute("insert into public.e2e_orders values (0, 'before supaqueue')")
    created = PulumiProject.create(tmp_path, "hooks", local_stack.env)
    try:
        yield created
    finally:
        created.cleanup()
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("drop table if exists public.e2e_orders, public.e2e_gone")


def wait_for(db_url: str, query: str, expected: int, *params: Any) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while (got := scalar(db_url, query, *params)) < expected:
        if time.monotonic() > deadline:
            counts = scalar(
                db_url,
                "select jsonb_object_agg(s, n) from (select status::text s, count(*) n"
                " from supaqueue.job group by 1) x",
            )
            raise AssertionError(f"{query!r}: {got} < {expected} after {WAIT_SECONDS}s; {counts}")
        time.sleep(0.5)


def triggers_on_orders(db_url: str) -> list[str]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select tgname from pg_trigger where not tgisinternal"
            " and tgrelid = 'public.e2e_orders'::regclass order by 1"
        ).fetchall()
    return [row[0] for row in rows]


def execute(db_url: str, statement: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(statement)


TRIGGER_JOBS_OK = (
    "select count(*) from supaqueue.job where status = 'success'"
    " and result->'echo'->>'type' = %s and result->'echo'->>'table' = 'e2e_orders'"
)
SCHEDULE_JOBS_OK = (
    "select count(*) from supaqueue.job where status = 'success'"
    " and dedup_key like 'schedule:e2e-beat:%%' and (result->'echo'->>'v')::int = %s"
)


def test_triggers_and_schedules_lifecycle(project: PulumiProject, local_stack: Any) -> None:
    db_url = local_stack.env["DB_URL"]

    # Preview of a first `up`: a bad condition, a missing table, a bad cron are each named.
    for bad, says in (
        ({"triggers": [dict(TRIGGER, when="NEW.nope = 1")]}, "column new.nope does not exist"),
        (
            {"triggers": [dict(TRIGGER, table="public.e2e_nope")]},
            "public.e2e_nope does not exist in the database",
        ),
        (
            {"schedules": [dict(SCHEDULE, cron="0 25 * * *")]},
            "hour field '25': values must be within 0-23",
        ),
    ):
        project.configure(target="local", demo=True, queues=[QUEUE], **bad)
        failed = project.run("preview", check=False)
        assert failed.returncode != 0
        assert says in failed.stdout, failed.stdout[-3000:]
        assert "Traceback" not in failed.stdout + failed.stderr
    assert scalar(db_url, "select to_regnamespace('supaqueue') is null") is True

    # Preview of the good stack shows the schedule's next run times.
    project.configure(
        target="local", demo=True, queues=[QUEUE], triggers=[TRIGGER], schedules=[SCHEDULE]
    )
    shown = project.run("preview", "--diff").stdout
    assert "next_runs" in shown, shown[-3000:]

    # 1. up: row changes and slots become jobs that succeed at the demo target.
    project.up()
    outputs = project.outputs()
    assert len(outputs["schedule_next_runs"]["e2e-beat"]) == 3
    assert triggers_on_orders(db_url) == ["supaqueue_e2e-orders_insert"]
    trigger_id = project.resource_outputs("supaqueue-trigger-e2e-orders")["trigger_id"]
    schedule_id = project.resource_outputs("supaqueue-schedule-e2e-beat")["schedule_id"]
    execute(db_url, "insert into public.e2e_orders values (1, 'paid'), (2, 'new'), (3, 'paid')")
    wait_for(db_url, TRIGGER_JOBS_OK, 2, "INSERT")
    records = scalar(
        db_url,
        "select jsonb_agg(result->'echo'->'record' order by (result->'echo'->'record'->>'id'))"
        " from supaqueue.job where result->'echo'->>'type' = 'INSERT'",
    )
    assert records == [{"id": 1, "status": "paid"}, {"id": 3, "status": "paid"}]
    wait_for(db_url, SCHEDULE_JOBS_OK, 2, 1)
    project.run("preview", "--expect-no-changes")

    # 2. Change both: updated in place (same ids), and the change takes effect.
    changed_trigger = dict(
        TRIGGER, events=["INSERT", "UPDATE"], when="NEW.status is distinct from 'new'"
    )
    changed_schedule = dict(SCHEDULE, cron="3 seconds", payload={"from": "schedule", "v": 2})
    project.configure(
        target="local",
        demo=True,
        queues=[QUEUE],
        triggers=[changed_trigger],
        schedules=[changed_schedule],
    )
    ops = project.preview_ops()
    assert {name: op for name, op in ops.items() if op != "same"} == {
        "supaqueue-trigger-e2e-orders": "update",
        "supaqueue-schedule-e2e-beat": "update",
    }
    project.up()
    assert project.resource_outputs("supaqueue-trigger-e2e-orders")["trigger_id"] == trigger_id
    assert project.resource_outputs("supaqueue-schedule-e2e-beat")["schedule_id"] == schedule_id
    assert triggers_on_orders(db_url) == [
        "supaqueue_e2e-orders_insert",
        "supaqueue_e2e-orders_update",
        "supaqueue_e2e-orders_update_flush",
    ]
    execute(db_url, "update public.e2e_orders set status = 'shipped' where id = 1")
    wait_for(db_url, TRIGGER_JOBS_OK, 1, "UPDATE")
    old = scalar(
        db_url,
        "select result->'echo'->'old_record' from supaqueue.job"
        " where result->'echo'->>'type' = 'UPDATE'",
    )
    assert old == {"id": 1, "status": "paid"}
    wait_for(db_url, SCHEDULE_JOBS_OK, 1, 2)
    assert scalar(db_url, "select cron from supaqueue.schedule") == "3 seconds"

    # 2b. Dropped by hand: never "unchanged"; preview says what to run (one at a time: the
    # engine stops at the first resource that fails).
    gone = dict(TRIGGER, name="e2e-gone", table="public.e2e_gone", when=None)
    execute(db_url, "create table public.e2e_gone (id int primary key)")
    everything = {"queues": [QUEUE], "schedules": [changed_schedule]}
    project.configure(target="local", demo=True, triggers=[changed_trigger, gone], **everything)
    project.up()
    # The table under a trigger dropped: preview says so; removing the trigger then succeeds.
    execute(db_url, "drop table public.e2e_gone")
    out = preview_fails(project, "preview")
    assert "trigger 'e2e-gone' is on public.e2e_gone, which no longer exists" in out, out[-3000:]
    project.configure(target="local", demo=True, triggers=[changed_trigger], **everything)
    project.up()
    assert scalar(db_url, "select count(*) from supaqueue.table_trigger") == 1
    assert (
        scalar(db_url, "select count(*) from pg_proc where proname like 'tg_hook_e2e-gone%%'") == 0
    )
    assert len(triggers_on_orders(db_url)) == 3
    # One table trigger dropped: refresh, then up puts it back (same id).
    execute(db_url, 'drop trigger "supaqueue_e2e-orders_update" on public.e2e_orders')
    out = preview_fails(project, "preview")
    assert (
        f"trigger 'e2e-orders' ({trigger_id}) is in this stack's state but its table trigger(s)"
        " for UPDATE on public.e2e_orders are not in the database" in out
    ), out[-3000:]
    assert "`pulumi refresh`" in out
    project.run("refresh", "--yes", "--skip-preview")
    project.up()
    assert len(triggers_on_orders(db_url)) == 3
    assert project.resource_outputs("supaqueue-trigger-e2e-orders")["trigger_id"] == trigger_id
    # The schedule's row deleted: `up --refresh` makes it again.
    execute(db_url, f"delete from supaqueue.schedule where id = '{schedule_id}'")
    out = preview_fails(project, "preview")
    assert (
        f"schedule 'e2e-beat' ({schedule_id}) is in this stack's state but not in the database"
        in out
    ), out[-3000:]
    project.run("up", "--refresh", "--yes", "--skip-preview")
    assert scalar(db_url, "select count(*) from supaqueue.schedule where name = 'e2e-beat'") == 1
    project.run("preview", "--expect-no-changes")

    # 3. Remove both: gone from the table and the tick; the queue stays.
    project.configure(target="local", demo=True, queues=[QUEUE])
    project.up()
    assert triggers_on_orders(db_url) == []
    assert scalar(db_url, "select count(*) from supaqueue.schedule") == 0
    assert scalar(db_url, "select count(*) from supaqueue.table_trigger") == 0
    assert scalar(db_url, "select count(*) from pg_proc where proname like 'tg_hook_%%'") == 0
    jobs = scalar(db_url, "select count(*) from supaqueue.job")
    execute(db_url, "insert into public.e2e_orders values (4, 'paid')")
    time.sleep(4)  # more than a slot of the removed schedule
    assert scalar(db_url, "select count(*) from supaqueue.job") == jobs

    # 4. destroy: nothing of supaqueue left; the user's table and rows as they were.
    project.run("destroy", "--yes", "--skip-preview")
    assert scalar(db_url, "select to_regnamespace('supaqueue') is null") is True
    assert triggers_on_orders(db_url) == []
    assert scalar(db_url, "select count(*) from public.e2e_orders") == 5
    assert scalar(db_url, "select status from public.e2e_orders where id = 0") == "before supaqueue"


# A trigger and a schedule declared in the program with settings that are outputs (a config
# secret, another resource's value): each reaches the database as given, normalized as a plain
# value is, and the next preview is clean. Before, the program refused events and when ("must be
# a non-empty list", "must be a non-empty SQL expression") and raised a TypeError on a payload.
OUTPUTS_PROGRAM = """

import supaqueue as _sq

_later = pulumi.Output.from_input
_queue = installation.queues["e2e-hooks"]
_sq.Trigger(
    "from-outputs-trigger",
    {"name": _later("e2e-outputs"), "table": _later("public.e2e_orders"),
     "events": _later(["update", "insert"]), "when": _later(" NEW.status = 'paid' "),
     "queue": _queue},
    installation=installation,
)
_sq.Schedule(
    "from-outputs-schedule",
    {"name": _later("e2e-outputs"), "cron": _later("0 3 * * *"), "timezone": _later("Europe/Paris"),
     "payload": pulumi.Output.secret({"token": "from-a-secret"}), "queue": _queue},
    installation=installation,
)
"""


def test_trigger_and_schedule_settings_given_as_outputs(
    project: PulumiProject, local_stack: Any
) -> None:
    db_url = local_stack.env["DB_URL"]
    program = project.workdir / "__main__.py"
    program.write_text(program.read_text() + OUTPUTS_PROGRAM)
    project.configure(target="local", demo=True, queues=[QUEUE])
    project.up()
    trigger = scalar(
        db_url,
        "select jsonb_build_object('table', t.table_schema || '.' || t.table_name,"
        " 'events', t.events, 'when', t.condition)"
        " from supaqueue.table_trigger t where t.name = 'e2e-outputs'",
    )
    assert trigger == {
        "table": "public.e2e_orders", "events": ["INSERT", "UPDATE"], "when": "NEW.status = 'paid'"
    }  # fmt: skip
    schedule = scalar(
        db_url,
        "select jsonb_build_object('cron', s.cron, 'timezone', s.timezone, 'payload', s.payload)"
        " from supaqueue.schedule s where s.name = 'e2e-outputs'",
    )
    assert schedule == {
        "cron": "0 3 * * *", "timezone": "Europe/Paris", "payload": {"token": "from-a-secret"}
    }  # fmt: skip
    # the secret payload stays secret in the state
    state = project.exported_state()
    assert "from-a-secret" not in state
    ops = project.preview_ops()
    assert ops.get("from-outputs-trigger") == ops.get("from-outputs-schedule") == "same", ops
    # An output whose value is bad is refused by the provider's check, naming it as given.
    program.write_text(
        program.read_text().replace(
            '_later(["update", "insert"])', '_later(["update", "truncate"])'
        )
    )
    failed = project.run("preview", check=False)
    assert failed.returncode != 0
    assert "'truncate' is not one of INSERT, UPDATE, DELETE" in failed.stdout, failed.stdout[-3000:]
    assert "Traceback" not in failed.stdout + failed.stderr
