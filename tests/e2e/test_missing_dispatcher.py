"""Issue 21 item 6 with the real Pulumi engine: the `supaqueue` function deleted behind the stack's
back (what `supabase functions deploy --prune` from a user's own folder does) burns no attempts;
dispatch holds and says so, `pulumi preview` shows the function missing, `up` deploys it again
and the jobs then run, each on its first attempt."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from harness.pulumi_project import PulumiProject
from tests.console.conftest import supaqueue
from tests.e2e.test_lifecycle import enqueue, scalar, uninstall, wait_until_final

pytestmark = [pytest.mark.engine, pytest.mark.stack]

QUEUE = {
    "name": "prune-echo",
    "edge_function_name": "demo-target",
    "workers": 2,
    "timeout_ms": 2000,
    "lease_grace_ms": 1000,  # a dispatch nobody claims would expire (and count) within 3 s
    "max_attempts": 1,
}


@pytest.fixture
def project(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    uninstall(local_stack.env["DB_URL"])
    created = PulumiProject.create(tmp_path, "prune", local_stack.env)
    try:
        yield created
    finally:
        created.cleanup()


def _hold(db_url: str) -> dict[str, Any] | None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("select since, reason, returned from supaqueue.dispatch_hold").fetchone()
    return None if row is None else {"since": row[0], "reason": row[1], "returned": row[2]}


def test_pruned_dispatcher_holds_dispatch_and_up_brings_it_back(
    project: PulumiProject, local_stack: Any
) -> None:
    env = local_stack.env
    db_url = env["DB_URL"]
    project.configure(target="local", demo=True, secretVersion="1", queues=[QUEUE])
    project.up()
    queue_id = project.outputs()["queue_ids"]["prune-echo"]

    gone = httpx.delete(
        f"{env['MANAGEMENT_API_URL']}/v1/projects/{env['PROJECT_REF']}/functions/supaqueue",
        headers={"Authorization": f"Bearer {env['ACCESS_TOKEN']}"},
        timeout=30,
    )
    assert gone.status_code == 200, gone.text
    enqueue(db_url, queue_id, 6)
    deadline = time.monotonic() + 120
    hold = _hold(db_url)
    while (hold is None or hold["returned"] < 6) and time.monotonic() < deadline:
        time.sleep(0.5)
        hold = _hold(db_url)
    assert hold is not None and hold["returned"] >= 6, f"dispatch never held: {hold}"
    assert scalar(db_url, "select count(*) from supaqueue.job_attempt") == 0
    assert scalar(db_url, "select count(*) from supaqueue.job where status = 'failed'") == 0

    shown = supaqueue("status", "--db-url", db_url)
    assert shown.returncode == 0 and "held: no dispatcher" in shown.stdout, shown

    assert project.preview_ops()["supaqueue-function"] == "update"
    diff = project.run("preview", "--diff").stdout
    assert "missing from the project" in diff, diff[-3000:]
    project.up()
    assert wait_until_final(db_url, 6) == {"success": 6}
    assert scalar(db_url, "select max(attempt) from supaqueue.job_attempt") == 1
    deadline = time.monotonic() + 30
    while _hold(db_url) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _hold(db_url) is None
    project.run("preview", "--expect-no-changes")
