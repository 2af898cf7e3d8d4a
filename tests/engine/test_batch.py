"""Batch delivery in SQL (issue #26 item 5, sql/0028): a batched queue's dispatch hands up to
`batch_size` leases to one pg_net request (`{"batch": {"id"}}`), `claim_batch` claims them in one
statement, `report_batch` ends each as `end_current_job` would. Each job keeps its own attempt,
retry, result and worker; a batch of N takes N workers and N tokens."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from harness.engine import Engine, Request

TIMEOUT_MS = 2000
WALL_CLOCK_MS = 5000


def _queue(engine: Engine, workers: int, batch_size: int, **columns: Any) -> str:
    columns.setdefault("timeout_ms", TIMEOUT_MS)
    columns.setdefault("lease_grace_ms", 3000)
    columns.setdefault("backoff_base_ms", 0)
    columns.setdefault("backoff_jitter", 0)
    return engine.queue(
        workers=workers, batch_size=batch_size, target_wall_clock_ms=WALL_CLOCK_MS, **columns
    )


def _insert(engine: Engine, queue: str, n: int) -> list[str]:
    """n jobs in one statement (one dispatch, as an enqueue of many)."""
    rows = engine.conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select %s, jsonb_build_object('n', i) from generate_series(1, %s) i returning id::text",
        (queue, n),
    ).fetchall()
    return [str(r["id"]) for r in rows]


def _leases(engine: Engine, batch: str) -> list[dict[str, Any]]:
    return list(
        engine.conn.execute(
            "select id::text, job::text, worker::text, request_id, claimed_at"
            " from supaqueue.current_job where batch = %s order by started_at, id",
            (batch,),
        ).fetchall()
    )


def _claim(engine: Engine, batch: str) -> list[dict[str, Any]]:
    jobs = engine.one("select supaqueue.claim_batch(%s)", (batch,))["jobs"]
    return list(jobs)


def _report(engine: Engine, outcomes: list[dict[str, Any]]) -> list[bool]:
    return list(engine.one("select supaqueue.report_batch(%s)", (Jsonb(outcomes),)))


def _ok(lease: str, result: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"current_job": lease, "is_complete": True, "is_successful": True}
    out.update(status_code=200, duration_ms=5)
    if result is not None:
        out["result"] = result
    return out


def _failed(lease: str, status: int | None, error: str, **more: Any) -> dict[str, Any]:
    return {
        "current_job": lease,
        "is_complete": True,
        "is_successful": False,
        "status_code": status,
        "error": error,
        **more,
    }


def _batch_of(req: Request) -> str:
    assert set(req.body) == {"batch"}, req.body
    return str(req.body["batch"]["id"])


def _workers(engine: Engine, queue: str) -> list[dict[str, Any]]:
    return list(
        engine.conn.execute(
            "select locked, held_until from supaqueue.worker where queue = %s order by id",
            (queue,),
        ).fetchall()
    )


def test_batch_size_one_dispatches_as_before(engine: Engine) -> None:
    q = _queue(engine, workers=2, batch_size=1)
    jobs = _insert(engine, q, 2)
    reqs = engine.new_requests()
    # one request per job, with the lease's references only, exactly as before 0028
    assert len(reqs) == 2
    assert {r.job for r in reqs} == set(jobs)
    for r in reqs:
        assert set(r.body) == {"current_job"}
        assert set(r.body["current_job"]) == {"id", "job", "attempt"}
    assert engine.one("select count(*) from supaqueue.current_job where batch is not null") == 0


def test_one_request_carries_a_batch_of_leases_claimed_in_one_statement(engine: Engine) -> None:
    q = _queue(engine, workers=8, batch_size=3)
    jobs = _insert(engine, q, 7)
    reqs = engine.new_requests()
    # 7 jobs, 8 workers, batches of 3: three calls (3 + 3 + 1), a tiny body each
    assert len(reqs) == 3
    sizes = sorted(len(_leases(engine, _batch_of(r))) for r in reqs)
    assert sizes == [1, 3, 3]
    for r in reqs:
        assert len(json.dumps(r.body)) < 100
        leases = _leases(engine, _batch_of(r))
        assert _batch_of(r) in {lease["id"] for lease in leases}  # its first lease's id
        assert {lease["request_id"] for lease in leases} == {r.id}
        assert len({lease["worker"] for lease in leases}) == len(leases)  # a worker per job
    assert sum(w["locked"] for w in _workers(engine, q)) == 7

    batch = _batch_of(reqs[0])
    claimed = _claim(engine, batch)
    assert len(claimed) == len(_leases(engine, batch))
    assert {c["job"]["id"] for c in claimed} <= set(jobs)
    for c in claimed:
        assert c["current_job"]["claimed_at"] is not None
        assert c["current_job"]["deadline_in_ms"] <= TIMEOUT_MS
        assert json.loads(c["job"]["body"]) == c["job"]["payload"]
    assert _claim(engine, batch) == []  # a second delivery claims nothing


def test_each_job_of_a_batch_keeps_its_own_outcome(engine: Engine) -> None:
    q = _queue(engine, workers=4, batch_size=4, max_attempts=3)
    _insert(engine, q, 4)
    [req] = engine.new_requests()
    claimed = _claim(engine, _batch_of(req))
    lease = {c["job"]["payload"]["n"]: c["current_job"]["id"] for c in claimed}
    job = {c["job"]["payload"]["n"]: c["job"]["id"] for c in claimed}

    current = _report(
        engine,
        [
            _ok(lease[1], {"done": 1, "big": 123456789012345678901234567890}),
            _failed(lease[2], 503, "busy", retry_after_seconds=30),
            _failed(lease[3], 422, "payload.to must be a string"),
            _failed(lease[4], None, "missing from the batch answer (3 outcomes for 4 jobs)"),
        ],
    )
    assert current == [True, True, True, True]

    one = engine.job(job[1])
    assert (one["status"], one["attempts"]) == ("success", 1)
    assert one["result"] == {"done": 1, "big": 123456789012345678901234567890}
    two = engine.job(job[2])
    assert (two["status"], two["last_status_code"], two["attempts"]) == ("pending", 503, 1)
    assert two["delay_s"] == pytest.approx(30, abs=0.5)  # its own Retry-After
    three = engine.job(job[3])
    assert (three["status"], three["last_status_code"]) == ("failed", 422)  # non-retryable
    four = engine.job(job[4])
    assert "missing from the batch answer" in four["last_error"]
    attempts = engine.conn.execute(
        "select count(*) as n from supaqueue.job_attempt where queue = %s", (q,)
    ).fetchone()
    assert attempts == {"n": 4}  # one attempt each

    # the missing job was due again at once (no backoff): the report's dispatch sent its retry
    assert (four["status"], four["attempts"]) == ("in_progress", 2)
    [retry] = engine.new_requests()
    assert [lease["job"] for lease in _leases(engine, _batch_of(retry))] == [job[4]]
    # a report of leases no longer current changes nothing
    assert _report(engine, [_ok(lease[1])]) == [False]


def test_a_batch_counts_against_workers_and_rate(engine: Engine) -> None:
    q = _queue(engine, workers=3, batch_size=5)
    _insert(engine, q, 7)
    [req] = engine.new_requests()
    assert len(_leases(engine, _batch_of(req))) == 3  # three free workers, three jobs
    assert engine.in_flight(q) == 3

    rated = _queue(engine, workers=10, batch_size=5, rate_limit_per_second=0.001,
                   rate_limit_burst=2)  # fmt: skip
    _insert(engine, rated, 7)
    [req] = engine.new_requests()
    assert len(_leases(engine, _batch_of(req))) == 2  # two tokens, two jobs
    assert engine.in_flight(rated) == 2
    assert engine.one("select tokens from supaqueue.queue_bucket where queue = %s", (rated,)) < 1


def test_a_timed_out_batch_holds_all_its_workers(engine: Engine) -> None:
    q = _queue(engine, workers=3, batch_size=3)
    _insert(engine, q, 6)
    [req] = engine.new_requests()
    claimed = _claim(engine, _batch_of(req))
    abandoned = [
        {**_failed(c["current_job"]["id"], None, f"Timeout of {TIMEOUT_MS} ms reached"),
         "is_complete": False}
        for c in claimed
    ]  # fmt: skip
    assert _report(engine, abandoned) == [True, True, True]
    # every attempt failed and is retried, but none of the 3 workers is free: the call may still
    # run at the target
    assert all(engine.status(c["job"]["id"]) == "pending" for c in claimed)
    assert all(w["locked"] and w["held_until"] is not None for w in _workers(engine, q))
    assert engine.new_requests() == []
    assert engine.tick()["dispatched"] == 0
    engine.conn.execute(
        "update supaqueue.worker set held_until = now() - interval '1 second' where queue = %s",
        (q,),
    )
    assert engine.tick()["dispatched"] == 3
    [again] = engine.new_requests()
    assert len(_leases(engine, _batch_of(again))) == 3


def test_a_batch_whose_dispatcher_is_lost_expires_and_loses_nothing(engine: Engine) -> None:
    q = _queue(engine, workers=4, batch_size=4)
    jobs = _insert(engine, q, 4)
    [req] = engine.new_requests()
    claimed = _claim(engine, _batch_of(req))
    assert len(claimed) == 4
    # the dispatcher dies after the claim: no report ever comes
    engine.conn.execute("update supaqueue.current_job set lease_expires_at = now() - interval '1s'")
    assert engine.tick()["expired"] == 4
    for job_id in jobs:
        j = engine.job(job_id)
        assert (j["status"], j["attempts"]) == ("pending", 1)
        assert "lease expired" in j["last_error"]
    # claimed leases: their call may still run, so the workers are held
    assert all(w["locked"] and w["held_until"] is not None for w in _workers(engine, q))
    # a late report from the lost dispatcher changes nothing
    assert _report(engine, [_ok(c["current_job"]["id"]) for c in claimed]) == [False] * 4


def test_a_partial_batch_waits_up_to_its_max_wait(engine: Engine) -> None:
    q = _queue(engine, workers=4, batch_size=4, batch_max_wait_ms=60_000)
    jobs = _insert(engine, q, 2)
    assert engine.new_requests() == []  # two of four: wait for more
    assert engine.tick()["dispatched"] == 0
    more = _insert(engine, q, 2)
    [full] = engine.new_requests()  # full: at once
    assert {lease["job"] for lease in _leases(engine, _batch_of(full))} == set(jobs + more)

    late = _insert(engine, q, 1)
    assert engine.new_requests() == []
    # nothing is free anyway; once workers are, the lone job still waits until it is old enough
    claimed = _claim(engine, _batch_of(full))
    _report(engine, [_ok(c["current_job"]["id"]) for c in claimed])
    assert engine.new_requests() == []
    engine.conn.execute(
        "update supaqueue.job set run_at = now() - interval '61 seconds' where id = %s", late
    )
    assert engine.tick()["dispatched"] == 1
    [lone] = engine.new_requests()
    assert [lease["job"] for lease in _leases(engine, _batch_of(lone))] == late


def test_a_job_of_a_batch_that_cannot_run_is_refused_alone(engine: Engine) -> None:
    q = _queue(engine, workers=2, batch_size=2)
    jobs = _insert(engine, q, 2)
    [req] = engine.new_requests()
    # a payload grown past the limit in place since the enqueue: the claim refuses that job only
    engine.conn.execute(
        "update supaqueue.job set payload = jsonb_build_object('pad', repeat('x', 1100000))"
        " where id = %s",
        (jobs[0],),
    )
    claimed = _claim(engine, _batch_of(req))
    refused = [c for c in claimed if "refused" in c]
    assert len(claimed) == 2 and len(refused) == 1
    assert refused[0]["current_job"]["job"] == jobs[0]
    assert "over the limit" in refused[0]["refused"]
    assert engine.status(jobs[0]) == "failed"
    [ok] = [c for c in claimed if "refused" not in c]
    assert ok["job"]["id"] == jobs[1]
    assert _report(engine, [_ok(ok["current_job"]["id"])]) == [True]
    assert engine.status(jobs[1]) == "success"


def test_a_chain_ends_when_its_queue_starts_batching(engine: Engine) -> None:
    """A single-job chain running when `batch_size` is raised hands no more single jobs to a
    target that now expects arrays: its worker is freed and the next jobs go as a batch."""
    q = _queue(engine, workers=1, batch_size=1)
    _insert(engine, q, 3)
    [req] = engine.new_requests()
    assert engine.claim(req.current_job, req.attempt) is not None
    engine.conn.execute("update supaqueue.queue set batch_size = 2 where id = %s", (q,))
    reported = engine.report_and_claim(req.current_job, chain_jobs=1, elapsed_ms=10)
    assert reported == {"current": True, "next": None}
    [batch] = engine.new_requests()
    assert len(_leases(engine, _batch_of(batch))) == 1  # one worker: a batch of one


@pytest.mark.parametrize(
    ("columns", "constraint"),
    [
        ({"batch_size": 0}, "queue_batch_size_range"),
        ({"batch_size": 101}, "queue_batch_size_range"),
        ({"batch_size": 2, "method": "GET"}, "queue_batch_method"),
        ({"batch_max_wait_ms": -1}, "queue_batch_max_wait_range"),
        ({"batch_max_wait_ms": 300_001}, "queue_batch_max_wait_range"),
    ],
)
def test_batch_settings_are_checked(
    engine: Engine, columns: dict[str, Any], constraint: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        engine.queue(workers=0, **columns)


def test_pulumi_preview_names_the_batch_field_as_sql_refuses_it(engine: Engine) -> None:
    """spec.validate_queue (what `pulumi preview` says) agrees with the constraint
    queue_batch_method: a batch needs a method with a body."""
    from supaqueue.providers.queue.spec import validate_queue

    base = {"name": "q-batch", "edge_function_name": "fn"}
    [problem] = validate_queue({**base, "method": "GET", "batch_size": 2}, "queue")
    assert problem.field == "queue.batch_size" and "'GET'" in problem.reason
    assert validate_queue({**base, "method": "PATCH", "batch_size": 2}, "queue") == []
    assert validate_queue({**base, "method": "DELETE", "batch_size": 1}, "queue") == []
    with pytest.raises(psycopg.errors.CheckViolation, match="queue_batch_method"):
        engine.queue(workers=0, method="DELETE", batch_size=2)
    engine.queue(workers=0, method="PATCH", batch_size=2)


# -- batches and keys (sql/0026 + 0028) -----------------------------------------------------------


def _insert_keyed(engine: Engine, queue: str, keys: Sequence[str | None]) -> list[str]:
    """One job per key (None: no key), in one statement."""
    rows = engine.conn.execute(
        "insert into supaqueue.job (queue, payload, key)"
        " select %s, jsonb_build_object('n', u.i), u.k"
        " from unnest(%s::text[]) with ordinality u(k, i) returning id::text",
        (queue, list(keys)),
    ).fetchall()
    return [str(r["id"]) for r in rows]


def _check_key_limits(engine: Engine, q: str, workers: int, per_key: int) -> None:
    """Busy workers (running or held) per key, and leases per key inside each batch."""
    busy = engine.conn.execute(
        "select key, count(*)::int as n from supaqueue.worker"
        " where queue = %s and locked group by key",
        (q,),
    ).fetchall()
    assert sum(r["n"] for r in busy) <= workers, busy
    assert all(r["key"] is None or r["n"] <= per_key for r in busy), busy
    in_batch = engine.conn.execute(
        "select c.batch, j.key, count(*)::int as n from supaqueue.current_job c"
        " join supaqueue.job j on j.id = c.job"
        " where j.queue = %s and j.key is not null group by 1, 2",
        (q,),
    ).fetchall()
    assert all(r["n"] <= per_key for r in in_batch), in_batch
    # every lease's worker counts against its job's key
    assert (
        engine.one(
            "select count(*) from supaqueue.current_job c join supaqueue.job j on j.id = c.job"
            " join supaqueue.worker w on w.id = c.worker"
            " where j.queue = %s and w.key is distinct from j.key",
            (q,),
        )
        == 0
    )


def _release_holds(engine: Engine, q: str) -> None:
    engine.conn.execute(
        "update supaqueue.worker set held_until = now() - interval '1 millisecond'"
        " where queue = %s and held_until is not null",
        (q,),
    )
    # retries wait for no backoff here, but their run_at may be a moment ahead
    engine.conn.execute(
        "update supaqueue.job set run_at = now() - interval '1 millisecond'"
        " where queue = %s and status = 'pending' and run_at > now()",
        (q,),
    )
    engine.tick()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_per_key_limits_hold_inside_and_across_batches_and_every_job_ends(
    engine: Engine, seed: int
) -> None:
    """A batch is filled by the keyed selection, so workers_per_key holds inside a batch and
    across batches; a batch's workers take their jobs' keys and give them back on report, on
    lease expiry and when a timed-out batch's held workers are released."""
    rnd = random.Random(seed)
    workers, per_key = 6, 2
    q = _queue(engine, workers=workers, batch_size=4, workers_per_key=per_key, max_attempts=3)
    keys: list[str | None] = ["A"] * 10 + ["B"] * 6 + ["C"] + ["D"] * 3 + [None] * 2
    rnd.shuffle(keys)
    jobs = _insert_keyed(engine, q, keys)
    _check_key_limits(engine, q, workers, per_key)
    first = [_batch_of(r) for r in engine.new_requests()]
    assert first  # the enqueue dispatched batches at once (no max wait)

    for _ in range(300):
        engine.new_requests()
        batches = [
            r["batch"]
            for r in engine.conn.execute(
                "select distinct c.batch::text as batch from supaqueue.current_job c"
                " join supaqueue.job j on j.id = c.job where j.queue = %s order by 1",
                (q,),
            ).fetchall()
        ]
        if not batches:
            _release_holds(engine, q)
            _check_key_limits(engine, q, workers, per_key)
            if (
                engine.one(
                    "select count(*) from supaqueue.current_job c join supaqueue.job j"
                    " on j.id = c.job where j.queue = %s",
                    (q,),
                )
                == 0
            ):
                break
            continue
        batch = rnd.choice(batches)
        claimed = [c for c in _claim(engine, batch) if "refused" not in c]
        r = rnd.random()
        if r < 0.15:  # the call timed out: every worker of the batch is held with its key
            _report(engine, [
                {**_failed(c["current_job"]["id"], None, "timed out"), "is_complete": False}
                for c in claimed
            ])  # fmt: skip
        elif r < 0.25:  # the dispatcher was lost after the claim: the leases expire
            engine.conn.execute(
                "update supaqueue.current_job set lease_expires_at = now() - interval '1s'"
                " where batch = %s",
                (batch,),
            )
            engine.tick()
        elif r < 0.35:
            _release_holds(engine, q)
        else:
            _report(engine, [
                _ok(c["current_job"]["id"]) if rnd.random() < 0.8
                else _failed(c["current_job"]["id"], 500, "boom")
                for c in claimed
            ])  # fmt: skip
        _check_key_limits(engine, q, workers, per_key)

    states = engine.conn.execute(
        "select status::text, count(*)::int as n from supaqueue.job where queue = %s group by 1",
        (q,),
    ).fetchall()
    assert {s["status"] for s in states} <= {"success", "failed"}, states
    assert sum(s["n"] for s in states) == len(jobs)
    assert (
        engine.one(
            "select count(*) from supaqueue.worker"
            " where queue = %s and (locked or key is not null)",
            (q,),
        )
        == 0
    )


