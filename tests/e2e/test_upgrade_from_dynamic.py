"""Upgrade without loss (issue 23 item 4), real Pulumi CLI, local stack:

a stack deployed by the last released supaqueue (every resource a
`pulumi-python:dynamic/supaqueue:*` dynamic resource, the code still in `components/`; that
commit's code from `git archive`, run as its own program with its own dynamic providers) holds
jobs; then the same project runs this checkout's program: `pulumi preview` shows no replace
and no delete (the README's upgrade section: nothing to run), `up` keeps every queue, trigger and
schedule id and every job, leaves no dynamic type and no pickled provider in the state, and the
jobs then still run to success.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from harness.engine import uninstall
from harness.pulumi_project import PulumiProject
from harness.toolchain import PULUMI, REPO, VENV
from tests.e2e.test_hooks_lifecycle import wait_for
from tests.e2e.test_lifecycle import enqueue, scalar

pytestmark = [pytest.mark.engine, pytest.mark.stack]

# The last release (session 4's main), the last version of dynamic resources. Not the `package:`
# commit after it: that one edited two released migrations (restored since), which an upgrade
# rightly refuses.
DYNAMIC_BASELINE = "7eb0dd7"
DYNAMIC_PREFIX = "pulumi-python:dynamic/supaqueue:"
HELD, LIVE = "up-held", "up-live"
HELD_JOBS, LIVE_JOBS, ROWS = 40, 20, 5
QUEUES: list[dict[str, Any]] = [
    {"name": LIVE, "edge_function_name": "demo-target", "workers": 2, "timeout_ms": 5000},
    {"name": HELD, "edge_function_name": "demo-target", "workers": 1, "paused": True},
]
TRIGGERS = [{"name": "up-orders", "table": "public.up_orders", "events": ["INSERT"], "queue": LIVE}]
SCHEDULES = [{"name": "up-nightly", "cron": "0 3 * * *", "queue": HELD}]
# Steps that would recreate or remove something; none may show.
FORBIDDEN = {"replace", "create-replacement", "delete-replaced", "delete", "discard"}
RECHECKED = re.compile(r"\$command:local:Command::[\w-]*deno-check$")


@pytest.fixture
def project(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    db_url = local_stack.env["DB_URL"]
    uninstall(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("drop table if exists public.up_orders")
        conn.execute("create table public.up_orders (id int primary key)")
    created = PulumiProject.create(tmp_path, "upgrade", local_stack.env)
    try:
        yield created
    finally:
        created.cleanup()
        # a failed test may leave the baseline's installation (its Vault secret collided with the
        # next module's install on this worker's stack)
        uninstall(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("drop table if exists public.up_orders")


def baseline_checkout(into: Path) -> Path:
    """The baseline commit's tree (`git archive`), its Pulumi.yaml pointing at this venv."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", DYNAMIC_BASELINE],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise AssertionError(
            f"NOT TESTED HERE: the upgrade test needs this repository's git history (commit "
            f"{DYNAMIC_BASELINE}, the last release): {archive.stderr.decode().strip()}"
        )
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    settings = yaml.safe_load((into / "Pulumi.yaml").read_text())
    settings["runtime"]["options"]["virtualenv"] = str(VENV)
    assert "plugins" not in settings, "the baseline already had a provider plugin"
    (into / "Pulumi.yaml").write_text(yaml.safe_dump(settings))
    return into


def run_baseline(project: PulumiProject, old: Path, *args: str) -> str:
    """`pulumi <args>` on the project's stack with the baseline's program and code only (its
    dynamic providers import `supaqueue` from the baseline too: PYTHONPATH comes first)."""
    env = {**project.env, "PYTHONPATH": str(old)}
    done = subprocess.run(
        [str(PULUMI), "--non-interactive", *args, "--stack", project.stack],
        cwd=old,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"baseline pulumi {' '.join(args)}:\n{done.stdout[-6000:]}")
    return done.stdout


def supaqueue_resources(project: PulumiProject) -> dict[str, dict[str, Any]]:
    """{name: state resource} of the stack's supaqueue custom resources (old or new type)."""
    state = json.loads(project.exported_state())
    return {
        r["urn"].split("::")[-1]: r
        for r in state["deployment"].get("resources", [])
        if r["type"].startswith((DYNAMIC_PREFIX, "supaqueue:index:")) and r.get("custom")
    }


def ids_of(db_url: str) -> dict[str, str]:
    """{name: id} of the queues, triggers and schedules in the database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select 'queue ' || name, id::text from supaqueue.queue"
            " union all select 'trigger ' || name, id::text from supaqueue.table_trigger"
            " union all select 'schedule ' || name, id::text from supaqueue.schedule"
        ).fetchall()
    return dict(sorted((str(name), str(id_)) for name, id_ in rows))


def job_counts(db_url: str) -> dict[str, int]:
    """{"<queue> <status>": jobs} for every queue."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select q.name || ' ' || j.status::text, count(*) from supaqueue.job j"
            " join supaqueue.queue q on q.id = j.queue group by 1 order by 1"
        ).fetchall()
    return {str(key): int(n) for key, n in rows}


