"""`supaqueue gen types` (issue 25 item 4): typed enqueue clients from the queues of a real
database. The TypeScript is checked by real Deno (`deno check`, with the real postgres.js types)
and run against the database; the Python by real mypy and run with psycopg; a wrong payload must
NOT type-check in either. The payload handler answers a bad payload 422 naming the field over
real HTTP (tests/console/payload_handler_test.ts)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from harness.engine import Engine, install
from harness.function_process import deno_binary, deno_env, free_port
from supaqueue.cli.main import root
from supaqueue.console.typegen import BATCH_OPTIONS, OPTIONS, QueueTypes, generate
from supaqueue.providers.queue.spec import DEFAULT_NON_RETRYABLE, PAYLOAD_SCHEMA_DIALECTS
from tests.support import supabase_js

HERE = Path(__file__).parent
REPO = HERE.parent.parent
EMAIL_SCHEMA = {
    "type": "object",
    "properties": {
        "to": {"type": "string", "format": "email"},
        "cc": {"type": "array", "items": {"type": "string"}},
        "kind": {"enum": ["welcome", "reset"]},
        "address": {
            "type": "object",
            "properties": {"zip": {"type": "integer"}, "from": {"type": ["string", "null"]}},
            "required": ["zip"],
            "additionalProperties": False,
        },
    },
    "required": ["to", "kind"],
    "additionalProperties": False,
}


@pytest.fixture
def db(pg_dsn: str) -> str:
    """Three queues: one with a schema, one without, one whose schema the types cannot say."""
    install(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name, schema in [
            ("send-email", EMAIL_SCHEMA),
            ("reports", None),
            ("odd", {"allOf": [{"type": "object"}]}),
        ]:
            conn.execute(
                "insert into supaqueue.queue (name, edge_function_name, payload_schema)"
                " values (%s, 'fn', %s)",
                (name, None if schema is None else Jsonb(schema)),
            )
    return pg_dsn


def gen(db_url: str, lang: str, out: Path) -> str:
    result = CliRunner().invoke(
        root, ["gen", "types", "--lang", lang, "--db-url", db_url, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out.read_text()


def deno(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [deno_binary(), *args],
        cwd=cwd,
        env=deno_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


TS_GOOD = """
import postgres from "npm:postgres@3.4.9";
import { createClient } from "npm:@supabase/supabase-js@SUPABASE_JS";
import {
  enqueue,
  enqueueBatch,
  enqueueBatchViaApi,
  enqueueViaApi,
  type Payloads,
} from "./supaqueue.gen.ts";

// Type-checked here against the real supabase-js, never called: the Data API functions run
// against the local stack's /rest/v1 in tests/local_stack/test_typed_client_api.py.
export async function viaApi(): Promise<string[]> {
  const supabase = createClient("http://127.0.0.1:54321", "service-role-key");
  const one = await enqueueViaApi(supabase, "send-email", { to: "a", kind: "reset" });
  return [one, ...await enqueueBatchViaApi(supabase, "reports", [1, "two"], {
    runAt: "2030-01-01T00:00:00Z",
    priority: 1,
    dedupKeys: ["d", null],
    dependsOn: [one],
    keys: [null, "k"],
  })];
}

const sql = postgres(Deno.args[0], { max: 1, onnotice: () => {} });
const id = await enqueue(sql, "send-email", {
  to: "a@example.com",
  kind: "welcome",
  address: { zip: 12345, from: null },
});
const ids = await enqueueBatch(sql, "reports", [{ any: ["json", 1] }, 2, "three"]);
const odd: Payloads["odd"] = { anything: true };
const later = await enqueue(sql, "odd", odd, { runAt: new Date(Date.now() + 3600_000) });
// Every batch option over SQL: per job a dedup key (the third holds the first's) and a key.
const options = await enqueueBatch(sql, "reports", ["a", "b", "c"], {
  priority: 4,
  dedupKeys: ["ts-once", null, "ts-once"],
  dependsOn: [later],
  keys: ["tenant-a", null, "tenant-c"],
});
console.log(JSON.stringify({ id, ids, later, options }));
await sql.end();
""".replace("SUPABASE_JS", supabase_js.VERSION)  # the project's pin, as the code that runs it

# Each line is a wrong payload; `@ts-expect-error` fails the check if the line compiles.
TS_WRONG = """
import postgres from "npm:postgres@3.4.9";
import { createClient } from "npm:@supabase/supabase-js@SUPABASE_JS";
import { enqueue, enqueueBatch, enqueueBatchViaApi, enqueueViaApi } from "./supaqueue.gen.ts";

