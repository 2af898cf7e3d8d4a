"""One authority for a queue's limits: the SQL schema (supaqueue.queue's constraints and column
types). The Pulumi spec (supaqueue/providers/queue/spec.py) and the Edge Function
(supaqueue/edge/dispatch_body.ts) must accept and refuse exactly what it does; any drift fails
here. Each limit is probed at its bounds and one step beyond, against a real database and real
Deno."""

from __future__ import annotations

import json
import math
import subprocess
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from harness.function_process import DISPATCHER, deno_binary, deno_env
from supaqueue.providers.queue.spec import (
    INT4_MAX,
    INT_LIMITS,
    MAX_RATE_PER_SECOND,
    MAX_SLUG_LENGTH,
    MAX_TIMEOUT_MS,
    METHODS,
    validate_queue,
)

# Settings a probe needs so that only the probed value decides (e.g. a burst needs a rate).
COMPANIONS: dict[str, dict[str, Any]] = {
    "backoff_base_ms": {"backoff_max_ms": INT4_MAX},
    "backoff_max_ms": {"backoff_base_ms": 0},
    "rate_limit_burst": {"rate_limit_per_second": 1},
    "rate_limit_burst_per_key": {"rate_limit_per_key": 1},
}
SQL_REFUSALS = (psycopg.errors.CheckViolation, psycopg.errors.NumericValueOutOfRange)

SLUG_SAMPLES = [
    "a", "Z", "send-email", "a_b-C9", "a" * MAX_SLUG_LENGTH,
    "", "1abc", "-a", "_a", "a" * (MAX_SLUG_LENGTH + 1), "send email", "a.b", "a/b",
    "nlname\n", "\nx", "a\u00e9", "http://x",
]  # fmt: skip


def _column(field: str) -> str:
    return "default_headers" if field == "headers" else field


def _sql_accepts(conn: psycopg.Connection, values: dict[str, Any]) -> bool:
    row = {"name": f"q{uuid.uuid4().hex[:12]}", "edge_function_name": "fn", **values}
    statement = sql.SQL("insert into supaqueue.queue ({}) values ({})").format(
        sql.SQL(", ").join(sql.Identifier(_column(k)) for k in row),
        sql.SQL(", ").join(sql.Placeholder() for _ in row),
    )
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(statement, list(row.values()))
    except SQL_REFUSALS:
        return False
    return True


def _python_accepts(values: dict[str, Any]) -> bool:
    return validate_queue({"name": "q", "edge_function_name": "fn", **values}) == []


@pytest.fixture
def conn(engine_dsn: str) -> Any:
    with psycopg.connect(engine_dsn, autocommit=True) as connection:
        yield connection


def _int_probes() -> list[tuple[str, int, bool]]:
    probes = []
    for field, limits in INT_LIMITS.items():
        if field == "workers":
            continue  # not a column (rows of supaqueue.worker): a Pulumi-side limit only
        probes += [
            (field, limits.minimum, True),
            (field, limits.maximum, True),
            (field, limits.minimum - 1, False),
            (field, limits.maximum + 1, False),
        ]
    return probes


@pytest.mark.parametrize(("field", "value", "inside"), _int_probes())
def test_integer_limits_agree_with_sql(
    conn: psycopg.Connection, field: str, value: int, inside: bool
) -> None:
    values = {**COMPANIONS.get(field, {}), field: value}
    assert _sql_accepts(conn, values) is inside, f"SQL on {field}={value}"
    assert _python_accepts(values) is inside, f"spec on {field}={value}"


FLOAT_PROBES = [
    ("rate_limit_per_second", 5e-324, True),
    ("rate_limit_per_second", MAX_RATE_PER_SECOND, True),
    ("rate_limit_per_second", 0.0, False),
    ("rate_limit_per_second", math.nextafter(MAX_RATE_PER_SECOND, math.inf), False),
    ("rate_limit_per_second", 1e308, False),
    ("rate_limit_per_second", math.inf, False),
    ("rate_limit_per_second", math.nan, False),
    ("backoff_jitter", 0.0, True),
    ("backoff_jitter", 1.0, True),
    ("backoff_jitter", -5e-324, False),
    ("backoff_jitter", math.nextafter(1.0, 2.0), False),
    ("backoff_jitter", math.nan, False),
]


