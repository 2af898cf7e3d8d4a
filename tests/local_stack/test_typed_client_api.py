"""The typed client's Data API functions (`enqueueViaApi`, `enqueueBatchViaApi`, written by
`supaqueue gen types --lang typescript`) run with the real supabase-js at the project's pinned
version (tests/support/supabase_js/package.json) against the local stack's `/rest/v1`: the README's
"Typed clients" Data API snippet as written, then the calls a signed-in user and anon make, in one
`deno run --check`. The jobs are read back from supaqueue.job; a refused call is an `EnqueueError`
carrying PostgREST's message, code and hint (tests/console/test_gen_types.py checks the module's
types, tests/local_stack/test_rest_api.py the stand-in itself)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from harness.function_process import deno_binary, deno_env
from supaqueue.cli.main import root
from tests.conftest import LocalStack
from tests.support import supabase_js
from tests.support.data_api import supaqueue_api_exposed, user_token
from tests.support.readme import block

SNIPPET = (
    "// Through the Data API with supabase-js (`supaqueue:dataApi: true` exposes supaqueue_api)"
)
EMAILS = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "template": {"enum": ["welcome", "reset"]}},
    "required": ["to"],
    "additionalProperties": False,
}
# `emails` as the README has it (no role but the service role may enqueue); `exports` lets a
# signed-in user enqueue and has no schema (any JSON, scalars too).
QUEUES: dict[str, tuple[dict[str, Any] | None, list[str]]] = {
    "emails": (EMAILS, []),
    "exports": (None, ["authenticated"]),
}


@pytest.fixture(scope="module")
def stack(local_stack: LocalStack) -> Iterator[LocalStack]:
    queues = [(name, schema, roles) for name, (schema, roles) in QUEUES.items()]
    with supaqueue_api_exposed(local_stack, queues) as exposed:
        yield exposed


# After the README's snippet (imported: it runs as written), the calls other callers make. Each
# outcome is the id(s) or the thrown error's fields; one JSON line for the test.
HARNESS = """
import { createClient } from "npm:@supabase/supabase-js@VERSION";
import {
  EnqueueError,
  enqueueBatchViaApi,
  enqueueViaApi,
  type QueueName,
} from "./_shared/supaqueue.gen.ts";

await import("./data_api.ts");

const url = Deno.env.get("SUPABASE_URL")!;
const anonKey = Deno.env.get("SUPABASE_ANON_KEY")!;
const auth = { persistSession: false, autoRefreshToken: false };
const service = createClient(url, Deno.env.get("SUPABASE_SERVICE_ROLE_KEY")!, { auth });
const user = createClient(url, anonKey, {
  auth,
  accessToken: async () => Deno.env.get("USER_TOKEN")!,
});
const anon = createClient(url, anonKey, { auth });

async function outcome(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await call() };
  } catch (e) {
    const error = e as EnqueueError;
    return {
      error: {
        enqueueError: e instanceof EnqueueError,
        name: error.name,
        message: error.message,
        code: error.code ?? null,
        hint: error.hint ?? null,
      },
    };
  }
}

