"""Backpressure on the local stack (issue 26 item 3): SQL → pg_net (stand-in sender) → gateway →
the deployed supaqueue function → gateway → a deployed target that answers 429 with
`Retry-After: 2` to a job's first attempts, as its payload asks; the real pg_cron ticks.

- `hold_on_retry_after: queue`: after the 429 no call of the queue reaches the target until the
  hold's end (the report's time + 2 s; every later call arrived after it, by the target's clock,
  which is the database's), and the calls resume by themselves (no one acts: the tick ends it).
- `key`: only that key's calls wait; another key's jobs are served meanwhile.
- the default, `job`: only the answered job waits; the others are called meanwhile.
Failed before the fix: the queue's other jobs were dispatched at once (no setting, no hold).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import LocalStack
from tests.edge.conftest import dispatcher_installed

# Answers 429 with the payload's Retry-After (default 2 s) while the attempt (the header the
# dispatcher sends) is at most the payload's `busy_attempts`; 200 after, with when the call
# arrived (this machine's clock, as the database's), which the job keeps as its result.
TARGET = """
Deno.serve(async (request: Request) => {
  const payload = await request.json().catch(() => ({}));
  const attempt = Number(request.headers.get("supaqueue-attempt") ?? "1");
  if (attempt <= (payload.busy_attempts ?? 0)) {
    return Response.json({ busy: true }, {
      status: 429,
      headers: { "Retry-After": String(payload.retry_after ?? 2) },
    });
  }
  return Response.json({ ok: true, attempt, arrived_ms: Date.now() });
});
"""
WAIT_S = 120  # generous: a loaded CI machine, pg_cron 1.4's tick gap at each minute's end


@dataclass
class Stack:
    local: LocalStack
    conn: psycopg.Connection[dict[str, Any]]
    target: str


def _wait(what: str, check: Any, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture(scope="module")
def stack(local_stack: LocalStack) -> Iterator[Stack]:
    target = f"busy-{uuid.uuid4().hex[:8]}"
    with dispatcher_installed(local_stack, target, {"index.ts": TARGET}):
        conn = psycopg.connect(local_stack.env["DB_URL"], autocommit=True, row_factory=dict_row)
        try:
            # pg_cron 1.4 (the local stack's) starts the tick's loop at the next minute: the
            # hold's end is the tick's to notice
            _wait(
                "the supaqueue-tick cron job running",
                lambda: conn.execute(
                    "select exists (select 1 from cron.job_run_details d"
                    " join cron.job j using (jobid) where j.jobname = 'supaqueue-tick'"
                    " and d.start_time > now() - interval '70 seconds') as ok"
                ).fetchone()["ok"],  # type: ignore[index]
            )
            yield Stack(local_stack, conn, target)
        finally:
            conn.close()


def _queue(s: Stack, **columns: Any) -> str:
    names = ["name", "edge_function_name", "backoff_base_ms", "backoff_jitter", *columns]
    values = [f"q-{uuid.uuid4().hex[:12]}", s.target, 0, 0, *columns.values()]
    row = s.conn.execute(
        f"insert into supaqueue.queue ({', '.join(names)})"
        f" values ({', '.join(['%s'] * len(values))}) returning id::text as id",
        values,
    ).fetchone()
    assert row is not None
    s.conn.execute("select supaqueue.set_worker_count(%s, 1)", (row["id"],))
    return str(row["id"])


def _enqueue(s: Stack, queue: str, payload: dict[str, Any]) -> str:
    row = s.conn.execute(
        "insert into supaqueue.job (queue, payload) values (%s, %s) returning id::text as id",
        (queue, json.dumps(payload)),
    ).fetchone()
    assert row is not None
    return str(row["id"])


def _attempts(s: Stack, job: str) -> list[dict[str, Any]]:
    return list(
        s.conn.execute(
            "select attempt, status_code, started_at, ended_at from supaqueue.job_attempt"
            " where job = %s order by attempt",
            (job,),
        ).fetchall()
    )


def _arrived(s: Stack, job: str) -> datetime:
    """When the job's successful call reached the target (the target's answer, its result)."""
    row = s.conn.execute(
        "select to_timestamp((result->>'arrived_ms')::float8 / 1000) as at from supaqueue.job"
        " where id = %s",
        (job,),
    ).fetchone()
    assert row is not None and row["at"] is not None, job
    return row["at"]  # type: ignore[no-any-return]


def _status(s: Stack, job: str) -> str:
    return str(s.conn.execute("select status::text as s from supaqueue.job where id = %s", (job,))
               .fetchone()["s"])  # type: ignore[index]  # fmt: skip


def test_a_queue_hold_stops_every_call_until_the_retry_after_and_ends_by_itself(
    stack: Stack,
) -> None:
    q = _queue(stack, hold_on_retry_after="queue")
    busy = _enqueue(stack, q, {"busy_attempts": 1, "retry_after": 2})
    [answered] = _wait("the 429", lambda: _attempts(stack, busy))
    assert answered["status_code"] == 429
    hold = stack.conn.execute(
        "select held_until, reason from supaqueue.queue_hold where queue = %s", (q,)
    ).fetchone()
    assert hold is not None and hold["reason"] == f"HTTP 429 with Retry-After: 2 s (job {busy})"
    assert hold["held_until"] >= answered["ended_at"] + timedelta(seconds=2)
    # enqueued during the hold: not called until it is over, then without anyone's help
    others = [_enqueue(stack, q, {"n": i}) for i in range(3)]
    _wait("every job done", lambda: all(_status(stack, j) == "success" for j in [busy, *others]))
    later = _attempts(stack, busy)[1:] + [a for j in others for a in _attempts(stack, j)]
    assert len(later) == 4  # the retry and the three others, one call each
    assert min(_arrived(stack, j) for j in [busy, *others]) >= hold["held_until"]
    assert stack.conn.execute(
        "select count(*) as n from supaqueue.queue_hold where queue = %s and held_until > now()",
        (q,),
    ).fetchone() == {"n": 0}


def test_by_default_only_the_answered_job_waits(stack: Stack) -> None:
    q = _queue(stack)  # hold_on_retry_after: job, as every queue before 0027
    # a long Retry-After: the others are surely called while it still waits
    busy = _enqueue(stack, q, {"busy_attempts": 1, "retry_after": 600})
    [answered] = _wait("the 429", lambda: _attempts(stack, busy))
    assert answered["status_code"] == 429
    others = [_enqueue(stack, q, {"n": i}) for i in range(3)]
    _wait("the others done", lambda: all(_status(stack, j) == "success" for j in others))
    assert _status(stack, busy) == "pending" and len(_attempts(stack, busy)) == 1
    assert stack.conn.execute(
        "select count(*) as n from supaqueue.queue_hold where queue = %s", (q,)
    ).fetchone() == {"n": 0}
    stack.conn.execute("select supaqueue.cancel_job(%s)", (busy,))


def _keyed(s: Stack, queue: str, key: str, payload: dict[str, Any]) -> str:
    row = s.conn.execute(
        "insert into supaqueue.job (queue, key, payload) values (%s, %s, %s)"
        " returning id::text as id",
        (queue, key, json.dumps(payload)),
    ).fetchone()
    assert row is not None
    return str(row["id"])


def test_a_key_hold_stops_that_keys_calls_while_other_keys_run(stack: Stack) -> None:
    q = _queue(stack, hold_on_retry_after="key")
    stack.conn.execute("select supaqueue.set_worker_count(%s, 2)", (q,))
    busy = _keyed(stack, q, "a", {"busy_attempts": 1, "retry_after": 10})
    [answered] = _wait("the 429", lambda: _attempts(stack, busy))
    assert answered["status_code"] == 429
    key = stack.conn.execute(
        "select held_until, hold_reason from supaqueue.queue_key where queue = %s and key = 'a'",
        (q,),
    ).fetchone()
    assert key is not None and key["hold_reason"] == f"HTTP 429 with Retry-After: 10 s (job {busy})"
    a_jobs = [_keyed(stack, q, "a", {"n": i}) for i in range(2)]
    b_jobs = [_keyed(stack, q, "b", {"n": i}) for i in range(3)]
    # b is served while a waits (the queue is not held)
    _wait("b's jobs done", lambda: all(_status(stack, j) == "success" for j in b_jobs))
    assert stack.conn.execute(
        "select count(*) as n from supaqueue.queue_hold where queue = %s", (q,)
    ).fetchone() == {"n": 0}
    # a's calls resume by themselves, each dispatched after the key's hold ended
    _wait("a's jobs done", lambda: all(_status(stack, j) == "success" for j in [busy, *a_jobs]))
    later = _attempts(stack, busy)[1:] + [a for j in a_jobs for a in _attempts(stack, j)]
    assert len(later) == 3
    assert min(_arrived(stack, j) for j in [busy, *a_jobs]) >= key["held_until"]