@pytest.mark.parametrize(("field", "value", "inside"), FLOAT_PROBES)
def test_number_limits_agree_with_sql(
    conn: psycopg.Connection, field: str, value: float, inside: bool
) -> None:
    assert _sql_accepts(conn, {field: value}) is inside, f"SQL on {field}={value}"
    assert _python_accepts({field: value}) is inside, f"spec on {field}={value}"


@pytest.mark.parametrize("field", ["name", "edge_function_name"])
def test_slug_rule_agrees_with_sql(conn: psycopg.Connection, field: str) -> None:
    for slug in SLUG_SAMPLES:
        sql_ok = _sql_accepts(conn, {field: slug})
        assert _python_accepts({field: slug}) is sql_ok, f"{field}={slug!r}: SQL says {sql_ok}"
    assert _sql_accepts(conn, {field: "a" * MAX_SLUG_LENGTH})
    assert not _sql_accepts(conn, {field: "a" * (MAX_SLUG_LENGTH + 1)})


def test_methods_agree_with_sql(conn: psycopg.Connection) -> None:
    for method in [*METHODS, "post", "HEAD", "OPTIONS", ""]:
        sql_ok = _sql_accepts(conn, {"method": method})
        assert sql_ok is (method in METHODS)
        assert _python_accepts({"method": method}) is sql_ok, method


def test_a_rate_at_the_maximum_refills_without_overflow(conn: psycopg.Connection) -> None:
    """The bound is what the engine can compute: a long-idle bucket at the highest rate refills
    and dispatches (before, 1e308 made every insert fail with `value out of range: overflow`)."""
    queue = conn.execute(
        "insert into supaqueue.queue (name, edge_function_name, rate_limit_per_second)"
        " values ('fast', 'fn', %s) returning id",
        (MAX_RATE_PER_SECOND,),
    ).fetchone()
    assert queue is not None
    conn.execute("select supaqueue.set_worker_count(%s, 1)", (queue[0],))
    conn.execute(
        "insert into supaqueue.queue_bucket (queue, tokens, refilled_at)"
        " values (%s, 0, now() - interval '100 years')"
        " on conflict (queue) do update set tokens = 0, refilled_at = excluded.refilled_at",
        (queue[0],),
    )
    conn.execute("insert into supaqueue.job (queue) values (%s)", (queue[0],))
    status = conn.execute("select status::text from supaqueue.job where queue = %s", (queue[0],))
    assert status.fetchone() == ("in_progress",)


# ---- the Edge Function's copy ------------------------------------------------------------------

_PROBE_TS = """
import { parseDispatch } from "%(module)s";
const cases = JSON.parse(Deno.args[0]);
const id = "00000000-0000-4000-8000-000000000001";
const out = cases.map(([slug, timeout]: [string, number]) => {
  const body = {
    current_job: { id, worker: id, job: id, lease_expires_at: "2026-01-01T00:00:00Z" },
    job: { id, queue: id, payload: {}, attempts: 1 },
    queue: { id, name: "q", edge_function_name: slug, method: "POST", default_headers: {},
             timeout_ms: timeout },
  };
  try { parseDispatch(JSON.stringify(body)); return true; } catch { return false; }
});
console.log(JSON.stringify(out));
"""