const runAt = new Date(Date.now() + 3600_000);
// a job for a batch to depend on (no workers: it stays pending, so the batch waits for it)
const first = await enqueueViaApi(service, "exports", "first");
const out = {
  first,
  // Every batch option a signed-in user can give: a key (or none) per job, a dedup key (or none)
  // per job (the third holds the first's, so it gets the first's id), the jobs it waits for.
  batchOptions: await outcome(() =>
    enqueueBatchViaApi(user, "exports", ["a", "b", "c"], {
      runAt,
      priority: 2,
      dedupKeys: ["batch-once", null, "batch-once"],
      dependsOn: [first],
      keys: ["tenant-a", "tenant-b", null],
    })
  ),
  // A list that is not one entry per payload: the SQL function's refusal, naming it.
  keysMismatch: await outcome(() =>
    enqueueBatchViaApi(service, "exports", [1, 2, 3], { keys: ["x", "y"] })
  ),
  dedupKeysMismatch: await outcome(() =>
    enqueueBatchViaApi(service, "exports", [1], { dedupKeys: ["x", "y"] })
  ),
  userOne: await outcome(() => enqueueViaApi(user, "exports", "just text")),
  userBatch: await outcome(() =>
    enqueueBatchViaApi(user, "exports", [1, { a: [true, null] }], { priority: 5 })
  ),
  options: await outcome(() =>
    enqueueViaApi(service, "emails", { to: "opt@example.com" }, {
      runAt,
      priority: 3,
      dedupKey: "once",
      key: "tenant-a",
    })
  ),
  dedup: await outcome(() =>
    enqueueViaApi(service, "emails", { to: "again@example.com" }, { dedupKey: "once" })
  ),
  anonOne: await outcome(() => enqueueViaApi(anon, "emails", { to: "a@example.com" })),
  userBatchRefused: await outcome(() =>
    enqueueBatchViaApi(user, "emails", [{ to: "u@example.com" }])
  ),
  unknown: await outcome(() =>
    enqueueViaApi(service, "Emails" as QueueName, { to: "x@example.com" })
  ),
  empty: await outcome(() => enqueueBatchViaApi(service, "emails", [])),
  // JSON null is a payload of a queue without a schema, as over SQL
  nullOne: await outcome(() => enqueueViaApi(user, "exports", null)),
  nullBatch: await outcome(() => enqueueBatchViaApi(user, "exports", [null])),
  runAt: runAt.toISOString(),
};
console.log(JSON.stringify(out));
"""


JOBS = (
    "select j.id::text, q.name, j.payload, j.priority, j.run_at, j.dedup_key, j.key, j.source"
    " from supaqueue.job j join supaqueue.queue q on q.id = j.queue order by j.created_at"
)


def test_the_generated_client_enqueues_through_the_data_api(
    stack: LocalStack, tmp_path: Path
) -> None:
    functions = tmp_path / "supabase" / "functions"
    shared = functions / "_shared"
    shared.mkdir(parents=True)
    generated = CliRunner().invoke(
        root,
        ["gen", "types", "--lang", "typescript", "--db-url", stack.env["DB_URL"],
         "--out", str(shared / "supaqueue.gen.ts")],
    )  # fmt: skip
    assert generated.exit_code == 0, generated.output
    snippet = block(SNIPPET).text
    pinned = re.findall(r'"npm:@supabase/supabase-js@([^"]+)"', snippet)
    assert pinned == [supabase_js.VERSION], "the README's supabase-js is the tested pin"
    (functions / "data_api.ts").write_text(snippet)
    (functions / "main.ts").write_text(HARNESS.replace("VERSION", supabase_js.VERSION))
    env = {
        **deno_env(),
        "SUPABASE_URL": stack.env["API_URL"],
        "SUPABASE_SERVICE_ROLE_KEY": stack.env["SERVICE_ROLE_KEY"],
        "SUPABASE_ANON_KEY": stack.env["ANON_KEY"],
        "USER_TOKEN": user_token(stack),
    }
    ran = subprocess.run(
        [deno_binary(), "run", "--check", "--allow-net", "--allow-env", "--allow-read",
         "main.ts"],
        cwd=functions, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    with psycopg.connect(stack.env["DB_URL"]) as conn:
        rows = conn.execute(JOBS).fetchall()
    jobs = {r[0]: r[1:] for r in rows}
    assert all(r[-1] == "api" for r in rows), rows

    # The README's snippet: the service role, one job and a batch into `emails` (a key per job).
    options_id = out["options"]["ok"]
    readme = [[r[2], r[6]] for r in rows if r[1] == "emails" and r[0] != options_id]
    assert sorted(readme, key=json.dumps) == sorted(
        [[{"to": "ada@example.com", "template": "welcome"}, None],
         [{"to": "bo@example.com"}, "tenant-1"],
         [{"to": "cy@example.com", "template": "reset"}, "tenant-2"]],
        key=json.dumps,
    )  # fmt: skip
    # A signed-in user into a queue that allows it: any JSON, the batch in order, its options.
    assert jobs[out["userOne"]["ok"]][:3] == ("exports", "just text", 0)
    assert [jobs[i][:3] for i in out["userBatch"]["ok"]] == [
        ("exports", 1, 5), ("exports", {"a": [True, None]}, 5)]  # fmt: skip
    # Every option reaches its column; the same dedup key gives the holder's id.
    name, payload, priority, run_at, dedup_key, key, _ = jobs[options_id]
    assert (name, payload, priority, dedup_key, key) == (
        "emails", {"to": "opt@example.com"}, 3, "once", "tenant-a")  # fmt: skip
    assert run_at.isoformat(timespec="milliseconds").replace("+00:00", "Z") == out["runAt"]
    assert out["dedup"] == {"ok": options_id}
    assert out["empty"] == {"ok": []}
    # JSON null stays JSON null (not the default `{}`), alone as in a batch, as over SQL.
    assert [jobs[i][:2] for i in (out["nullOne"]["ok"], *out["nullBatch"]["ok"])] == [
        ("exports", None), ("exports", None)]  # fmt: skip

    # Refusals throw EnqueueError with PostgREST's message, code and hint; they add no job.
    hint = ("a queue names the roles that may use it in its enqueue_roles (supaqueue:queues);"
            " a name that is no queue answers the same")  # fmt: skip
    assert out["anonOne"] == {"error": {
        "enqueueError": True, "name": "EnqueueError", "code": "42501", "hint": hint,
        "message": "supaqueue_api.enqueue: role anon may not use queue 'emails'"}}  # fmt: skip
    assert out["userBatchRefused"] == {"error": {
        "enqueueError": True, "name": "EnqueueError", "code": "42501", "hint": hint,
        "message": "supaqueue_api.enqueue_batch: role authenticated may not use queue 'emails'",
    }}  # fmt: skip
    assert out["unknown"] == {"error": {
        "enqueueError": True, "name": "EnqueueError", "code": "SQ020",
        "hint": "Names are case-sensitive: did you mean 'emails'?",
        "message": "supaqueue_api.enqueue: there is no queue named 'Emails'"}}  # fmt: skip

    # A batch's options reach their columns, per job where they are lists; the held dedup key
    # gives the holder's id; each new job waits for the job it depends on (job_dependency).
    batch = out["batchOptions"]["ok"]
    assert batch[2] == batch[0] and len(set(batch)) == 2, batch
    assert [jobs[i][:6] for i in batch[:2]] == [
        ("exports", "a", 2, jobs[batch[0]][3], "batch-once", "tenant-a"),
        ("exports", "b", 2, jobs[batch[0]][3], None, "tenant-b")]  # fmt: skip
    assert (
        jobs[batch[0]][3].isoformat(timespec="milliseconds").replace("+00:00", "Z")
        == (out["runAt"])
    )
    with psycopg.connect(stack.env["DB_URL"]) as conn:
        waits = conn.execute(
            "select d.job::text, d.depends_on::text, j.pending_dependencies"
            " from supaqueue.job_dependency d join supaqueue.job j on j.id = d.job order by 1"
        ).fetchall()
    assert waits == sorted((i, out["first"], 1) for i in batch[:2]), waits
    mismatch = "Give one key per payload, null where a job has none."
    assert out["keysMismatch"] == {"error": {
        "enqueueError": True, "name": "EnqueueError", "code": "22023", "hint": mismatch,
        "message": "supaqueue.enqueue_batch: _keys has 2 keys for 3 payloads"}}  # fmt: skip
    assert out["dedupKeysMismatch"] == {"error": {
        "enqueueError": True, "name": "EnqueueError", "code": "22023", "hint": mismatch,
        "message": "supaqueue.enqueue_batch: _dedup_keys has 2 keys for 1 payloads"}}  # fmt: skip
    assert len(rows) == 3 + 1 + 2 + 1 + 2 + 1 + 2, rows
