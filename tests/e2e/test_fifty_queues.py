"""A stack with 50 queues under the real engine: preview and a no-change `up` stay quick, and
adding one queue creates exactly that queue. Prints one JSON line per measurement."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.pulumi_project import PulumiProject
from tests.e2e.test_lifecycle import uninstall

pytestmark = [pytest.mark.engine, pytest.mark.stack]

QUEUE_COUNT = 50


def queues(count: int) -> list[dict[str, Any]]:
    # Paused: this measures Pulumi, not dispatch.
    return [
        {"name": f"bench-{n:02d}", "edge_function_name": "demo-target", "paused": True}
        for n in range(count)
    ]


@pytest.fixture
def project(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    uninstall(local_stack.env["DB_URL"])
    created = PulumiProject.create(tmp_path, "bench", local_stack.env)
    try:
        yield created
    finally:
        created.cleanup()


def timed(label: str, action: Any) -> Any:
    started = time.monotonic()
    result = action()
    seconds = round(time.monotonic() - started, 2)
    print(json.dumps({"measurement": label, "queues": QUEUE_COUNT, "seconds": seconds}))
    return result


def test_fifty_queues(project: PulumiProject, local_stack: Any) -> None:
    project.configure(target="local", queues=queues(QUEUE_COUNT))
    timed("up_create_all", project.up)
    timed("preview_no_change", lambda: project.run("preview", "--expect-no-changes"))
    summary = timed("up_no_change", lambda: project.run("up", "--yes", "--skip-preview").stdout)
    assert "unchanged" in summary and "created" not in summary and "updated" not in summary

    project.configure(target="local", queues=queues(QUEUE_COUNT + 1))
    ops = project.preview_ops()
    changed = {name: op for name, op in ops.items() if op != "same"}
    # One queue is one resource (the queue's row and workers): exactly one create.
    assert changed == {f"supaqueue-queue-bench-{QUEUE_COUNT:02d}": "create"}
    output = timed("up_add_one_queue", project.up)
    assert "+ 1 created" in output
    ids = project.outputs()["queue_ids"]
    assert len(ids) == QUEUE_COUNT + 1
