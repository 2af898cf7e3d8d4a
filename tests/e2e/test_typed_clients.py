"""With the real Pulumi CLI and the local stack (issue 25 item 4): a queue's `payload_schema`
from the stack file (an invalid one refused at preview, naming it; a valid one stored, and no
drift on the next preview although Pulumi carries its numbers as floats), `supaqueue gen types`
/ `gen handler` from the database, a called function built from them deployed to the local
stack, and jobs through the real dispatcher: a payload the schema refuses fails on its first
attempt of 3 with 422 naming the field; one sent by the generated Python client succeeds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from harness.pulumi_project import PulumiProject
from supaqueue.cli.main import root
from tests.e2e.test_lifecycle import scalar, uninstall
from tests.e2e.test_two_stacks import failed

pytestmark = [pytest.mark.engine, pytest.mark.stack, pytest.mark.timeout(1500)]

WAIT_SECONDS = 120
SCHEMA = {
    "type": "object",
    "properties": {
        "to": {"type": "string", "maxLength": 50},
        "template": {"enum": ["welcome", "reset"]},
    },
    "required": ["to", "template"],
    "additionalProperties": False,
}
QUEUE = {"name": "typed-emails", "edge_function_name": "typed-emails", "payload_schema": SCHEMA}
FUNCTION = """
import { payloadSchemas, type Payloads } from "./supaqueue.gen.ts";
import { payloadHandler } from "./payload_handler.ts";

Deno.serve(payloadHandler<Payloads["typed-emails"]>(
  payloadSchemas["typed-emails"],
  (payload) => Response.json({ sent: payload.to, template: payload.template }),
));
"""
USE = """
from typing import Any

import psycopg

from supaqueue_gen import enqueue


def run(conn: psycopg.Connection[Any]) -> str:
    return enqueue(conn, "typed-emails", {"to": "ada@example.com", "template": "welcome"})
"""


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


def generated(*args: str) -> str:
    result = CliRunner().invoke(root, ["gen", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def finished(db_url: str, job: str) -> Any:
    return wait_for(
        f"job {job} to finish",
        lambda: (
            psycopg.connect(db_url, autocommit=True)
            .execute(
                "select status::text, attempts, last_status_code, last_response_excerpt, result"
                " from supaqueue.job where id = %s and status in ('success', 'failed')",
                (job,),
            )
            .fetchone()
        ),
    )


def test_payload_schema_from_the_stack_to_a_function_that_refuses_once(
    dev: PulumiProject, local_stack: Any, tmp_path: Path
) -> None:
    db_url = local_stack.env["DB_URL"]
    broken = {**QUEUE, "payload_schema": {"type": "object", "properties": {"to": {"type": 5}}}}
    dev.configure(target="local", demo=True, queues=[broken])
    out = failed(dev, "preview")
    expected = f"queue {QUEUE['name']!r}.payload_schema: is not a valid JSON Schema"
    assert expected in out, out[-3000:]
    assert ".properties.to.type" in out

    dev.configure(target="local", demo=True, queues=[QUEUE])
    dev.up()
    stored = scalar(
        db_url, "select payload_schema from supaqueue.queue where name = %s", "typed-emails"
    )
    assert stored == SCHEMA  # 50, not 50.0
    assert dev.preview_ops()["supaqueue-queue-typed-emails"] == "same"

    ts = generated("types", "--lang", "typescript", "--db-url", db_url)
    assert 'export type QueueName = "typed-emails";' in ts
    local_stack.deploy(
        "typed-emails",
        {
            "index.ts": FUNCTION,
            "supaqueue.gen.ts": ts,
            "payload_handler.ts": generated("handler"),
        },
        verify_jwt=False,
    )

    # An untyped caller (plain SQL) sends a payload the schema refuses: one attempt, 422.
    bad = scalar(
        db_url,
        "select supaqueue.enqueue('typed-emails', %s)::text",
        Jsonb({"to": "ada@example.com", "template": "goodbye"}),
    )
    status, attempts, code, excerpt, _ = finished(db_url, bad)
    assert (status, attempts, code) == ("failed", 1, 422), excerpt
    assert (
        scalar(db_url, "select max_attempts from supaqueue.queue where name = 'typed-emails'") == 3
    )
    assert "payload.template must be equal to one of the allowed values" in excerpt

    # The generated Python client (type-checked by mypy first) enqueues a good one.
    (tmp_path / "supaqueue_gen.py").write_text(
        generated("types", "--lang", "python", "--db-url", db_url)
    )
    (tmp_path / "use.py").write_text(USE)
    typed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "use.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert typed.returncode == 0, typed.stdout
    sys.path.insert(0, str(tmp_path))
    try:
        import use  # type: ignore[import-not-found]

        with psycopg.connect(db_url, autocommit=True) as conn:
            good = use.run(conn)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("use", None)
        sys.modules.pop("supaqueue_gen", None)
    status, attempts, code, _, result = finished(db_url, good)
    assert (status, attempts, code) == ("success", 1, 200)
    assert result == {"sent": "ada@example.com", "template": "welcome"}