const sql = postgres("postgres://unused");
const api = createClient("http://x", "k");
// @ts-expect-error: `to` is required
await enqueue(sql, "send-email", { kind: "welcome" });
// @ts-expect-error: `to` must be a string
await enqueue(sql, "send-email", { to: 5, kind: "welcome" });
// @ts-expect-error: `kind` is one of the enum's values
await enqueue(sql, "send-email", { to: "a", kind: "goodbye" });
// @ts-expect-error: `zip` is an integer (number)
await enqueue(sql, "send-email", { to: "a", kind: "reset", address: { zip: "1" } });
// @ts-expect-error: additionalProperties false
await enqueue(sql, "send-email", { to: "a", kind: "reset", bcc: "b" });
// @ts-expect-error: no such queue
await enqueue(sql, "send-emails", { to: "a", kind: "reset" });
// @ts-expect-error: through the Data API too
await enqueueViaApi(api, "send-email", { to: 1, kind: "reset" });
// @ts-expect-error: a batch's keys are strings (or null), one per payload
await enqueueBatchViaApi(api, "reports", [1], { keys: [1] });
// @ts-expect-error: dependsOn is a list of job ids
await enqueueBatchViaApi(api, "reports", [1], { dependsOn: "a-job-id" });
// @ts-expect-error: a batch takes dedupKeys (one per payload), not one dedupKey
await enqueueBatch(sql, "reports", [1], { dedupKey: "once" });
// @ts-expect-error: and one job takes key, not keys
await enqueue(sql, "reports", 1, { keys: ["k"] });
""".replace("SUPABASE_JS", supabase_js.VERSION)


def test_generated_typescript_checks_runs_and_refuses_wrong_payloads(
    db: str, tmp_path: Path
) -> None:
    text = gen(db, "typescript", tmp_path / "supaqueue.gen.ts")
    assert 'export type QueueName = "odd" | "reports" | "send-email";' in text
    assert "odd: payload: allOf is not expressed" in text  # the widening, said in a comment
    (tmp_path / "good.ts").write_text(TS_GOOD)
    (tmp_path / "wrong.ts").write_text(TS_WRONG)
    checked = deno("check", "good.ts", "wrong.ts", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    # And without the directives, the wrong payload is a compile error naming the field.
    (tmp_path / "wrong_plain.ts").write_text(
        TS_WRONG.replace("// @ts-expect-error", "// was expected to fail:")
    )
    failed = deno("check", "wrong_plain.ts", cwd=tmp_path)
    assert failed.returncode != 0
    assert "Found 11 errors" in failed.stderr, failed.stderr  # one per wrong line
    assert "Property '\"to\"' is missing" in failed.stderr, failed.stderr
    assert "Type '\"goodbye\"' is not assignable" in failed.stderr, failed.stderr

    ran = deno("run", "--allow-net", "--allow-env", "--allow-read", "good.ts", db, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    made = json.loads(ran.stdout.strip().splitlines()[-1])
    with psycopg.connect(db) as conn:
        rows: dict[str, object] = dict(
            conn.execute(
                "select j.id::text, j.payload from supaqueue.job j"
                " join supaqueue.queue q on q.id = j.queue"
            ).fetchall()
        )
        delayed = conn.execute(
            "select run_at > now() + interval '50 minutes' from supaqueue.job where id = %s",
            (made["later"],),
        ).fetchone()
    assert rows[made["id"]] == {"to": "a@example.com", "kind": "welcome",
                                "address": {"zip": 12345, "from": None}}  # fmt: skip
    assert [rows[i] for i in made["ids"]] == [{"any": ["json", 1]}, 2, "three"]
    assert delayed == (True,)
    assert_batch_options(db, made["options"], made["later"], priority=4, dedup_key="ts-once")


def assert_batch_options(
    db: str, ids: list[str], depends_on: str, *, priority: int, dedup_key: str
) -> None:
    """A batch of payloads "a", "b", "c" given every option over SQL: the third holds the first's
    dedup key (so it is the first job), the others have their key, and each waits for the job
    `depends_on` (pending: no workers)."""
    assert ids[2] == ids[0] and len(set(ids)) == 2, ids
    with psycopg.connect(db) as conn:
        jobs = [
            conn.execute(
                "select payload, priority, dedup_key, key, pending_dependencies,"
                " array(select d.depends_on::text from supaqueue.job_dependency d"
                "       where d.job = j.id)"
                " from supaqueue.job j where id = %s",
                (i,),
            ).fetchone()
            for i in ids[:2]
        ]
    assert jobs == [
        ("a", priority, dedup_key, "tenant-a", 1, [depends_on]),
        ("b", priority, None, None, 1, [depends_on]),
    ]


PY_GOOD = """
from typing import Any

