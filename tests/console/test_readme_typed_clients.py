"""The README's "Typed clients" and "Batch delivery" snippets, as written: its `supaqueue gen`
commands (with `--db-url` for `--stack dev`) write the modules into a project laid out as they
say, then real Deno type-checks the TypeScript snippets against them and real mypy the Python
one; the two enqueue snippets run against the database, and the mistakes the README says do not
compile do not (tests/console/test_gen_types.py checks the generated modules themselves)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from harness.engine import install
from harness.function_process import deno_binary, deno_env
from supaqueue.cli.main import root
from tests.console.test_gen_types import deno, mypy
from tests.support.readme import block

GEN = (
    "supaqueue gen types --lang typescript --stack dev --out "
    "supabase/functions/_shared/supaqueue.gen.ts"
)
BATCH = 'import { batchHandler, JobError } from "./_shared/payload_handler.ts";'
CLIENT = (
    '// Deno or Node, over SQL (postgres.js; in an Edge Function: Deno.env.get("SUPABASE_DB_URL"))'
)
PYTHON = "import psycopg"
CALLED = "// the called function (supabase/functions/send-email/index.ts)"
EMAILS = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "template": {"enum": ["welcome", "reset"]}},
    "required": ["to"],
    "additionalProperties": False,
}
# The Python snippet's `db_url` is the reader's; here it is the test database's.
DB_URL_LINE = 'import os\n\ndb_url = os.environ["DB_URL"]\n'


@pytest.fixture
def db(pg_dsn: str) -> str:
    """The queue the snippets name, with a payload schema as the README's prose has it."""
    install(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "insert into supaqueue.queue (name, edge_function_name, payload_schema)"
            " values ('emails', 'send-email', %s)",
            (Jsonb(EMAILS),),
        )
    return pg_dsn


def payloads(db: str) -> list[object]:
    with psycopg.connect(db) as conn:
        rows = conn.execute("select payload from supaqueue.job order by created_at").fetchall()
    return [row[0] for row in rows]


def test_the_readme_snippets_type_check_and_run(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for line in block(GEN).text.splitlines():
        words = shlex.split(line.replace("--stack dev", f"--db-url {db}"))
        assert words[0] == "supaqueue"
        result = CliRunner().invoke(root, words[1:])
        assert result.exit_code == 0, (line, result.output)
    functions = tmp_path / "supabase" / "functions"
    assert sorted(p.name for p in (functions / "_shared").iterdir()) == [
        "payload_handler.ts",
        "supaqueue.gen.ts",
    ]
    (functions / "batch.ts").write_text(block(BATCH).text)
    (functions / "client.ts").write_text(block(CLIENT).text)
    called = block(CALLED)
    (functions / "send-email").mkdir()
    (functions / "send-email" / "index.ts").write_text(called.text)
    checked = deno("check", "batch.ts", "client.ts", "send-email/index.ts", cwd=functions)
    assert checked.returncode == 0, checked.stderr

    # "`{ to: 5 }` or "emials" does not compile"
    good = '"emails", { to: "ada@example.com", template: "welcome" }'
    assert good in block(CLIENT).text
    for wrong in ('"emails", { to: 5 }', '"emials", { to: "ada@example.com" }'):
        (functions / "wrong.ts").write_text(block(CLIENT).text.replace(good, wrong, 1))
        failed = deno("check", "wrong.ts", cwd=functions)
        assert failed.returncode != 0 and "is not assignable" in failed.stderr, failed.stderr

    # The client runs: a module that imports it, then ends (postgres.js keeps its pool open).
    (functions / "run_client.ts").write_text('await import("./client.ts");\nDeno.exit(0);\n')
    ran = subprocess.run(
        [deno_binary(), "run", "--allow-net", "--allow-env", "--allow-read", "run_client.ts"],
        cwd=functions, env={**deno_env(), "SUPABASE_DB_URL": db},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert payloads(db) == [{"to": "ada@example.com", "template": "welcome"}]

    app = tmp_path / "app"
    python = block(PYTHON).text
    (app / "enqueue.py").write_text(DB_URL_LINE + python)
    typed = mypy(app, "supaqueue_gen.py", "enqueue.py")
    assert typed.returncode == 0, typed.stdout
    # "mypy checks the queue name and the payload"
    good_py = '"emails", {"to": "ada@example.com", "template": "welcome"}'
    assert good_py in python
    for wrong_py, said in (
        ('"emials", {"to": "ada@example.com"}', "Literal['emials']"),
        ('"emails", {"to": 5}', 'TypedDict item "to" has type "str"'),
    ):
        (app / "wrong.py").write_text(DB_URL_LINE + python.replace(good_py, wrong_py, 1))
        refused = mypy(app, "wrong.py")
        assert refused.returncode != 0 and said in refused.stdout, refused.stdout
    done = subprocess.run(
        [sys.executable, "enqueue.py"],
        cwd=app, env={**os.environ, "DB_URL": db},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert payloads(db)[1:] == [{"to": "ada@example.com", "template": "welcome"}]