def test_a_batch_takes_no_more_of_a_key_than_workers_per_key(engine: Engine) -> None:
    q = _queue(engine, workers=8, batch_size=8, workers_per_key=2)
    _insert_keyed(engine, q, ["A"] * 6 + ["B"] * 6)
    [req] = engine.new_requests()
    leases = _leases(engine, _batch_of(req))
    assert len(leases) == 4  # two of A, two of B: the rest wait for their keys' workers
    keys = sorted(
        engine.one("select key from supaqueue.job where id = %s", (lease["job"],))
        for lease in leases
    )
    assert keys == ["A", "A", "B", "B"]
    # one job of A ends: the next batch takes one more A (its key at 1 of 2), none of B
    claimed = _claim(engine, _batch_of(req))
    a_done = next(c for c in claimed if engine.one(
        "select key from supaqueue.job where id = %s", (c["job"]["id"],)) == "A")  # fmt: skip
    _report(engine, [_ok(a_done["current_job"]["id"])])
    [nxt] = engine.new_requests()
    [lease] = _leases(engine, _batch_of(nxt))
    assert engine.one("select key from supaqueue.job where id = %s", (lease["job"],)) == "A"


def test_a_partial_batch_of_keyed_jobs_waits_up_to_its_max_wait(engine: Engine) -> None:
    """The max wait counts keyed ready jobs (their keys' turns), not only jobs without a key."""
    q = _queue(engine, workers=4, batch_size=4, batch_max_wait_ms=60_000, workers_per_key=2)
    jobs = _insert_keyed(engine, q, ["A", "B"])
    assert engine.new_requests() == []  # two of four: wait for more
    assert engine.tick()["dispatched"] == 0
    more = _insert_keyed(engine, q, ["C", "A"])
    [full] = engine.new_requests()  # full: at once
    assert {lease["job"] for lease in _leases(engine, _batch_of(full))} == set(jobs + more)

    claimed = _claim(engine, _batch_of(full))
    _report(engine, [_ok(c["current_job"]["id"]) for c in claimed])
    late = _insert_keyed(engine, q, ["B"])
    assert engine.new_requests() == []  # alone: waits while younger than the max wait
    assert engine.tick()["dispatched"] == 0
    engine.conn.execute(
        "update supaqueue.job set run_at = now() - interval '61 seconds' where id = %s", late
    )
    assert engine.tick()["dispatched"] == 1
    [lone] = engine.new_requests()
    assert [lease["job"] for lease in _leases(engine, _batch_of(lone))] == late
