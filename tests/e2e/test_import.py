"""`pulumi import` of a queue, a trigger and a schedule made in SQL (issue 23 item 3), real Pulumi
CLI, local stack, this checkout's Python language host (its GenerateProgram prints the code):

the README's import command brings them into the stack by name (the database from the stack
config), a queue another stack owns is refused, the imported queue becomes this stack's; the code
`pulumi import` prints, added to the program, previews clean; removed from the program again
(after the `protect` the printed code sets is lifted), `up` deletes them from the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.pulumi_project import PulumiProject
from tests.e2e.test_lifecycle import scalar, uninstall
from tests.support.plugins import link_cli_companions, write_launcher

pytestmark = [pytest.mark.engine, pytest.mark.stack]

COMPONENT = "supaqueue"  # the program's Supaqueue component (`installation` in __main__.py)
SQL_SETUP = """
insert into supaqueue.queue (name, edge_function_name, max_attempts, rate_limit_per_second)
values ('imp-legacy', 'demo-target', 5, 3.5);
select supaqueue.set_worker_count((select id from supaqueue.queue where name = 'imp-legacy'), 2);
select supaqueue.set_table_trigger(null, 'imp-orders',
  (select id from supaqueue.queue where name = 'imp-legacy'), 'public', 'imp_orders',
  array['INSERT', 'UPDATE'], 'NEW.status = ''paid''');
insert into supaqueue.schedule (name, queue, cron, timezone, payload, next_run_at)
select 'imp-nightly', id, '30 2 * * *', 'Europe/Paris', '{"report": "daily"}',
       (supaqueue.cron_next_runs('30 2 * * *', 'Europe/Paris', 1))[1]
from supaqueue.queue where name = 'imp-legacy';
insert into supaqueue.queue (name, edge_function_name, owner_stack, owner_stack_id)
values ('imp-foreign', 'demo-target', 'elsewhere/prod', 'f00dfeedf00dfeedf00dfeedf00dfeed');
"""
IMPORTS = [
    ("supaqueue:index:Queue", "supaqueue-queue-imp-legacy", "imp-legacy"),
    ("supaqueue:index:Trigger", "supaqueue-trigger-imp-orders", "imp-orders"),
    ("supaqueue:index:Schedule", "supaqueue-schedule-imp-nightly", "imp-nightly"),
]


@pytest.fixture
def project(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    db_url = local_stack.env["DB_URL"]
    uninstall(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("drop table if exists public.imp_orders")
        conn.execute("create table public.imp_orders (id int primary key, status text)")
    created = PulumiProject.create(tmp_path, "imports", local_stack.env)
    # This checkout's language host (GenerateProgram), first on PATH.
    hosts = tmp_path / "hosts"
    write_launcher(hosts, "pulumi-language-python", "offline_plugins.language_host")
    link_cli_companions(hosts)
    created.env["PATH"] = f"{hosts}:{created.env['PATH']}"
    try:
        yield created
    finally:
        created.run("state", "unprotect", "--all", "--yes", check=False)
        created.cleanup()
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("drop table if exists public.imp_orders")


def printed_code(stdout: str) -> str:
    """The Python `pulumi import` printed after its notes."""
    start = stdout.find("import pulumi\n")
    assert start >= 0, f"pulumi import printed no code:\n{stdout[-4000:]}"
    return stdout[start:]


def state_of(project: PulumiProject, name: str) -> dict[str, Any] | None:
    for resource in json.loads(project.exported_state())["deployment"].get("resources", []):
        if resource["urn"].split("::")[-1] == name:
            return dict(resource)
    return None


def test_import_by_name_prints_code_that_previews_clean(
    project: PulumiProject, local_stack: Any
) -> None:
    db_url = local_stack.env["DB_URL"]
    project.configure(target="local", demo=True)
    project.up()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SQL_SETUP)
    component = f"urn:pulumi:{project.stack}::supaqueue::supaqueue:index:Supaqueue::{COMPONENT}"

    # A queue another stack owns: refused by name, nothing imported.
    refused = project.run(
        "import", "supaqueue:index:Queue", "foreign", "imp-foreign",
        "--parent", f"installation={component}", "--yes", check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "owned by the Pulumi stack 'elsewhere/prod'" in said and "not imported" in said, said
    assert state_of(project, "foreign") is None
    with psycopg.connect(db_url, autocommit=True) as conn:  # its stack's to remove; gone here
        conn.execute("select supaqueue.drop_queue(id, true) from supaqueue.queue"
                     " where name = 'imp-foreign'")  # fmt: skip

    # The three, in one import (the trigger's and schedule's queue becomes a reference).
    (project.workdir / "import.json").write_text(
        json.dumps(
            {
                "resources": [
                    {"type": kind, "name": name, "id": id_, "parent": "installation"}
                    for kind, name, id_ in IMPORTS
                ],
                "nameTable": {"installation": component},
            }
        )
    )
    done = project.run("import", "--file", "import.json", "--yes")
    code = printed_code(done.stdout)
    print("pulumi import printed:\n" + code)
    assert "db_url" not in code and "postgres" not in code and "owner" not in code
    assert 'supaqueue.Queue(\n    "supaqueue-queue-imp-legacy",' in code
    assert "queue_id=supaqueue_queue_imp_legacy.id" in code

    ids = {
        name: scalar(db_url, f"select id::text from supaqueue.{table} where name = %s", name)
        for table, name in (
            ("queue", "imp-legacy"),
            ("table_trigger", "imp-orders"),
            ("schedule", "imp-nightly"),
        )
    }
    for (_, resource, _name), table_id in zip(IMPORTS, ids.values(), strict=True):
        state = state_of(project, resource)
        assert state is not None and state["id"] == table_id, (resource, state)
        assert "db_url" not in state.get("outputs", {}), "a secret must not be in plain state"
    owner = scalar(db_url, "select owner_stack from supaqueue.queue where name = 'imp-legacy'")
    assert owner == f"supaqueue/{project.stack}"

    # The printed code in the program: preview clean.
    program = project.workdir / "__main__.py"
    plain_program = program.read_text()
    program.write_text(plain_program + "\n" + code)
    project.run("preview", "--expect-no-changes")
    assert set(project.preview_ops().values()) == {"same"}

    # Lift the printed `protect`, then remove them from the program: up deletes them (the
    # imported state names no database: the stack config's serves).
    program.write_text(plain_program + "\n" + re.sub(r"protect=True", "protect=False", code))
    project.up()
    program.write_text(plain_program)
    project.up()
    for table, name in (
        ("queue", "imp-legacy"),
        ("table_trigger", "imp-orders"),
        ("schedule", "imp-nightly"),
    ):
        assert scalar(db_url, f"select count(*) from supaqueue.{table} where name = %s", name) == 0
    assert all(state_of(project, resource) is None for _, resource, _ in IMPORTS)
