"""The README's recipes, run on the local stack as written (tests/unit/test_readme_recipes.py keeps
the README's code blocks identical to these files):

- `examples/job-handler/`: the called function's contract: a job succeeds with the handler's JSON
  answer as its result, a 422 fails at once, a 503 with Retry-After is retried no sooner;
- `examples/enqueue-from-edge/`: an Edge Function enqueues by name with SQL over SUPABASE_DB_URL;
- `examples/enqueue_psycopg.py`: Python enqueues (one job, a batch) and waits for the result.

The queue is named `emails`, as in the recipes, and calls the deployed handler. Everything
installed here is removed afterwards, so other tests find the stack as they expect it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from harness.edge_engine import Engine
from harness.engine import install, uninstall
from harness.function_process import DISPATCHER, deno_binary, deno_env
from harness.toolchain import REPO
from supaqueue.edge_source import source_files
from tests.conftest import LocalStack

EXAMPLES = REPO / "examples"


@dataclass
class Recipes:
    stack: LocalStack
    engine: Engine
    handler: str
    enqueuer: str
    queue_id: str


def _mgmt(stack: LocalStack, method: str, path: str, body: object = None) -> httpx.Response:
    url = f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}{path}"
    headers = {"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"}
    return httpx.request(method, url, headers=headers, json=body, timeout=60)


@pytest.fixture(scope="module")
def recipes(local_stack: LocalStack) -> Iterator[Recipes]:
    suffix = uuid.uuid4().hex[:8]
    dispatcher = f"supaqueue-{suffix}"
    handler, enqueuer = f"job-handler-{suffix}", f"enqueue-from-edge-{suffix}"
    secret = secrets.token_urlsafe(32)
    db_url = local_stack.env["DB_URL"]
    engine: Engine | None = None
    try:
        local_stack.deploy(
            dispatcher, dict(source_files(DISPATCHER)), verify_jwt=False,
            import_map="deno.json",
        )  # fmt: skip
        for slug, folder in ((handler, "job-handler"), (enqueuer, "enqueue-from-edge")):
            files = dict(source_files(EXAMPLES / folder))
            local_stack.deploy(slug, files, import_map="deno.json")
        created = _mgmt(
            local_stack, "POST", "/secrets", [{"name": "SUPAQUEUE_SECRET", "value": secret}]
        )
        assert created.status_code == 201, created.text
        install(db_url, local_stack.env["FUNCTIONS_URL"], secret, dispatcher_slug=dispatcher)
        engine = Engine(db_url)
        row = engine.conn.execute(
            "insert into supaqueue.queue (name, edge_function_name, max_attempts, backoff_base_ms)"
            " values ('emails', %s, 2, 0) returning id::text",
            (handler,),
        ).fetchone()
        assert row is not None
        engine.conn.execute("insert into supaqueue.worker (queue) values (%s)", (row["id"],))
        yield Recipes(local_stack, engine, handler, enqueuer, str(row["id"]))
    finally:
        if engine is not None:
            engine.close()
        uninstall(db_url)
        _mgmt(local_stack, "DELETE", "/secrets", ["SUPAQUEUE_SECRET"])
        for slug in (dispatcher, handler, enqueuer):
            _mgmt(local_stack, "DELETE", f"/functions/{slug}")


def _status(r: Recipes, job_id: str) -> dict[str, Any]:
    row = r.engine.conn.execute("select * from supaqueue.get_job(%s)", (job_id,)).fetchone()
    assert row is not None
    return dict(row)


def _finished(r: Recipes, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(r, job_id)
        if status["finished_at"] is not None:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {_status(r, job_id)}")


def _enqueue(r: Recipes, payload: dict[str, Any]) -> str:
    row = r.engine.conn.execute(
        "select supaqueue.enqueue('emails', %s::jsonb)::text as id", (json.dumps(payload),)
    ).fetchone()
    assert row is not None
    return str(row["id"])


def test_the_contract_handler_succeeds_with_its_answer_as_the_result(recipes: Recipes) -> None:
    job_id = _enqueue(recipes, {"to": "ada@example.com"})
    done = _finished(recipes, job_id)
    assert (done["status"], done["attempts"]) == ("success", 1)
    assert done["result"] == {"sent_to": "ada@example.com", "job_id": job_id, "attempt": 1}


def test_the_contract_handler_fails_a_bad_payload_once(recipes: Recipes) -> None:
    job_id = _enqueue(recipes, {"to": 42})
    done = _finished(recipes, job_id)
    # 422 is in the default non_retryable_statuses: one attempt although max_attempts is 2
    assert (done["status"], done["attempts"], done["last_status_code"]) == ("failed", 1, 422)
    attempts = recipes.engine.attempts(job_id)
    assert [a["status_code"] for a in attempts] == [422]
    assert "payload.to must be a string" in attempts[0]["response_excerpt"]


def test_the_contract_handler_is_retried_after_retry_after(recipes: Recipes) -> None:
    job_id = _enqueue(recipes, {"to": "bob@example.com", "busy": True})
    done = _finished(recipes, job_id)
    assert (done["status"], done["attempts"], done["last_status_code"]) == ("failed", 2, 503)
    gap = recipes.engine.conn.execute(
        "select extract(epoch from max(started_at) - min(ended_at))::float as s,"
        " array_agg(outcome order by id) as outcomes"
        " from supaqueue.job_attempt where job = %s",
        (job_id,),
    ).fetchone()
    assert gap is not None and gap["outcomes"] == ["failure", "failure"]
    # backoff_base_ms is 0 on this queue: only the answer's Retry-After: 2 held the retry back
    assert gap["s"] >= 2.0, gap


def test_an_edge_function_enqueues_by_name_over_supabase_db_url(recipes: Recipes) -> None:
    url = f"{recipes.stack.env['FUNCTIONS_URL']}/{recipes.enqueuer}"
    auth = {"Authorization": f"Bearer {recipes.stack.env['SERVICE_ROLE_KEY']}"}
    reply = httpx.post(url, json={"to": "eve@example.com"}, headers=auth, timeout=120)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    done = _finished(recipes, job_id)
    assert done["queue"] == "emails" and done["status"] == "success"
    assert done["result"]["sent_to"] == "eve@example.com"
    source = recipes.engine.conn.execute(
        "select source from supaqueue.job where id = %s", (job_id,)
    ).fetchone()
    assert source == {"source": "sql"}


def test_python_enqueues_with_psycopg_and_waits_for_the_result(recipes: Recipes) -> None:
    env = {**os.environ, "DATABASE_URL": recipes.stack.env["DB_URL"]}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "enqueue_psycopg.py")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "success", out
    assert out["result"] == {"sent_to": "ada@example.com", "job_id": out["job"], "attempt": 1}
    batch = [_finished(recipes, job_id) for job_id in out["batch"]]
    assert [b["result"]["sent_to"] for b in batch] == ["bob@example.com", "eve@example.com"]


@pytest.mark.parametrize("folder", ["job-handler", "enqueue-from-edge"])
def test_example_functions_type_check_lint_and_format_clean(folder: str) -> None:
    where = EXAMPLES / folder
    for command in (["check", "--config", "deno.json", "index.ts"],
                    ["lint", "--config", "deno.json", "."],
                    ["fmt", "--check", "--config", "deno.json", "."]):  # fmt: skip
        proc = subprocess.run(
            [deno_binary(), *command], cwd=where, env=deno_env(), capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, f"deno {command[0]} {folder}: {proc.stdout}{proc.stderr}"
