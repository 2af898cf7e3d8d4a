"""The function's SQL literals (supaqueue/edge/sql_literal.ts) read back, in a real Postgres, as
exactly the values they were made from, whatever the value holds: no content can end a literal
early and add SQL of its own."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

import pytest

from harness.function_process import DISPATCHER, deno_binary, deno_env
from supaqueue.local_stack.postgres import Cluster

# Prints literal(v) for each value of the JSON array on stdin, as a JSON array.
SCRIPT = """
import { literal } from "./sql_literal.ts";
const values = JSON.parse(await new Response(Deno.stdin.readable).text());
console.log(JSON.stringify(values.map((v) => literal(v))));
"""

HOSTILE = [
    "",
    "plain",
    "'",
    "''",
    "\\",
    "\\'",
    "$",
    "$$",
    "$q$",
    "a$q",
    "$q",
    "q$",
    "$q$$q1$$q2$",
    "x$q$); select pg_sleep(10); --",
    "'); drop table supaqueue.job; --",
    "$q1$ $q$ $q2$",
    "ends with a dollar $",
    "line\nbreak\ttab\r",
    "unicode ✓ 🎉 \u00e9",
    '{"json": "text", "n": [1, 2.5, null]}',
    "x" * 100_000 + "$q$",
]


def literals(values: Sequence[object]) -> list[str]:
    proc = subprocess.run(
        [deno_binary(), "eval", "--config", str(DISPATCHER / "deno.json"), SCRIPT],
        cwd=DISPATCHER,
        env=deno_env(),
        input=json.dumps(values),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert isinstance(out, list) and len(out) == len(values)
    return [str(x) for x in out]


@pytest.mark.parametrize("conforming", ["on", "off"])
def test_literals_read_back_as_their_values(pg_cluster: Cluster, conforming: str) -> None:
    with pg_cluster.connect() as conn:
        conn.execute(f"set standard_conforming_strings = {conforming}")
        for value, lit in zip(HOSTILE, literals(HOSTILE), strict=True):
            # one statement, one column: anything that escaped the literal would break either
            row = conn.execute(f"select {lit}::text as v").fetchone()  # type: ignore[arg-type]
            assert row is not None and row[0] == value, (value[:80], lit[:80])


def test_scalars_and_null(pg_cluster: Cluster) -> None:
    values: list[object] = [None, True, False, 0, -17, 2.5, 1e21, 2**31 - 1]
    lits = literals(values)
    assert lits[:3] == ["null", "true", "false"]
    with pg_cluster.connect() as conn:
        row = conn.execute(
            "select {}::text, {}::boolean, {}::boolean, {}::integer, {}::integer, {}::numeric,"
            " {}::numeric, {}::integer".format(*lits)  # type: ignore[arg-type]
        ).fetchone()
    assert row is not None
    assert row[:5] == (None, True, False, 0, -17)
    assert float(row[5]) == 2.5 and float(row[6]) == 1e21 and row[7] == 2**31 - 1


def test_nul_becomes_a_replacement_character(pg_cluster: Cluster) -> None:
    """Postgres text cannot hold U+0000 (a Parse message would even end at it)."""
    [lit] = literals(["a\u0000b"])
    with pg_cluster.connect() as conn:
        row = conn.execute(f"select {lit}::text").fetchone()  # type: ignore[arg-type]
    assert row == ("a\ufffdb",)
