"""The whole lifecycle, real Pulumi engine, local stack (issue 5, "What it must show"):

up → preview shows no change → 500 jobs (some of them pipelines) all succeed → change workers and
rate limit, add a queue, edit the Edge Function and rotate the secret, and `up` again while jobs
flow (updates in place, the schema never replaced, every job reaches a final state) → a change
behind Pulumi's back seen by `refresh` → destroy leaves no trace.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from harness.engine import uninstall
from harness.pulumi_project import PulumiProject
from harness.toolchain import REPO
from supaqueue.migrations import load_migrations

pytestmark = [pytest.mark.engine, pytest.mark.stack]

FINAL_STATES = ("success", "failed", "cancelled")
WAIT_SECONDS = 240
HEADER_SECRET = "hdr-" + "5" * 24

QUEUES: list[dict[str, Any]] = [
    {
        "name": "e2e-echo",
        "edge_function_name": "demo-target",
        "workers": 2,
        "rate_limit_per_second": 40,
        "timeout_ms": 5000,
        "max_attempts": 5,
        "backoff_base_ms": 100,
    },
    {
        "name": "e2e-pipeline",
        "edge_function_name": "demo-target",
        "workers": 3,
        "timeout_ms": 5000,
        "max_attempts": 5,
        "backoff_base_ms": 100,
    },
]
# Its header value is set as a secret (`pulumi config set --secret --path ...`) below.
EXTRA_QUEUE = {"name": "e2e-extra", "edge_function_name": "demo-target", "workers": 1}


@pytest.fixture
def project(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    uninstall(local_stack.env["DB_URL"])
    created = PulumiProject.create(tmp_path, "e2e", local_stack.env)
    try:
        yield created
    finally:
        created.cleanup()


def scalar(db_url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def enqueue(db_url: str, queue_id: str, count: int, payload: str = "{}") -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "insert into supaqueue.job (queue, payload)"
            " select %s, %s::jsonb || jsonb_build_object('n', g) from generate_series(1, %s) g",
            (queue_id, payload, count),
        )


def enqueue_pipelines(db_url: str, queue_id: str, count: int) -> None:
    """`count` two-step pipelines: step 2 waits for step 1 and receives its result."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for n in range(count):
            first = conn.execute(
                "select supaqueue.enqueue(%s, jsonb_build_object('step', 1, 'n', %s::int))",
                (queue_id, n),
            ).fetchone()
            assert first is not None
            conn.execute(
                "select supaqueue.enqueue(%s, jsonb_build_object('step', 2, 'n', %s::int),"
                " _depends_on => array[%s::uuid])",
                (queue_id, n, first[0]),
            )


def status_counts(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select status::text, count(*) from supaqueue.job group by 1"
        ).fetchall()
    return {status: int(count) for status, count in rows}


def wait_until_final(db_url: str, expected_total: int) -> dict[str, int]:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        counts = status_counts(db_url)
        finished = sum(counts.get(state, 0) for state in FINAL_STATES)
        if finished == expected_total == sum(counts.values()):
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs not final after {WAIT_SECONDS}s: {counts}")
        time.sleep(0.5)


def api_get(env: dict[str, str], path: str) -> httpx.Response:
    return httpx.get(
        f"{env['MANAGEMENT_API_URL']}/v1/projects/{env['PROJECT_REF']}{path}",
        headers={"Authorization": f"Bearer {env['ACCESS_TOKEN']}"},
        timeout=30,
    )


