"""Pulumi with 50 queues on the local stack: `preview` and a no-change `up`, then `up` after
adding one queue. One JSON line per measurement (median of REPEAT runs where repeatable).

Runs the real engine on a throw-away local stack and file backend; leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.pulumi_project import PulumiProject

QUEUE_COUNT = 50
REPEAT = 3


def queues(count: int) -> list[dict[str, Any]]:
    # Paused: this measures Pulumi, not dispatch.
    return [
        {"name": f"bench-{n:02d}", "edge_function_name": "demo-target", "paused": True}
        for n in range(count)
    ]


def dev(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supaqueue.local_stack.cli", "dev", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


def seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def report(measurement: str, values: list[float], **extra: object) -> None:
    line = {
        "measurement": measurement,
        "queues": QUEUE_COUNT,
        "seconds_median": round(statistics.median(values), 2),
        "runs": [round(v, 2) for v in values],
        **extra,
    }
    print(json.dumps(line), flush=True)


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="supaqueue-pulumi-bench-"))
    os.chmod(root, 0o755)  # the postgres OS user must reach the cluster inside it
    state = root / "stack"
    started = dev("up", "--dir", str(state))
    if started.returncode != 0:
        print(f"bench: local stack failed to start: {started.stderr.strip()}", file=sys.stderr)
        return 1
    project: PulumiProject | None = None
    try:
        env_lines = dev("status", "--dir", str(state), "-o", "env").stdout.splitlines()
        stack_env = dict(line.split("=", 1) for line in env_lines if "=" in line)
        stack_env = {k: v.strip('"') for k, v in stack_env.items()}
        project = PulumiProject.create(root, "bench", stack_env)
        project.configure(target="local", queues=queues(QUEUE_COUNT))
        report("up_create_all", [seconds(project.up)])
        report(
            "preview_no_change",
            [
                seconds(lambda: project.run("preview", "--expect-no-changes"))  # type: ignore[union-attr]
                for _ in range(REPEAT)
            ],
        )
        report(
            "up_no_change",
            [
                seconds(lambda: project.run("up", "--yes", "--skip-preview"))  # type: ignore[union-attr]
                for _ in range(REPEAT)
            ],
        )
        project.configure(target="local", queues=queues(QUEUE_COUNT + 1))
        changed = {name: op for name, op in project.preview_ops().items() if op != "same"}
        output = ""

        def add_one() -> None:
            nonlocal output
            output = project.up()  # type: ignore[union-attr]

        elapsed = seconds(add_one)
        # One queue is one resource: exactly one create, planned and done.
        report(
            "up_add_one_queue",
            [elapsed],
            planned_ops=changed,
            created_exactly_one=(
                changed == {f"supaqueue-queue-bench-{QUEUE_COUNT:02d}": "create"}
                and "+ 1 created" in output
            ),
        )
        return 0
    finally:
        if project is not None:
            project.cleanup()
        dev("destroy", "--dir", str(state))
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