def steps(project: PulumiProject) -> list[tuple[str, str]]:
    """(op, urn) of every step `pulumi preview` plans, sames included."""
    done = project.run("preview", "--json", "--show-sames")
    return [(step["op"], step["urn"]) for step in json.loads(done.stdout)["steps"]]


def test_upgrade_from_dynamic_resources_keeps_ids_and_jobs(
    project: PulumiProject, local_stack: Any, tmp_path: Path
) -> None:
    db_url = local_stack.env["DB_URL"]
    config: dict[str, Any] = {
        "target": "local",
        "demo": True,
        "queues": QUEUES,
        "triggers": TRIGGERS,
        "schedules": SCHEDULES,
    }
    project.configure(**config)
    old = baseline_checkout(tmp_path / "baseline")
    stack_file = f"Pulumi.{project.stack}.yaml"
    (old / stack_file).write_text((project.workdir / stack_file).read_text())

    # 1. The stack as the baseline made it: every supaqueue resource a dynamic one.
    run_baseline(project, old, "up", "--yes", "--skip-preview")
    before_state = supaqueue_resources(project)
    assert before_state and all(r["type"].startswith(DYNAMIC_PREFIX) for r in before_state.values())
    assert all("__provider" in r.get("outputs", {}) for r in before_state.values())

    # 2. Work in flight: jobs held by a paused queue, jobs that ran, jobs from the trigger.
    queue_ids = {name: scalar(db_url, "select id::text from supaqueue.queue where name = %s", name)
                 for name in (LIVE, HELD)}  # fmt: skip
    enqueue(db_url, queue_ids[HELD], HELD_JOBS)
    enqueue(db_url, queue_ids[LIVE], LIVE_JOBS)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into public.up_orders select generate_series(1, %s)", (ROWS,))
    live_query = (
        "select count(*) from supaqueue.job j join supaqueue.queue q on q.id = j.queue"
        " where q.name = %s and j.status = 'success'"
    )
    wait_for(db_url, live_query, LIVE_JOBS + ROWS, LIVE)
    ids_before, jobs_before = ids_of(db_url), job_counts(db_url)
    state_ids_before = {name: r["id"] for name, r in before_state.items()}

    # 3. The upgrade: this checkout's program on the same stack. Nothing to run first (README).
    planned = steps(project)
    print("upgrade preview:", sorted({(op, urn.split("::")[-1]) for op, urn in planned}))
    # A `deno check` command is replaced whenever its function's files change (its trigger is their
    # hash, supaqueue/installation.py): it runs a check and holds nothing, so it may be.
    forbidden = [
        (op, urn)
        for op, urn in planned
        if op in FORBIDDEN and not (op == "replace" and RECHECKED.search(urn))
    ]
    assert not forbidden, f"the upgrade's preview would recreate or remove: {forbidden}"
    created = [urn for op, urn in planned if op == "create"]
    assert all("::pulumi:providers:supaqueue::" in urn for urn in created), created
    project.up()

    after_state = supaqueue_resources(project)
    ids_after, jobs_after = ids_of(db_url), job_counts(db_url)
    print(f"queue/trigger/schedule ids before: {ids_before}")
    print(f"queue/trigger/schedule ids after:  {ids_after}")
    print(f"jobs before: {jobs_before} (total {sum(jobs_before.values())})")
    print(f"jobs after:  {jobs_after} (total {sum(jobs_after.values())})")
    assert ids_after == ids_before
    assert jobs_after == jobs_before
    assert {name: r["id"] for name, r in after_state.items()} == state_ids_before
    assert all(r["type"].startswith("supaqueue:index:") for r in after_state.values())
    exported = project.exported_state()
    assert DYNAMIC_PREFIX not in exported and "pulumi-python" not in exported
    assert "__provider" not in exported  # the pickled code is gone with the update

    # 4. Clean from now on, and the kept jobs run: resume the held queue, more work arrives.
    assert {op for op, _ in steps(project)} == {"same"}
    project.configure(**{**config, "queues": [{**q, "paused": False} for q in QUEUES]})
    project.up()
    enqueue(db_url, queue_ids[LIVE], LIVE_JOBS)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into public.up_orders select generate_series(101, 100 + %s)", (ROWS,))
    wait_for(db_url, live_query, HELD_JOBS, HELD)
    wait_for(db_url, live_query, 2 * (LIVE_JOBS + ROWS), LIVE)
    assert ids_of(db_url) == ids_before
    print(f"jobs after resuming: {job_counts(db_url)}")