def test_lifecycle(project: PulumiProject, local_stack: Any) -> None:
    env = local_stack.env
    db_url = env["DB_URL"]
    newest = max(m.version for m in load_migrations(REPO / "supaqueue" / "sql"))

    # 1. up: everything created.
    project.configure(target="local", demo=True, secretVersion="1", queues=QUEUES)
    project.up()
    outputs = project.outputs()
    assert outputs["schema_version"] == newest
    assert outputs["function_url"] == f"{env['API_URL']}/functions/v1/supaqueue"
    queue_ids = outputs["queue_ids"]
    assert set(queue_ids) == {"e2e-echo", "e2e-pipeline"}
    applied_at = scalar(db_url, "select max(applied_at) from supaqueue.migrations")

    # 2. A second preview has nothing to do.
    project.run("preview", "--expect-no-changes")

    # 3. 500 jobs, 100 of them in two-step pipelines: all succeed.
    enqueue(db_url, queue_ids["e2e-echo"], 400)
    enqueue_pipelines(db_url, queue_ids["e2e-pipeline"], 50)
    assert wait_until_final(db_url, 500) == {"success": 500}
    results = scalar(
        db_url,
        "select count(*) from supaqueue.job where payload->>'step' = '2' and status = 'success'",
    )
    assert results == 50

    # 4. Change workers and rate limit, add a queue, edit the function, rotate the secret, and
    #    `up` while jobs are flowing.
    function_before = api_get(env, "/functions/supaqueue").json()
    secret_before = scalar(
        db_url,
        "select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue_secret'",
    )
    enqueue(db_url, queue_ids["e2e-echo"], 200, '{"sleep_ms": 50}')
    stop = threading.Event()
    during = {"enqueued": 0}

    def keep_enqueuing() -> None:
        for _ in range(100):  # bounded: at most 100 extra jobs
            if stop.is_set():
                break
            enqueue(db_url, queue_ids["e2e-pipeline"], 1)
            during["enqueued"] += 1
            time.sleep(0.05)

    flowing = threading.Thread(target=keep_enqueuing)
    changed = [dict(QUEUES[0], workers=4, rate_limit_per_second=80), QUEUES[1], EXTRA_QUEUE]
    project.configure(target="local", demo=True, secretVersion="2", queues=changed)
    project.set_secret("supaqueue:queues[2].headers.X-Api-Key", HEADER_SECRET)
    project.edit_edge_function("supaqueue", "\n// edited by the e2e test\n")
    ops = project.preview_ops()
    assert ops["supaqueue-schema"] == "same"  # never replaced
    assert ops["supaqueue-queue-e2e-echo"] == "update"
    assert ops["supaqueue-queue-e2e-pipeline"] == "same"
    assert ops["supaqueue-queue-e2e-extra"] == "create"
    assert ops["supaqueue-function"] == "update"
    assert ops["supaqueue-vault-secret"] == "update"
    assert ops["supaqueue-function-secret"] == "update"
    assert ops["supaqueue-secret"] == "replace"  # the keeper changed: a new password
    assert ops["supaqueue-deno-check"] == "replace"  # its trigger is the content hash
    replaced = {name for name, op in ops.items() if op in ("replace", "delete")}
    assert replaced == {"supaqueue-secret", "supaqueue-deno-check"}, ops

    flowing.start()
    try:
        project.up()
    finally:
        stop.set()
        flowing.join()
    total = 500 + 200 + during["enqueued"]
    counts = wait_until_final(db_url, total)
    assert set(counts) <= set(FINAL_STATES), counts
    assert counts.get("success", 0) == total, counts

    outputs = project.outputs()
    assert outputs["queue_ids"]["e2e-echo"] == queue_ids["e2e-echo"]  # updated in place
    assert set(outputs["queue_ids"]) == {"e2e-echo", "e2e-pipeline", "e2e-extra"}
    assert scalar(db_url, "select max(applied_at) from supaqueue.migrations") == applied_at
    echo = queue_ids["e2e-echo"]
    assert scalar(db_url, "select count(*) from supaqueue.worker where queue = %s", echo) == 4
    assert (
        scalar(db_url, "select rate_limit_per_second from supaqueue.queue where id = %s", echo)
        == 80
    )
    secret_after = scalar(
        db_url,
        "select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue_secret'",
    )
    assert secret_after != secret_before
    listed = {s["name"]: s["value"] for s in api_get(env, "/secrets").json()}
    assert listed["SUPAQUEUE_SECRET"] == hashlib.sha256(secret_after.encode()).hexdigest()
    function_after = api_get(env, "/functions/supaqueue").json()
    assert function_after["version"] > function_before["version"]
    assert function_after["verify_jwt"] is False

    headers = scalar(db_url, "select default_headers from supaqueue.queue where name = 'e2e-extra'")
    assert headers == {"X-Api-Key": HEADER_SECRET}

    # Secrets never in plain text in state or outputs.
    state = project.exported_state() + project.run("stack", "output", "--json").stdout
    password = db_url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    for secret in (password, env["ACCESS_TOKEN"], secret_after, HEADER_SECRET):
        assert secret not in state

    # 5. A change behind Pulumi's back: refresh sees it, the next up puts it back.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select supaqueue.set_worker_count(%s, 7)", (echo,))
    project.run("refresh", "--yes", "--skip-preview")
    assert project.resource_outputs("supaqueue-queue-e2e-echo")["workers"] == 7
    ops = project.preview_ops()
    # Only the drifted queue: refresh found nothing else changed (no false drift).
    assert {name: op for name, op in ops.items() if op != "same"} == {
        "supaqueue-queue-e2e-echo": "update"
    }
    project.up()
    assert scalar(db_url, "select count(*) from supaqueue.worker where queue = %s", echo) == 4

    # 6. destroy: no trace.
    project.run("destroy", "--yes", "--skip-preview")
    assert scalar(db_url, "select to_regnamespace('supaqueue') is null") is True
    assert scalar(db_url, "select count(*) from vault.secrets where name = 'supaqueue_secret'") == 0
    assert scalar(db_url, "select count(*) from cron.job where jobname like 'supaqueue%%'") == 0
    assert api_get(env, "/functions/supaqueue").status_code == 404
    assert api_get(env, "/functions/demo-target").status_code == 404
    assert "SUPAQUEUE_SECRET" not in {s["name"] for s in api_get(env, "/secrets").json()}
    assert httpx.post(outputs["function_url"], json={}, timeout=30).status_code == 404


