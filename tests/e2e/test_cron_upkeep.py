"""The real engine and CLI on the local stack: every `pulumi up` reconciles supaqueue's pg_cron
jobs (preview shows the drift as a change of the schema resource; `up` repairs it with no
migration pending), and `lease_grace_ms` in the stack config reaches the queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness.pulumi_project import PulumiProject
from tests.e2e.test_lifecycle import scalar, uninstall

pytestmark = [pytest.mark.engine, pytest.mark.stack]

JOBS = "select jobname, schedule, command from cron.job where jobname like 'supaqueue-%' order by 1"


@pytest.fixture
def project(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    uninstall(local_stack.env["DB_URL"])
    created = PulumiProject.create(tmp_path, "cron", local_stack.env)
    try:
        yield created
    finally:
        created.cleanup()


def test_every_up_puts_the_cron_jobs_back(project: PulumiProject) -> None:
    db_url = project.env["DB_URL"]
    queue = {"name": "cron-q", "edge_function_name": "demo-target", "lease_grace_ms": 2500}
    project.configure(target="local", queues=[queue])
    project.up()
    assert scalar(db_url, "select lease_grace_ms from supaqueue.queue where name = 'cron-q'") == (
        2500
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        scheduled = conn.execute(JOBS).fetchall()
        assert [job[0] for job in scheduled] == [
            "supaqueue-cron-history",
            "supaqueue-retention",
            "supaqueue-tick",
        ]
    project.run("preview", "--expect-no-changes")

    # Changed behind supaqueue's back (or left per-minute by a pg_cron upgrade): no migration is
    # pending, yet preview plans an update of the schema resource, naming the drift.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select cron.schedule('supaqueue-tick', '*/5 * * * *', 'select 1')")
    changed = {name: op for name, op in project.preview_ops().items() if op != "same"}
    assert changed == {"supaqueue-schema": "update"}
    diff = project.run("preview", "--diff").stdout
    assert "cron_drift" in diff and "supaqueue-tick runs 'select 1'" in diff

    project.up()
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(JOBS).fetchall() == scheduled
    project.run("preview", "--expect-no-changes")