import psycopg

from supaqueue_gen import ReportsPayload, enqueue, enqueue_batch


def run(conn: psycopg.Connection[Any]) -> list[str]:
    one = enqueue(conn, "send-email", {"to": "a@example.com", "kind": "reset",
                                       "address": {"zip": 1, "from": "x"}})
    report: ReportsPayload = {"rows": [1, 2.5, None]}
    many = enqueue_batch(conn, "reports", [report, "text", 3])
    return [one, *many]


def options(conn: psycopg.Connection[Any], first: str) -> list[str]:
    return enqueue_batch(conn, "reports", ["a", "b", "c"], priority=6,
                         dedup_keys=("py-once", None, "py-once"), depends_on=[first],
                         keys=["tenant-a", None, "tenant-c"])
"""

PY_WRONG = """
from typing import Any

import psycopg

from supaqueue_gen import enqueue, enqueue_batch


def run(conn: psycopg.Connection[Any]) -> None:
    enqueue(conn, "send-email", {"kind": "reset"})
    enqueue(conn, "send-email", {"to": 5, "kind": "reset"})
    enqueue(conn, "send-email", {"to": "a", "kind": "goodbye"})
    enqueue(conn, "send-emails", {"to": "a", "kind": "reset"})
    enqueue_batch(conn, "reports", [1], keys=[1])
    enqueue_batch(conn, "reports", [1], dedup_key="once")
    enqueue_batch(conn, "reports", [1], depends_on=[1])
"""


def mypy(cwd: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_generated_python_passes_mypy_runs_and_refuses_wrong_payloads(
    db: str, tmp_path: Path
) -> None:
    text = gen(db, "python", tmp_path / "supaqueue_gen.py")
    assert 'QueueName: TypeAlias = Literal["odd"] | Literal["reports"] | Literal["send-email"]' in (
        text
    )
    (tmp_path / "good.py").write_text(PY_GOOD)
    (tmp_path / "wrong.py").write_text(PY_WRONG)
    checked = mypy(tmp_path, "supaqueue_gen.py", "good.py")
    assert checked.returncode == 0, checked.stdout
    failed = mypy(tmp_path, "wrong.py")
    assert failed.returncode != 0
    errors = [line for line in failed.stdout.splitlines() if ": error:" in line]
    # one error per wrong call (lines 10-16 of PY_WRONG)
    assert sorted({int(line.split(":")[1]) for line in errors}) == list(range(10, 17)), (
        failed.stdout
    )

    sys.path.insert(0, str(tmp_path))
    try:
        import good  # type: ignore[import-not-found]

        with psycopg.connect(db) as conn:
            ids = good.run(conn)
            payloads = [
                conn.execute("select payload from supaqueue.job where id = %s", (i,)).fetchone()
                for i in ids
            ]
            batch = good.options(conn, ids[0])
            conn.commit()
            with pytest.raises(psycopg.Error) as unknown:
                good.enqueue(conn, "send-emails", {})
            conn.rollback()
            # a list that is not one per payload: the SQL function's refusal, naming it
            with pytest.raises(psycopg.Error) as mismatch:
                good.enqueue_batch(conn, "reports", [1, 2], dedup_keys=["x"])
            conn.rollback()
            # a string is a Sequence[str] to mypy: refused at run time, not split into letters
            strings = []
            for call in (
                lambda: good.enqueue_batch(conn, "reports", [1, 2], keys="ab"),
                lambda: good.enqueue_batch(conn, "reports", [1], depends_on=ids[0]),
                lambda: good.enqueue(conn, "reports", 1, depends_on=ids[0]),
                lambda: good.enqueue_batch(conn, "reports", "ab"),
            ):
                with pytest.raises(TypeError) as refused:
                    call()
                strings.append(str(refused.value))
            conn.rollback()
    finally:
        sys.path.remove(str(tmp_path))
        for module in ("good", "supaqueue_gen"):
            sys.modules.pop(module, None)
    assert [p[0] for p in payloads if p] == [
        {"to": "a@example.com", "kind": "reset", "address": {"zip": 1, "from": "x"}},
        {"rows": [1, 2.5, None]},
        "text",
        3,
    ]
    assert unknown.value.sqlstate == "SQ020" and "send-emails" in str(unknown.value)
    assert mismatch.value.sqlstate == "22023"
    assert "_dedup_keys has 1 keys for 2 payloads" in str(mismatch.value)
    assert_batch_options(db, batch, ids[0], priority=6, dedup_key="py-once")
    assert strings == [
        "keys must be a list (one entry per payload), not a string: keys=['ab']",
        f"depends_on must be a list of job ids, not a string: depends_on=['{ids[0]}']",
        f"depends_on must be a list of job ids, not a string: depends_on=['{ids[0]}']",
        "payloads must be a list (one job each), not a string: payloads=['ab']",
    ]


# The optional arguments of a function after the queue and the payload(s), as (name, type).
ARGUMENTS = """
select a.name, a.type::regtype::text
  from pg_proc p
  join pg_namespace s on s.oid = p.pronamespace
  cross join unnest(p.proargnames, p.proargtypes::oid[]) with ordinality a(name, type, n)
 where s.nspname = %s and p.proname = %s and p.proargtypes[0] = 'text'::regtype and a.n > 2
 order by a.n
