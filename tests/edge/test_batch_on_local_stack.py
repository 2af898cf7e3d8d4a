"""Batch delivery end to end on the local stack (issue #26 item 5): SQL → pg_net (stand-in
sender) → gateway → the deployed supaqueue function → gateway → a deployed batch target, with
pg_cron ticking. The target answers one outcome per job of the JSON array it receives; each job
ends on its own (success with its result, a retried 503 with Retry-After, a final 422, a job
left out of the answer retried), a batch of N takes one call, a batch abandoned at its
timeout holds its N workers, and a cancelled call's late answer frees its workers at once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from harness.edge_engine import Engine
from tests.conftest import LocalStack
from tests.edge.conftest import dispatcher_installed

# Answers each job by its payload's `do`; sleeps (the whole call) for the largest `sleep_ms`.
# A call of one job (batch_size 1) carries its payload: it sleeps for its `sleep_ms`.
TARGET = """
Deno.serve(async (request: Request) => {
  const size = Number(request.headers.get("supaqueue-batch-size"));
  const body = await request.json();
  if (!Array.isArray(body)) {
    await new Promise((resolve) => setTimeout(resolve, Number(body.sleep_ms ?? 0)));
    return Response.json({ n: body.n });
  }
  const jobs = body;
  const sleep = Math.max(0, ...jobs.map((j: any) => Number(j.payload.sleep_ms ?? 0)));
  if (sleep > 0) await new Promise((resolve) => setTimeout(resolve, sleep));
  const out = [];
  for (const j of jobs) {
    const p = j.payload;
    if (p.do === "skip") continue;
    if (p.do === "fail") out.push({ id: j.id, status: 503, error: "busy", retry_after: 1 });
    else if (p.do === "final") out.push({ id: j.id, status: 422, error: "bad payload" });
    else out.push({ id: j.id, result: { n: p.n, attempt: j.attempt, size } });
  }
  return Response.json(out);
});
"""


@dataclass
class Stack:
    local: LocalStack
    engine: Engine
    target: str


@pytest.fixture(scope="module")
def stack(local_stack: LocalStack) -> Iterator[Stack]:
    target = f"batch-target-{uuid.uuid4().hex[:8]}"
    with dispatcher_installed(local_stack, target, {"index.ts": TARGET}):
        engine = Engine(local_stack.env["DB_URL"])
        try:
            yield Stack(local_stack, engine, target)
        finally:
            engine.close()


def _queue(s: Stack, workers: int, **columns: object) -> str:
    names = ["name", "edge_function_name", *columns]
    values = [f"q-{uuid.uuid4().hex[:12]}", s.target, *columns.values()]
    row = s.engine.conn.execute(
        f"insert into supaqueue.queue ({', '.join(names)})"
        f" values ({', '.join(['%s'] * len(values))}) returning id::text",
        values,
    ).fetchone()
    assert row is not None
    queue_id = str(row["id"])
    s.engine.conn.execute("select supaqueue.set_worker_count(%s, %s)", (queue_id, workers))
    return queue_id


def _invocations(s: Stack) -> int:
    reply = httpx.get(f"{s.local.env['API_URL']}/_local/invocations", timeout=30)
    reply.raise_for_status()
    return int(reply.json().get(s.target, 0))


def _enqueue(s: Stack, queue_id: str, payloads: list[dict[str, Any]]) -> list[str]:
    """All in one statement (one dispatch), in this order."""
    from psycopg.types.json import Jsonb

    rows = s.engine.conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select %s, p from jsonb_array_elements(%s) with ordinality as a(p, i) order by i"
        " returning id::text",
        (queue_id, Jsonb(payloads)),
    ).fetchall()
    return [str(r["id"]) for r in rows]


def _one(s: Stack, query: str, params: Any) -> Any:
    row = s.engine.conn.execute(query, params).fetchone()
    assert row is not None, query
    return next(iter(row.values()))


def _status(s: Stack, job: str) -> str:
    return str(_one(s, "select status::text from supaqueue.job where id = %s", (job,)))


def _wait(s: Stack, queue_id: str, until: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = s.engine.conn.execute(
            f"select ({until}) as ok from supaqueue.job j where j.queue = %s", (queue_id,)
        ).fetchone()
        if row is not None and row["ok"]:
            return
        time.sleep(0.1)
    states = s.engine.conn.execute(
        "select status::text, attempts, last_error from supaqueue.job where queue = %s",
        (queue_id,),
    ).fetchall()
    raise AssertionError(f"not {until} within {timeout} s: {states}")


def test_a_batch_call_ends_each_job_on_its_own(stack: Stack) -> None:
    kinds = ["ok", "fail", "final", "skip", "ok", "ok"]
    q = _queue(stack, 6, batch_size=6, max_attempts=2, backoff_base_ms=0, backoff_jitter=0)
    calls_before = _invocations(stack)
    jobs = _enqueue(stack, q, [{"n": n, "do": kind} for n, kind in enumerate(kinds)])
    _wait(stack, q, "bool_and(j.finished_at is not null)")

    rows = {
        str(r["id"]): r
        for r in stack.engine.conn.execute(
            "select id::text, status::text, attempts, result, last_status_code, last_error"
            " from supaqueue.job where queue = %s",
            (q,),
        ).fetchall()
    }
    for n, (job, kind) in enumerate(zip(jobs, kinds, strict=True)):
        r = rows[job]
        if kind == "ok":
            # in one call of all six, first attempt
            assert (r["status"], r["attempts"]) == ("success", 1), r
            assert r["result"] == {"n": n, "attempt": 1, "size": 6}
        elif kind == "fail":  # 503: retried (after its Retry-After), failed at max_attempts
            assert (r["status"], r["attempts"], r["last_status_code"]) == ("failed", 2, 503), r
            assert r["last_error"] == "busy"
        elif kind == "final":  # 422: not retried
            assert (r["status"], r["attempts"], r["last_status_code"]) == ("failed", 1, 422), r
        else:  # left out of the answer: retried, then failed
            assert (r["status"], r["attempts"]) == ("failed", 2), r
            assert r["last_error"].startswith("missing from the batch answer"), r
    fail = jobs[kinds.index("fail")]
    gap = _one(
        stack,
        "select extract(epoch from max(started_at) - min(ended_at))::float"
        " from supaqueue.job_attempt where job = %s",
        (fail,),
    )
    assert gap >= 0.9  # its retry waited for its own Retry-After (1 s)
    # the six first attempts in one call; the two retried jobs in one or two more
    calls = _invocations(stack) - calls_before
    assert 2 <= calls <= 3, calls
    assert (
        _one(stack, "select count(*) from supaqueue.worker where queue = %s and locked", (q,)) == 0
    )


def test_a_batch_abandoned_at_its_timeout_holds_all_its_workers(stack: Stack) -> None:
    q = _queue(
        stack, 3, batch_size=3, timeout_ms=1000, max_attempts=1, target_wall_clock_ms=600_000
    )
    slow = _enqueue(stack, q, [{"n": n, "sleep_ms": 4000} for n in range(3)])
    _wait(stack, q, "bool_and(j.status = 'failed')")
    errors = stack.engine.conn.execute(
        "select error, count(*) as n from supaqueue.job_attempt where queue = %s group by 1", (q,)
    ).fetchall()
    assert errors == [{"error": "Timeout of 1000 ms reached", "n": 3}]
    held = stack.engine.conn.execute(
        "select count(*) filter (where locked and held_until is not null) as held, count(*) as n"
        " from supaqueue.worker where queue = %s",
        (q,),
    ).fetchone()
    assert held == {"held": 3, "n": 3}  # the call may still run at the target: N workers held
    more = _enqueue(stack, q, [{"n": n} for n in range(3)])
    assert all(_status(stack, j) == "pending" for j in more)
    # once the call can no longer run (moved into the past here), the next batch goes out
    stack.engine.conn.execute(
        "update supaqueue.worker set held_until = now() - interval '1 second' where queue = %s",
        (q,),
    )
    _wait(stack, q, "bool_and(j.finished_at is not null)")
    assert all(_status(stack, j) == "success" for j in more)
    assert all(_status(stack, j) == "failed" for j in slow)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_cancelled_calls_late_answer_frees_its_workers_at_once(
    stack: Stack, batch_size: int
) -> None:
    """The operator cancels calls in flight: their workers are held (the calls may still run),
    until the dispatcher reports their whole answers (report_and_claim for a single call,
    report_batch for a batch); then the workers are free at once, not target_wall_clock_ms
    later (0029), and the answers are dropped. Failed before 0029: the next jobs waited for
    the 10 minutes' hold, past this test's wait."""
    q = _queue(
        stack, batch_size, batch_size=batch_size, timeout_ms=20_000, target_wall_clock_ms=600_000
    )
    slow = _enqueue(stack, q, [{"n": n, "sleep_ms": 3000} for n in range(batch_size)])
    deadline = time.monotonic() + 60
    while (
        _one(
            stack,
            "select count(*) from supaqueue.current_job where job = any(%s::uuid[])"
            " and claimed_at is not null",
            (slow,),
        )
        < batch_size
    ):
        assert time.monotonic() < deadline, "the slow calls were never claimed"
        time.sleep(0.05)
    for job in slow:
        assert _one(stack, "select supaqueue.cancel_job(%s)", (job,)) is True
    held = "select count(*) from supaqueue.worker where queue = %s and held_until is not null"
    assert _one(stack, held, (q,)) == batch_size  # the calls are still running
    more = _enqueue(stack, q, [{"n": n} for n in range(batch_size)])
    _wait(stack, q, "bool_and(j.status in ('success', 'cancelled'))", timeout=90)
    assert all(_status(stack, j) == "success" for j in more)
    assert _one(stack, held, (q,)) == 0
    for job in slow:
        assert _status(stack, job) == "cancelled"
        assert _one(stack, "select result from supaqueue.job where id = %s", (job,)) is None
        outcomes = stack.engine.conn.execute(
            "select outcome from supaqueue.job_attempt where job = %s", (job,)
        ).fetchall()
        assert outcomes == [{"outcome": "cancelled"}]