def test_guard_rails(project: PulumiProject, local_stack: Any) -> None:
    """Bad config fails preview with the field named; so does an edited applied migration; a
    TypeScript error fails `up` before anything changes; a queue with unfinished jobs is not
    removed unless the user allows it."""
    db_url = local_stack.env["DB_URL"]

    project.configure(
        target="local", queues=[{"name": "e2e-guarded", "edge_function_name": "x", "workers": -1}]
    )
    failed = project.run("preview", check=False)
    assert failed.returncode != 0
    assert "queue 'e2e-guarded'.workers: must be at least 1, got -1" in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr

    guarded = {"name": "e2e-guarded", "edge_function_name": "x", "paused": True}
    project.configure(target="local", queues=[guarded])
    project.up()
    queue_id = project.outputs()["queue_ids"]["e2e-guarded"]
    version = scalar(db_url, "select max(version) from supaqueue.migrations")

    # An applied migration edited: preview reports it and nothing runs.
    first = sorted((project.workdir / "sql").glob("0001_*.sql"))[0]
    original = first.read_text()
    first.write_text(original + "\n-- edited after it was applied\n")
    failed = project.run("preview", check=False)
    assert failed.returncode != 0
    assert f"migration {first.stem} was applied" in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr
    first.write_text(original)

    # A type error: `up` fails at the Deno check; the queue change behind it is not applied.
    project.configure(target="local", queues=[dict(guarded, workers=3)])
    project.edit_edge_function("supaqueue", '\nconst broken: number = "not a number";\n')
    failed = project.run("up", "--yes", "--skip-preview", check=False)
    assert failed.returncode != 0
    assert "TS2322" in failed.stdout, failed.stdout[-3000:]
    assert scalar(db_url, "select count(*) from supaqueue.worker where queue = %s", queue_id) == 1
    source = project.workdir / "edge" / "supaqueue" / "index.ts"
    source.write_text((REPO / "supaqueue" / "edge" / "index.ts").read_text())

    # Removing a queue that holds an unfinished job fails with a clear message, before any
    # change (the preflight, issue 22)...
    enqueue(db_url, queue_id, 1)
    project.configure(target="local", queues=[])
    failed = project.run("up", "--yes", "--skip-preview", check=False)
    assert failed.returncode != 0
    assert "removes queue 'e2e-guarded' with 1 pending job, paused by the stack" in failed.stdout
    assert "nothing was changed" in failed.stdout
    assert "discard_unfinished_on_delete: true" in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr
    assert scalar(db_url, "select count(*) from supaqueue.queue where id = %s", queue_id) == 1

    # ...and succeeds once the queue says its jobs may be discarded.
    project.configure(target="local", queues=[dict(guarded, discard_unfinished_on_delete=True)])
    project.up()
    project.configure(target="local", queues=[])
    project.up()
    assert scalar(db_url, "select count(*) from supaqueue.queue") == 0
    assert scalar(db_url, "select count(*) from supaqueue.job") == 0
    assert scalar(db_url, "select max(version) from supaqueue.migrations") == version
    project.run("destroy", "--yes", "--skip-preview")
    assert scalar(db_url, "select to_regnamespace('supaqueue') is null") is True