"""


def test_the_clients_options_are_the_sql_and_data_api_functions_arguments(db: str) -> None:
    """The generator's one list of options (and the batch's, derived from it) is what
    supaqueue.enqueue(text, …) / enqueue_batch take after the queue and the payload(s), in their
    order and types, and what the Data API wrappers take by name: an argument added there and
    not offered by the clients fails here."""
    with psycopg.connect(db) as conn:
        for function, options in (("enqueue", OPTIONS), ("enqueue_batch", BATCH_OPTIONS)):
            types: dict[str, str] = dict(
                conn.execute(
                    "select t, t::regtype::text from unnest(%s::text[]) t",
                    ([o.sql_type for o in options],),
                ).fetchall()
            )
            expected = [(o.name, types[o.sql_type]) for o in options]
            sql = conn.execute(ARGUMENTS, ("supaqueue", function)).fetchall()
            api = conn.execute(ARGUMENTS, ("supaqueue_api", function)).fetchall()
            assert [(name.removeprefix("_"), kind) for name, kind in sql] == expected, function
            assert api == expected, function
    assert [o.name for o in BATCH_OPTIONS] == [
        "run_at", "priority", "dedup_keys", "depends_on", "keys"]  # fmt: skip


def test_a_single_queue_and_no_queue_still_type_check(tmp_path: Path) -> None:
    """mypy wants two overloads at least: one queue gets plain functions; none, no functions."""
    for index, queues in enumerate([[QueueTypes("only", EMAIL_SCHEMA, DEFAULT_NON_RETRYABLE)], []]):
        (tmp_path / f"gen{index}.py").write_text(generate(queues, "python"))
        (tmp_path / f"gen{index}.ts").write_text(generate(queues, "typescript"))
    checked = mypy(tmp_path, "gen0.py", "gen1.py")
    assert checked.returncode == 0, checked.stdout
    ts = deno("check", "gen0.ts", "gen1.ts", cwd=tmp_path)
    assert ts.returncode == 0, ts.stderr


def test_a_queue_that_would_retry_the_handlers_422_is_warned_about(db: str, tmp_path: Path) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "update supaqueue.queue set non_retryable_statuses = '{400}' where name = 'send-email'"
        )
    result = CliRunner().invoke(root, ["gen", "types", "--lang", "typescript", "--db-url", db])
    assert result.exit_code == 0
    assert "warning: queue 'send-email' does not list 422 in non_retryable_statuses" in (
        result.stderr
    )


def test_a_database_without_supaqueue_is_named_not_a_traceback(pg_dsn: str) -> None:
    result = CliRunner().invoke(root, ["gen", "types", "--lang", "python", "--db-url", pg_dsn])
    assert result.exit_code == 1
    assert "supaqueue is not installed in that database" in result.stderr
    assert "Traceback" not in result.output


def test_payload_handler_answers_422_naming_the_field(tmp_path: Path) -> None:
    """The Deno module (`supaqueue gen handler`) behind a real HTTP server: a bad payload gets
    422 (in the default non_retryable_statuses) naming the field; a good one reaches the code;
    its batch handler answers one outcome per job (batch delivery, sql/0028)."""
    assert 422 in DEFAULT_NON_RETRYABLE
    test_dialects = (HERE / "payload_handler_test.ts").read_text()
    for dialect in PAYLOAD_SCHEMA_DIALECTS:
        assert f'"{dialect}"' in test_dialects, dialect
    out = tmp_path / "payload_handler.ts"
    result = CliRunner().invoke(root, ["gen", "handler", "--out", str(out)])
    assert result.exit_code == 0, result.output
    test = (HERE / "payload_handler_test.ts").read_text()
    (tmp_path / "payload_handler_test.ts").write_text(
        test.replace("../../supaqueue/console/typegen/payload_handler.ts", "./payload_handler.ts")
    )
    ran = deno("test", "--allow-net", "payload_handler_test.ts", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "6 passed" in ran.stdout, ran.stdout


FUNCTION = """
import { payloadSchemas, type Payloads } from "./supaqueue.gen.ts";
import { payloadHandler } from "./payload_handler.ts";

