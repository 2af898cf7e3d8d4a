"""With the real Pulumi CLI and the local stack (issue 22 items 4 and 8): a queue's
`dead_letter_queue` (a job failing for good through the real dispatcher lands there; loops
refused at preview; made after and removed before the queue it serves), and the default
retention (unset: 7 days; `retention_seconds: null`: kept for ever, told apart although Pulumi
drops null inputs; an upgrade applies the default only where the declaration never set one).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.pulumi_project import PulumiProject
from supaqueue.providers.queue.spec import DEFAULT_RETENTION_SECONDS
from tests.e2e.test_lifecycle import scalar, uninstall
from tests.e2e.test_two_stacks import failed

pytestmark = [pytest.mark.engine, pytest.mark.stack, pytest.mark.timeout(1500)]

WAIT_SECONDS = 120
QUEUES: list[dict[str, Any]] = [
    # declared before the queue it serves: the program orders them itself
    {"name": "orders", "edge_function_name": "demo-target", "dead_letter_queue": "alerts"},
    {"name": "alerts", "edge_function_name": "demo-target"},
    {"name": "keep", "edge_function_name": "demo-target", "retention_seconds": None},
    {"name": "short", "edge_function_name": "demo-target", "retention_seconds": 3600},
]
RETENTION = "select retention_seconds from supaqueue.queue where name = %s"


@pytest.fixture
def dev(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    uninstall(local_stack.env["DB_URL"])
    project = PulumiProject.create(tmp_path / "dev", "dev", local_stack.env)
    try:
        yield project
    finally:
        project.cleanup()


def wait_for(what: str, check: Any) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {WAIT_SECONDS} s waiting for {what}")


def test_dead_letter_queue_and_default_retention(dev: PulumiProject, local_stack: Any) -> None:
    db_url = local_stack.env["DB_URL"]
    loop = [
        {**QUEUES[0]},
        {**QUEUES[1], "dead_letter_queue": "orders"},
    ]
    dev.configure(target="local", demo=True, queues=loop)
    out = failed(dev, "preview")
    assert "dead letters would loop (orders -> alerts -> orders)" in out, out[-3000:]
    assert scalar(db_url, "select to_regclass('supaqueue.queue')::text") is None  # nothing made

    dev.configure(target="local", demo=True, queues=QUEUES)
    dev.up()
    assert (
        scalar(
            db_url,
            "select d.name from supaqueue.queue q"
            " join supaqueue.queue d on d.id = q.dead_letter_queue"
            " where q.name = 'orders'",
        )
        == "alerts"
    )
    assert scalar(db_url, RETENTION, "orders") == DEFAULT_RETENTION_SECONDS
    assert scalar(db_url, RETENTION, "keep") is None  # explicit null: kept for ever
    assert scalar(db_url, RETENTION, "short") == 3600
    assert dev.preview_ops()["supaqueue-queue-keep"] == "same"

    # A job failing for good (404 is not retried) through the real dispatcher and target.
    orders = scalar(db_url, "select id::text from supaqueue.queue where name = 'orders'")
    job = scalar(
        db_url,
        'select supaqueue.enqueue(%s::uuid, \'{"status": 404, "order": 7}\')::text',
        orders,
    )
    letter = wait_for(
        "the dead letter to be delivered",
        lambda: scalar(
            db_url,
            "select j.payload from supaqueue.job j join supaqueue.queue q on q.id = j.queue"
            " where q.name = 'alerts' and j.status = 'success'",
        ),
    )
    assert letter["job_id"] == job and letter["queue"] == "orders"
    assert letter["payload"] == {"status": 404, "order": 7}
    assert letter["status_code"] == 404 and letter["error"].startswith("HTTP 404")
    assert '"order":7' in letter["response_excerpt"].replace(" ", "")  # the target's echo
    assert (
        scalar(
            db_url,
            "select count(*) from supaqueue.job j join supaqueue.queue q"
            " on q.id = j.queue where q.name = 'alerts'",
        )
        == 1
    )

    # An upgrade: queues made before the default have no retention in the database nor in the
    # state. The next `up` gives the default to the one whose declaration never set one.
    with_nulls = (
        "update supaqueue.queue set retention_seconds = null where name in ('orders', 'keep')"
    )
    scalar(db_url, with_nulls + " returning 1")
    dev.run("refresh", "--yes", "--skip-preview")
    ops = dev.preview_ops()
    assert ops["supaqueue-queue-orders"] == "update" and ops["supaqueue-queue-keep"] == "same"
    dev.up()
    assert scalar(db_url, RETENTION, "orders") == DEFAULT_RETENTION_SECONDS
    assert scalar(db_url, RETENTION, "keep") is None

    # Removing both: the queue that names the other goes first (the foreign key would refuse
    # the other order).
    dev.configure(target="local", demo=True, queues=QUEUES[2:])
    dev.up()
    assert (
        scalar(db_url, "select count(*) from supaqueue.queue where name in ('orders', 'alerts')")
        == 0
    )