def _edge_accepts(cases: list[tuple[str, int]], tmp_path: Any) -> list[bool]:
    script = tmp_path / "probe.ts"
    module = (DISPATCHER / "dispatch_body.ts").as_uri()
    script.write_text(_PROBE_TS % {"module": module})
    proc = subprocess.run(
        [deno_binary(), "run", "--no-prompt", "--no-config", str(script), json.dumps(cases)],
        env=deno_env(), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result: list[bool] = json.loads(proc.stdout)
    return result


def test_edge_function_agrees_with_sql(conn: psycopg.Connection, tmp_path: Any) -> None:
    timeouts = [1, MAX_TIMEOUT_MS, 0, MAX_TIMEOUT_MS + 1]
    cases = [(slug, 30_000) for slug in SLUG_SAMPLES] + [("fn", t) for t in timeouts]
    edge = _edge_accepts(cases, tmp_path)
    for (slug, timeout), edge_ok in zip(cases, edge, strict=True):
        values = {"edge_function_name": slug, "timeout_ms": timeout}
        assert edge_ok is _sql_accepts(conn, values), f"edge function on {values}"


def test_upgrade_keeps_queues_made_under_the_older_rules(pg_dsn: str) -> None:
    """Data safety: the tightened limits never refuse an upgrade nor touch an existing queue."""
    from supaqueue import migrations

    loaded = migrations.load_migrations()
    mine = next(m for m in loaded if m.name == "one_authority")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.apply(conn, [m for m in loaded if m.version < mine.version])
        conn.execute(
            "insert into supaqueue.queue (name, edge_function_name, timeout_ms, max_attempts,"
            " rate_limit_per_second) values ('9 old queue', '1fn', 3600000, 500, 1e308)"
        )
        notices: list[str] = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        migrations.apply(conn, loaded)
        row = conn.execute(
            "select edge_function_name, timeout_ms, max_attempts from supaqueue.queue"
            " where name = '9 old queue'"
        ).fetchone()
        assert row == ("1fn", 3600000, 500)
        assert any("queue_timeout_range" in n and "kept as they are" in n for n in notices)
        validated: dict[str, bool] = dict(
            conn.execute(
                "select conname, convalidated from pg_constraint"
                " where conrelid = 'supaqueue.queue'::regclass and contype = 'c'"
            ).fetchall()
        )
        assert validated["queue_timeout_range"] is False
        assert validated["queue_method_known"] is True
        # a new queue must follow the new rules all the same
        with pytest.raises(psycopg.errors.CheckViolation, match="queue_timeout_range"):
            conn.execute(
                "insert into supaqueue.queue (name, edge_function_name, timeout_ms)"
                " values ('new', 'fn', 3600000)"
            )


def test_payload_schema_size_agrees_with_sql(conn: psycopg.Connection) -> None:
    """The size limit of `payload_schema` (constraint queue_payload_schema_size) is the spec's
    MAX_PAYLOAD_SCHEMA_BYTES, counted the same way (non-ASCII text included)."""
    from psycopg.types.json import Jsonb

    from supaqueue.providers.queue.spec import MAX_PAYLOAD_SCHEMA_BYTES, payload_schema_size

    def schema_of(size: int) -> dict[str, Any]:
        base = {"type": "object", "description": "é"}
        pad = size - payload_schema_size(base)
        return {**base, "description": "é" + "x" * pad}

    for size, inside in [(MAX_PAYLOAD_SCHEMA_BYTES, True), (MAX_PAYLOAD_SCHEMA_BYTES + 1, False)]:
        schema = schema_of(size)
        assert payload_schema_size(schema) == size
        assert _sql_accepts(conn, {"payload_schema": Jsonb(schema)}) is inside, size
        assert _python_accepts({"payload_schema": schema}) is inside, size
    assert not _sql_accepts(conn, {"payload_schema": Jsonb(["not", "an", "object"])})


# Keys (sql/0026): the per-key rate as the queue's, and `key_from`'s path rule.
KEY_FROM_SAMPLES = [
    "$.tenant_id", "$.a.b.c.d.e.f.g.h", "$._x9", "$." + "a" * 63,
    "tenant_id", "$", "$.", "$.a.b.c.d.e.f.g.h.i", "$.a b", "$.9a", "$.a\n", "$['a']",
    "$." + "a" * 64, "$.a-b", "$.é",
]  # fmt: skip


@pytest.mark.parametrize(("value", "inside"), [
    (5e-324, True), (MAX_RATE_PER_SECOND, True), (0.0, False),
    (math.nextafter(MAX_RATE_PER_SECOND, math.inf), False), (math.inf, False), (math.nan, False),
])  # fmt: skip
def test_rate_limit_per_key_agrees_with_sql(
    conn: psycopg.Connection, value: float, inside: bool
) -> None:
    assert _sql_accepts(conn, {"rate_limit_per_key": value}) is inside, value
    assert _python_accepts({"rate_limit_per_key": value}) is inside, value


def test_key_from_rule_agrees_with_sql(conn: psycopg.Connection) -> None:
    for path in KEY_FROM_SAMPLES:
        sql_ok = _sql_accepts(conn, {"key_from": path})
        assert _python_accepts({"key_from": path}) is sql_ok, f"{path!r}: SQL says {sql_ok}"
    assert _sql_accepts(conn, {"key_from": "$.tenant_id"})
    assert not _sql_accepts(conn, {"key_from": "tenant_id"})