Deno.serve(
  { hostname: "127.0.0.1", port: Number(Deno.args[0]), onListen: () => console.log("ready") },
  payloadHandler<Payloads["send-email"]>(payloadSchemas["send-email"], (payload) =>
    Response.json({ sent: payload.to })),
);
"""


def test_a_bad_payload_fails_once_with_the_field_named_not_retried(db: str, tmp_path: Path) -> None:
    """A called function built from the generated file and the handler module, in real Deno
    behind real HTTP; the claim and the report are the engine's own (the dispatcher's HTTP leg
    is the test's): a payload the schema refuses answers 422, and the job fails on its first
    attempt of 3 with the field in its error, where a good one succeeds."""
    gen(db, "typescript", tmp_path / "supaqueue.gen.ts")
    handler = CliRunner().invoke(
        root, ["gen", "handler", "--out", str(tmp_path / "payload_handler.ts")]
    )
    assert handler.exit_code == 0, handler.output
    (tmp_path / "index.ts").write_text(FUNCTION)
    port = free_port()
    proc = subprocess.Popen(
        [deno_binary(), "run", "--allow-net", "index.ts", str(port)],
        cwd=tmp_path, env=deno_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    engine = Engine(db)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stdout
        queue = engine.one("select id::text from supaqueue.queue where name = 'send-email'")
        engine.conn.execute("insert into supaqueue.worker (queue) values (%s)", (queue,))
        assert engine.one("select max_attempts from supaqueue.queue where id = %s", (queue,)) == 3
        outcomes = {}
        for label, payload in [("bad", {"to": 5, "kind": "welcome"}),
                               ("good", {"to": "a@example.com", "kind": "welcome"})]:  # fmt: skip
            job = engine.enqueue(queue, payload)
            current = engine.current_job_of(job)
            claimed = engine.claim(current)
            answer = httpx.post(
                f"http://127.0.0.1:{port}/",
                content=claimed["job"]["body"],
                headers={"content-type": "application/json"},
            )
            assert engine.end(
                current,
                success=answer.is_success,
                _status_code=answer.status_code,
                _response_excerpt=answer.text,
                _result=answer.json() if answer.is_success else None,
            )
            engine.tick()
            excerpt = engine.one(
                "select last_response_excerpt from supaqueue.job where id = %s", (job,)
            )
            outcomes[label] = (answer.status_code, answer.json(), engine.job(job), excerpt)
    finally:
        engine.close()
        proc.terminate()
        proc.wait(10)
    status, body, job_row, excerpt = outcomes["bad"]
    assert status == 422
    assert body["error"] == "payload.to must be string"
    assert job_row["status"] == "failed" and job_row["attempts"] == 1  # of 3: not retried
    assert job_row["last_status_code"] == 422
    assert "payload.to must be string" in excerpt  # what `supaqueue job` shows
    status, body, job_row, _ = outcomes["good"]
    assert (status, body, job_row["status"]) == (200, {"sent": "a@example.com"}, "success")


# Every construct the converter knows, and the ones it widens.
KITCHEN_SINK = {
    "type": "object",
    "properties": {
        "from": {"type": "string"},  # a Python keyword
        "x-id": {"type": "integer"},  # no identifier
        'quote"d': {"const": "it's"},
        "ratio": {"type": "number", "minimum": 0},
        "flag": {"type": ["boolean", "null"]},
        "one": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"a": {}}}]},
        "lit": {"enum": ["a", 1, True, None, 2.5]},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}},
                "required": ["sku"],
                "additionalProperties": False,
            },
        },
        "ref": {"$ref": "#/$defs/x"},
        "all": {"allOf": [{"type": "string"}]},
        "untyped": {"minLength": 1},
        "tuple": {"type": "array", "prefixItems": [{"type": "string"}]},
        "map": {"type": "object", "additionalProperties": {"type": "integer"}},
        "empty": {"type": "object", "additionalProperties": False},
        "never": False,
    },
    "required": ["from", "x-id", "needs"],
    "$defs": {"x": {"type": "string"}},
}


def test_every_construct_converts_to_code_that_compiles_and_widenings_are_listed(
    tmp_path: Path,
) -> None:
    queues = [
        QueueTypes("sink", KITCHEN_SINK, DEFAULT_NON_RETRYABLE),
        QueueTypes("sink_", {"type": "string"}, DEFAULT_NON_RETRYABLE),  # same Python name
        QueueTypes("Sink-", None, DEFAULT_NON_RETRYABLE),
    ]
    ts, py = generate(queues, "typescript"), generate(queues, "python")
    for text in (ts, py):
        for widened in ("sink: payload.ref: $ref", "sink: payload.all: allOf",
                        "sink: payload.untyped: no type", "sink: payload.tuple: prefixItems",
                        ):  # fmt: skip
            assert widened.split(": ", 1)[1].split(" ")[0] in text, (widened, text[:2000])
    assert '"from": string;' in ts and '"x-id": number;' in ts and '"needs": JsonValue;' in ts
    assert '"lit"?: "a" | 1 | true | null | 2.5;' in ts
    assert '"never"?: never;' in ts
    assert "sink: payload.map: additionalProperties with a schema" in ts
    assert '"map": NotRequired[dict[str, int]],' in py
    assert '"from": str,' in py and '"x-id": int,' in py and '"needs": JsonValue,' in py
    assert 'Literal["a"] | Literal[1] | Literal[True] | Literal[None] | float' in py
    assert "SinkPayload2" in py  # `sink_` gets a name of its own
    (tmp_path / "sink.ts").write_text(ts)
    (tmp_path / "sink_gen.py").write_text(py)
    (tmp_path / "use_sink.ts").write_text(
        'import type { SinkPayload } from "./sink.ts";\n'
        'export const ok: SinkPayload = { from: "a", "x-id": 1, needs: null,\n'
        '  items: [{ sku: "s" }] };\n'
        "// @ts-expect-error: items are closed objects\n"
        'export const bad: SinkPayload = { items: [{ sk: "s" }],\n'
        '  from: "a", "x-id": 1, needs: 1 };\n'
    )
    checked = deno("check", "sink.ts", "use_sink.ts", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    typed = mypy(tmp_path, "sink_gen.py")
    assert typed.returncode == 0, typed.stdout


def test_payload_handler_module_is_lint_and_format_clean_with_npm_imports_only() -> None:
    """As the project's Edge Functions (tests/edge/test_deno.py): it is copied into users'."""
    module = HERE.parent.parent / "supaqueue" / "console" / "typegen" / "payload_handler.ts"
    for command in (["lint"], ["fmt", "--check", "--line-width", "100"]):
        done = deno(*command, str(module), cwd=module.parent)
        assert done.returncode == 0, f"deno {' '.join(command)}: {done.stdout}{done.stderr}"
    imports = re.findall(r'^import .* from "([^"]+)";$', module.read_text(), re.MULTILINE)
    assert imports and all(spec.startswith("npm:") for spec in imports), imports


def test_out_into_a_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    """The README's `--out supabase/functions/_shared/payload_handler.ts` in a project that has
    no `_shared/` folder yet: the folders are made, as the README's commands assume."""
    out = tmp_path / "supabase" / "functions" / "_shared" / "payload_handler.ts"
    result = CliRunner().invoke(root, ["gen", "handler", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "payloadHandler" in out.read_text()


def test_out_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    """A path under a file (not a folder): exit 1 naming --out, no traceback."""
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(
        root, ["gen", "handler", "--out", str(tmp_path / "a-file" / "x.ts")]
    )
    assert result.exit_code == 1, result.output
    assert "--out" in result.output and "Traceback" not in result.output
