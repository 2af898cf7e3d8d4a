"""Two stacks on one project, with the real Pulumi CLI (issue 15 item 0).

`dev` installs supaqueue and runs jobs. `prod`, from the README's steps, is pointed at the same
project: its preview and up are refused naming the owner, and nothing of dev's changes. Then
`prod` declares only its queues (`installation: external`): its up and destroy leave dev's
installation, queues, jobs and cron job as they were; dev's destroy refuses while prod's queue
exists. Last, supaqueue removed behind dev's back: dev's preview says to refresh (never
"unchanged"), and refresh + up install it again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness.pulumi_project import PulumiProject
from tests.e2e.test_lifecycle import api_get, enqueue, scalar, uninstall

pytestmark = [pytest.mark.engine, pytest.mark.stack, pytest.mark.timeout(1500)]

DEV_QUEUES = [
    {"name": "dev-echo", "edge_function_name": "demo-target", "workers": 2, "timeout_ms": 5000},
    {"name": "dev-held", "edge_function_name": "demo-target", "paused": True},
]
PROD_QUEUES = [{"name": "prod-emails", "edge_function_name": "demo-target", "workers": 1}]
WAIT_SECONDS = 180


@pytest.fixture
def stacks(local_stack: Any, tmp_path: Path) -> Iterator[tuple[PulumiProject, PulumiProject]]:
    uninstall(local_stack.env["DB_URL"])
    dev = PulumiProject.create(tmp_path / "dev", "dev", local_stack.env)
    prod = PulumiProject.create(tmp_path / "prod", "prod", local_stack.env)
    try:
        yield dev, prod
    finally:
        prod.cleanup()
        dev.cleanup()


def dev_side(env: dict[str, str]) -> dict[str, Any]:
    """Everything of dev's installation another stack must not change."""
    db_url = env["DB_URL"]
    with psycopg.connect(db_url, autocommit=True) as conn:

        def rows(query: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in conn.execute(query).fetchall()]

        secret = rows(
            "select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue_secret'"
        )
        state = {
            "migrations": rows("select version, applied_at from supaqueue.migrations"),
            "owner": rows(
                "select stack, stack_id from supaqueue.installation_owner"
                if conn.execute("select to_regclass('supaqueue.installation_owner')").fetchone()
                != (None,)
                else "select 'none', 'none'"  # (an installation from before ownership records)
            ),
            "vault": [hashlib.sha256(s[0].encode()).hexdigest() for s in secret],
            "queues": rows(
                "select q.id, q.name, q.paused, count(w.id) from supaqueue.queue q"
                " left join supaqueue.worker w on w.queue = q.id"
                " where q.name like 'dev-%' group by 1, 2, 3 order by 2"
            ),
            "jobs": rows(
                "select q.name, j.status::text, count(*) from supaqueue.job j"
                " join supaqueue.queue q on q.id = j.queue where q.name like 'dev-%'"
                " group by 1, 2 order by 1, 2"
            ),
            "cron": rows("select jobname, schedule, command from cron.job order by jobname"),
        }
    function = api_get(env, "/functions/supaqueue").json()
    state["function"] = (function.get("version"), function.get("verify_jwt"))
    state["function_secret"] = {s["name"]: s["value"] for s in api_get(env, "/secrets").json()}.get(
        "SUPAQUEUE_SECRET"
    )
    return state


def wait_for(db_url: str, query: str, expected: Any, *params: Any) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while (value := scalar(db_url, query, *params)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{query!r} is {value!r}, not {expected!r}, after {WAIT_SECONDS}s")
        time.sleep(0.5)


def failed(project: PulumiProject, *args: str) -> str:
    done = project.run(*args, check=False)
    assert done.returncode != 0, done.stdout[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout


def test_two_stacks_on_one_project(
    stacks: tuple[PulumiProject, PulumiProject], local_stack: Any
) -> None:
    dev, prod = stacks
    env = local_stack.env
    db_url = env["DB_URL"]

    dev.configure(target="local", demo=True, queues=DEV_QUEUES)
    dev.up()
    dev_ids = dev.outputs()["queue_ids"]
    enqueue(db_url, dev_ids["dev-echo"], 5)
    enqueue(db_url, dev_ids["dev-held"], 3)  # paused: they stay pending
    done = "select count(*) from supaqueue.job where queue = %s and status = 'success'"
    wait_for(db_url, done, 5, dev_ids["dev-echo"])
    before = dev_side(env)
    assert before["jobs"] == [("dev-echo", "success", 5), ("dev-held", "pending", 3)]
    assert [row[0] for row in before["cron"]] == [
        "supaqueue-cron-history",
        "supaqueue-retention",
        "supaqueue-tick",
    ]

    # 1. prod pointed at dev's project (the README's steps): refused, nothing changed.
    prod.configure(target="local", queues=PROD_QUEUES)
    for command in (("preview",), ("up", "--yes", "--skip-preview")):
        out = failed(prod, *command)
        assert "owned by the Pulumi stack 'supaqueue/dev'" in out, out[-3000:]
        assert "supaqueue:installation: external" in out
    assert dev_side(env) == before
    assert before["owner"][0][0] == "supaqueue/dev"
    assert scalar(db_url, "select count(*) from supaqueue.queue where name = 'prod-emails'") == 0
    prod_state = prod.exported_state()
    for kind in ("Migrations", "VaultSecret", "FunctionSecret", "EdgeFunction", "Settings"):
        assert f"supaqueue:{kind}::" not in prod_state, kind

    # 2. prod declares only its queues in dev's installation: they run; dev's side is untouched.
    prod.configure(target="local", installation="external", queues=PROD_QUEUES)
    prod.up()
    prod_queue = prod.outputs()["queue_ids"]["prod-emails"]
    owner = "select owner_stack from supaqueue.queue where id = %s"
    assert scalar(db_url, owner, prod_queue) == "supaqueue/prod"
    enqueue(db_url, prod_queue, 3)
    wait_for(db_url, done, 3, prod_queue)
    assert dev_side(env) == before

    # 3. The owner's destroy refuses while prod's queue exists, and deletes nothing.
    out = failed(dev, "destroy", "--yes", "--skip-preview")
    assert "other stacks still declare queues in this installation" in out, out[-3000:]
    assert "'prod-emails' (stack 'supaqueue/prod')" in out
    assert dev_side(env) == before
    assert scalar(db_url, "select count(*) from supaqueue.queue where id = %s", prod_queue) == 1

    # 4. prod's destroy removes its queue only.
    prod.run("destroy", "--yes", "--skip-preview")
    assert scalar(db_url, "select count(*) from supaqueue.queue where id = %s", prod_queue) == 0
    assert dev_side(env) == before

    # 5. supaqueue removed behind dev's back: never "unchanged"; refresh + up install it again.
    uninstall(db_url)
    out = failed(dev, "preview")
    assert "not installed in the database" in out and "pulumi refresh" in out, out[-3000:]
    dev.run("refresh", "--yes", "--skip-preview")
    dev.up()
    again = dev_side(env)
    assert again["owner"] == before["owner"]  # the same stack id: kept by its own resource
    assert [row[1] for row in again["queues"]] == ["dev-echo", "dev-held"]
    dev.run("destroy", "--yes", "--skip-preview")
    assert scalar(db_url, "select to_regnamespace('supaqueue') is null") is True
