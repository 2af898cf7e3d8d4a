"""`pulumi import` of a queue, a trigger and a schedule made in SQL (issue 23 item 3), real Pulumi
CLI, local stack, this checkout's Python language host (its GenerateProgram prints the code):

the README's import file brings them into the stack by name (the database from the stack
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

from harness.engine import uninstall
from harness.pulumi_project import PulumiProject
from harness.toolchain import REPO
from tests.e2e.test_lifecycle import scalar
from tests.support.plugins import link_cli_companions, write_launcher

pytestmark = [pytest.mark.engine, pytest.mark.stack]

# The README's recipes: what SQL made, and the import file (the dev stack's installation).
MADE_IN_SQL = REPO / "examples" / "import" / "legacy.sql"
IMPORT_FILE = REPO / "examples" / "import" / "legacy.json"
STACK = "dev"  # the stack the import file names (in this test's own backend)
COMPONENT = f"urn:pulumi:{STACK}::supaqueue::supaqueue:index:Supaqueue::supaqueue"
FOREIGN = (
    "insert into supaqueue.queue (name, edge_function_name, owner_stack, owner_stack_id)"
    " values ('foreign', 'demo-target', 'elsewhere/prod', 'f00dfeedf00dfeedf00dfeedf00dfeed')"
)
IMPORTED = {  # resource name: (table, name in the database)
    "supaqueue-queue-legacy": ("queue", "legacy"),
    "supaqueue-trigger-legacy-orders": ("table_trigger", "legacy-orders"),
    "supaqueue-schedule-legacy-nightly": ("schedule", "legacy-nightly"),
}


@pytest.fixture
def project(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    db_url = local_stack.env["DB_URL"]
    uninstall(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("drop table if exists public.legacy_orders")
        conn.execute("create table public.legacy_orders (id int primary key, status text)")
    created = PulumiProject.create(tmp_path, STACK, local_stack.env)
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
            conn.execute("drop table if exists public.legacy_orders")


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
        conn.execute(MADE_IN_SQL.read_text())
        conn.execute(FOREIGN)

    # A queue another stack owns: refused by name, nothing imported.
    refused = project.run(
        "import", "supaqueue:index:Queue", "foreign", "foreign",
        "--parent", f"installation={COMPONENT}", "--yes", check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "owned by the Pulumi stack 'elsewhere/prod'" in said and "not imported" in said, said
    assert state_of(project, "foreign") is None
    with psycopg.connect(db_url, autocommit=True) as conn:  # its stack's to remove; gone here
        conn.execute("select supaqueue.drop_queue(id, true) from supaqueue.queue"
                     " where name = 'foreign'")  # fmt: skip

    # The README's import: the three by name, in one import (so the trigger's and the
    # schedule's queue is printed as a reference to the queue).
    done = project.run("import", "--file", str(IMPORT_FILE), "--yes")
    code = printed_code(done.stdout)
    print("pulumi import printed:\n" + code)
    assert "db_url" not in code and "postgres" not in code and "owner" not in code
    assert 'supaqueue.Queue(\n    "supaqueue-queue-legacy",' in code
    assert "queue_id=supaqueue_queue_legacy.id" in code
    for resource, (table, name) in IMPORTED.items():
        table_id = scalar(db_url, f"select id::text from supaqueue.{table} where name = %s", name)
        state = state_of(project, resource)
        assert state is not None and state["id"] == table_id, (resource, state)
        assert "db_url" not in state.get("outputs", {}), "a secret must not be in plain state"
    owner = scalar(db_url, "select owner_stack from supaqueue.queue where name = 'legacy'")
    assert owner == f"supaqueue/{STACK}"

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
    for resource, (table, name) in IMPORTED.items():
        count = scalar(db_url, f"select count(*) from supaqueue.{table} where name = %s", name)
        assert count == 0, resource
        assert state_of(project, resource) is None
