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
from tests.engine.test_operator_api import in_thread, joined, wait_until_blocked

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
    # a late report from the lost dispatcher changes nothing of the jobs (0029: but its calls
    # are over, so it frees their workers, which take the retries at once)
    assert _report(engine, [_ok(c["current_job"]["id"]) for c in claimed]) == [False] * 4
    assert all(engine.job(j)["attempts"] == 2 and engine.job(j)["result"] is None for j in jobs)
    assert all(w["locked"] and w["held_until"] is None for w in _workers(engine, q))
    [retry] = engine.new_requests()
    assert len(_leases(engine, _batch_of(retry))) == 4


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
    assert leases_off_their_key(engine, q) == 0


def leases_off_their_key(engine: Engine, q: str) -> int:
    """Leases of queue q whose worker does not carry their job's key."""
    return int(
        engine.one(
            "select count(*) from supaqueue.current_job c join supaqueue.job j on j.id = c.job"
            " join supaqueue.worker w on w.id = c.worker"
            " where j.queue = %s and w.key is distinct from j.key",
            (q,),
        )
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


# -- set-based batch paths (issue 26 item 5): the same outcomes as one lease at a time ----------


def _by_n(engine: Engine, claimed: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(c["job"]["payload"]["n"]): c for c in claimed}


def _end_one(engine: Engine, o: dict[str, Any]) -> bool:
    """One outcome through end_current_job (the per-lease path), as a single job's report."""
    return bool(engine.one(
        "select supaqueue.end_current_job(%s::uuid, %s, %s, %s::integer, %s::text, %s::text,"
        " %s::numeric, %s::jsonb, %s::integer)",
        (o["current_job"], o.get("is_complete"), o.get("is_successful"), o.get("status_code"),
         o.get("response_excerpt"), o.get("error"), o.get("retry_after_seconds"),
         Jsonb(o["result"]) if "result" in o else None, o.get("duration_ms")),
    ))  # fmt: skip


def _outcome_of_n(n: int, lease: str) -> dict[str, Any]:
    match n:
        case 1:
            return {**_ok(lease, {"a": 1, "big": 123456789012345678901234567890}),
                    "response_excerpt": '{"a":1}'}  # fmt: skip
        case 2:
            return _ok(lease)
        case 3:
            return {**_ok(lease, "kept as text"), "error": "result kept as text: not JSON"}
        case 4:
            # a duration no measured one can equal (7 ms did: a cancel measured as 7 ms)
            return _failed(lease, 500, "boom", response_excerpt="boom body", duration_ms=7_777_777)
        case 5:
            return _failed(lease, 422, "payload.to must be a string")
        case 6:
            return _failed(lease, 503, "busy", retry_after_seconds=120)
        case 7:
            return {**_failed(lease, None, "timed out"), "is_complete": False}
        case 8 | 9:  # 8: its lease expired first, 9: its job was cancelled first: not current
            return _ok(lease, {"late": n})
        case _:  # no is_complete: the call may still run (held), as for end_current_job
            return {"current_job": lease, "status_code": 200}


# a lease's expiry time in an error: not the same in two queues
_NO_TIME = "regexp_replace({0}, '\\d{{4}}-\\d\\d-\\d\\d [0-9:.+]+', '<time>') as error"


def _state(engine: Engine, q: str) -> dict[str, Any]:
    """Everything the outcomes wrote, by job payload n (ids and times left out)."""
    jobs = engine.conn.execute(
        "select (payload ->> 'n')::int as n, status::text, attempts, result, last_status_code,"
        f" {_NO_TIME.format('last_error')}, last_response_excerpt,"
        " finished_at is not null as finished,"
        " case when status = 'pending'"
        "   then round(extract(epoch from run_at - updated_at)::numeric) end as delay_s"
        " from supaqueue.job where queue = %s order by 1",
        (q,),
    ).fetchall()
    attempts = engine.conn.execute(
        "select (j.payload ->> 'n')::int as n, a.attempt, a.outcome, a.status_code,"
        f" {_NO_TIME.format('a.error')},"
        " a.response_excerpt, a.duration_ms = 7777777 as given_duration,"
        " a.worker is not null as worker"
        " from supaqueue.job_attempt a join supaqueue.job j on j.id = a.job"
        " where a.queue = %s order by 1, a.id",
        (q,),
    ).fetchall()
    workers = engine.one(
        "select jsonb_build_object('n', count(*), 'locked', count(*) filter (where locked),"
        " 'held', count(*) filter (where held_until is not null),"
        " 'keyed', count(*) filter (where key is not null))"
        " from supaqueue.worker where queue = %s",
        (q,),
    )
    return {"jobs": jobs, "attempts": attempts, "workers": workers,
            "in_flight": engine.in_flight(q)}  # fmt: skip


def test_a_batch_report_ends_every_lease_as_its_own_report_would(engine: Engine) -> None:
    """report_batch (successes set-based, the rest per lease) and end_current_job lease by lease
    leave the same jobs, attempt rows, workers and answers: successes with and without results
    and notes, a retried and a final failure, a Retry-After, a call that may still run, a lease
    that expired and a job cancelled before the report, an outcome without is_complete."""
    # retries a minute away, held workers for ten: nothing moves on its own while the test runs
    columns = {
        "max_attempts": 2,
        "backoff_base_ms": 60_000,
        "backoff_jitter": 0,
        "timeout_ms": TIMEOUT_MS,
        "lease_grace_ms": 3000,
        "target_wall_clock_ms": 600_000,
    }
    batched, single = (engine.queue(workers=10, batch_size=10, **columns) for _ in range(2))
    answers = {}
    for q in (batched, single):
        _insert(engine, q, 10)
        [req] = engine.new_requests()
        claimed = _by_n(engine, _claim(engine, _batch_of(req)))
        assert sorted(claimed) == list(range(1, 11))
        engine.expire_lease(claimed[8]["current_job"]["id"])
        assert engine.tick()["expired"] == 1
        assert engine.one("select supaqueue.cancel_job(%s)", (claimed[9]["job"]["id"],))
        outcomes = [_outcome_of_n(n, claimed[n]["current_job"]["id"]) for n in range(1, 11)]
        if q == batched:
            answers[q] = _report(engine, outcomes)
        else:
            answers[q] = [_end_one(engine, o) for o in outcomes]
    assert answers[batched] == [True] * 7 + [False, False, True]
    assert answers[single] == answers[batched]
    state, alone = _state(engine, batched), _state(engine, single)
    for part in ("jobs", "attempts"):
        for row, one in zip(state[part], alone[part], strict=True):
            assert row == one
    assert state == alone
    assert [j["status"] for j in state["jobs"]] == [
        "success", "success", "success", "pending", "failed", "pending", "pending", "pending",
        "cancelled", "pending",
    ]  # fmt: skip
    assert state["jobs"][0]["result"] == {"a": 1, "big": 123456789012345678901234567890}
    delays = [j["delay_s"] for j in state["jobs"] if j["status"] == "pending"]
    assert delays == [60, 120, 60, 60, 60]  # backoff; 6: its Retry-After
    # 7 and 10 held (the call may still run); 8 and 9 held by the expiry and the cancel, then
    # freed by their late answers (0029)
    assert state["workers"] == {"n": 10, "locked": 2, "held": 2, "keyed": 0}


def test_a_report_naming_a_lease_twice_ends_it_once(engine: Engine) -> None:
    q = _queue(engine, workers=2, batch_size=2)
    _insert(engine, q, 2)
    [req] = engine.new_requests()
    first, second = (c["current_job"]["id"] for c in _claim(engine, _batch_of(req)))
    assert _report(engine, [_ok(first), _failed(first, 500, "again"), _ok(second)]) == [
        True, False, True,
    ]  # fmt: skip
    assert engine.one("select count(*) from supaqueue.job_attempt where queue = %s", (q,)) == 2
    assert (
        engine.one(
            "select count(*) from supaqueue.job where queue = %s and status = 'success'", (q,)
        )
        == 2
    )


def test_a_batch_takes_ready_jobs_by_priority_then_run_at_for_its_free_workers(
    engine: Engine,
) -> None:
    q = _queue(engine, workers=4, batch_size=10)
    rows = engine.conn.execute(
        "insert into supaqueue.job (queue, payload, priority, run_at)"
        " select %s, jsonb_build_object('n', i), p, now() + d"
        " from (values (1, 0, interval '0'), (2, 0, interval '0'), (3, 5, interval '-2 s'),"
        "              (4, 5, interval '1 hour'), (5, 5, interval '-1 s'), (6, 1, interval '0'),"
        "              (7, 1, interval '-1 s'), (8, 9, interval '1 hour')) v(i, p, d)"
        " returning (payload ->> 'n')::int as n, id::text",
        (q,),
    ).fetchall()
    ids = {r["n"]: r["id"] for r in rows}
    [req] = engine.new_requests()
    leases = _leases(engine, _batch_of(req))
    # priority 5's two due jobs, then priority 1's: four workers, four jobs; delayed ones never
    assert {lease["job"] for lease in leases} == {ids[3], ids[5], ids[6], ids[7]}
    assert engine.in_flight(q) == 4
    claimed = _claim(engine, _batch_of(req))
    _report(engine, [_ok(c["current_job"]["id"]) for c in claimed])
    [nxt] = engine.new_requests()
    assert {lease["job"] for lease in _leases(engine, _batch_of(nxt))} == {ids[1], ids[2]}


def test_dependents_of_jobs_of_one_batch_are_released_once_each_dependency_succeeded(
    engine: Engine,
) -> None:
    """A job that depends on two jobs of the same batch becomes ready when the batch's report
    ends both (one decrement each), in its own queue too."""
    q = _queue(engine, workers=2, batch_size=2)
    other = _queue(engine, workers=1, batch_size=1)
    a, b = _insert(engine, q, 2)
    both = engine.enqueue(other, {"step": "both"}, _depends_on=[a, b])
    one = engine.enqueue(q, {"step": "one"}, _depends_on=[a])
    assert engine.job(both)["pending_dependencies"] == 2
    [req] = engine.new_requests()
    claimed = _claim(engine, _batch_of(req))
    assert _report(engine, [_ok(c["current_job"]["id"], {"r": 1}) for c in claimed]) == [True] * 2
    for job in (both, one):
        j = engine.job(job)
        assert (j["pending_dependencies"], j["status"], j["attempts"]) == (0, "in_progress", 1)
    reqs = engine.new_requests()
    assert [r.job for r in reqs if "current_job" in r.body] == [both]
    [step] = [r for r in reqs if "batch" in r.body]
    assert [lease["job"] for lease in _leases(engine, _batch_of(step))] == [one]


def test_a_worker_count_lowered_during_a_batch_never_lets_more_calls_run(engine: Engine) -> None:
    q = _queue(engine, workers=4, batch_size=4)
    _insert(engine, q, 12)
    [req] = engine.new_requests()
    assert engine.in_flight(q) == 4
    engine.conn.execute("select supaqueue.set_worker_count(%s, 2)", (q,))
    claimed = _claim(engine, _batch_of(req))
    assert _report(engine, [_ok(c["current_job"]["id"]) for c in claimed]) == [True] * 4
    # the two retiring workers went with their jobs; the two left took the next two jobs
    assert engine.one("select count(*) from supaqueue.worker where queue = %s", (q,)) == 2
    [nxt] = engine.new_requests()
    assert len(_leases(engine, _batch_of(nxt))) == 2 and engine.in_flight(q) == 2
    engine.conn.execute("select supaqueue.set_worker_count(%s, 5)", (q,))
    [more] = engine.new_requests()  # the three new workers took three more at once
    assert len(_leases(engine, _batch_of(more))) == 3 and engine.in_flight(q) == 5


def test_jobs_without_a_key_and_keyed_ones_share_a_queue_within_every_limit(
    engine: Engine,
) -> None:
    """Jobs without a key go set-based while no key is due, keyed ones job by job; a batch's
    workers count against their keys either way, and every job ends."""
    workers, per_key = 4, 1
    q = _queue(engine, workers=workers, batch_size=4, workers_per_key=per_key)
    jobs = _insert(engine, q, 6)
    [first] = engine.new_requests()
    assert len(_leases(engine, _batch_of(first))) == 4
    jobs += _insert_keyed(engine, q, ["A", "A", "A", "B", None])
    _check_key_limits(engine, q, workers, per_key)
    for _ in range(50):
        batches = [
            r["batch"]
            for r in engine.conn.execute(
                "select distinct c.batch::text as batch from supaqueue.current_job c"
                " join supaqueue.job j on j.id = c.job where j.queue = %s order by 1",
                (q,),
            ).fetchall()
        ]
        if not batches:
            break
        engine.new_requests()
        claimed = _claim(engine, batches[0])
        _report(engine, [_ok(c["current_job"]["id"]) for c in claimed])
        _check_key_limits(engine, q, workers, per_key)
    assert all(engine.status(j) == "success" for j in jobs)
    assert (
        engine.one(
            "select count(*) from supaqueue.worker"
            " where queue = %s and (locked or key is not null)",
            (q,),
        )
        == 0
    )


def test_concurrent_batch_dispatchers_never_exceed_workers_and_end_every_job_once(
    engine_dsn: str, engine: Engine
) -> None:
    """Three connections play dispatchers at once (claim a batch, report it; each report
    dispatches set-based) while a fourth ticks: never more leases than workers, no job leased
    twice, no error, and every job ends after exactly one attempt. Each batch is claimed by one
    of them only: a duplicate delivery's claim racing the first one's report deadlocked (the
    function retries it) until both locked a batch's leases in one order (session 9; forced in
    test_a_report_in_any_order_beside_a_claim_of_its_batch_does_not_deadlock)."""
    import threading

    workers, jobs = 12, 300
    # leases that outlive any slow run: an expiry would retry a job (a second attempt)
    q = _queue(engine, workers=workers, batch_size=4, timeout_ms=60_000, lease_grace_ms=60_000)
    _insert(engine, q, jobs)
    errors: list[str] = []
    over: list[int] = []
    stop = threading.Event()

    def dispatcher(me: int) -> None:
        try:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                for _ in range(jobs * 50):  # bounded
                    if stop.is_set():
                        return
                    row = conn.execute(
                        "select c.batch::text from supaqueue.current_job c"
                        " join supaqueue.job j on j.id = c.job"
                        " where j.queue = %s and c.claimed_at is null"
                        " and abs(hashtext(c.batch::text)) %% 3 = %s limit 1",
                        (q, me),
                    ).fetchone()
                    if row is None:
                        left = conn.execute(
                            "select count(*) from supaqueue.job"
                            " where queue = %s and status <> 'success'",
                            (q,),
                        ).fetchone()
                        if left == (0,):
                            return
                        stop.wait(0.001)  # the other dispatchers' reports dispatch this one's
                        continue
                    claimed = conn.execute("select supaqueue.claim_batch(%s)", (row[0],)).fetchone()
                    assert claimed is not None
                    leases = [c["current_job"]["id"] for c in claimed[0]["jobs"]]
                    if leases:
                        conn.execute(
                            "select supaqueue.report_batch(%s)",
                            (Jsonb([_ok(lease) for lease in leases]),),
                        )
        except Exception as exc:  # reported below
            errors.append(f"{type(exc).__name__}: {exc}")

    def watcher() -> None:
        with psycopg.connect(engine_dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("select supaqueue.tick()")
                row = conn.execute(
                    "select count(*), count(distinct c.job) from supaqueue.current_job c"
                    " join supaqueue.job j on j.id = c.job where j.queue = %s",
                    (q,),
                ).fetchone()
                if row is not None and (row[0] > workers or row[0] != row[1]):
                    over.append(row[0])
                stop.wait(0.01)

    threads = [threading.Thread(target=dispatcher, args=(i,)) for i in range(3)]
    watch = threading.Thread(target=watcher)
    watch.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    stop.set()
    watch.join(timeout=30)
    assert errors == [] and over == []
    states = engine.conn.execute(
        "select status::text, attempts, count(*)::int as n from supaqueue.job where queue = %s"
        " group by 1, 2",
        (q,),
    ).fetchall()
    assert states == [{"status": "success", "attempts": 1, "n": jobs}]
    assert engine.one("select count(*) from supaqueue.job_attempt where queue = %s", (q,)) == jobs
    assert (
        engine.one("select count(*) from supaqueue.worker where queue = %s and not locked", (q,))
        == workers
    )


def _claim_beside_report(
    engine: Engine, batch: str, held: str, outcomes: list[str]
) -> tuple[Any, Any]:
    """claim_batch and report_batch of one batch at once, in a forced interleaving: a third
    transaction holds lease `held` for a moment; the claim waits for it, then the report (its
    outcomes in the order given) waits too, then the holder lets go. In the field the claim is a
    second delivery's whose UPDATE began before the first claim committed: it locks each lease it
    visits though the first one claimed it (Postgres locks the newest version, then finds it
    claimed), while the first delivery's report ends them (a race on that commit: 2 runs of 8
    deadlocked here); holding a lease forces the same lock orders every time."""
    with psycopg.connect(engine.dsn) as holder:
        holder.execute("select 1 from supaqueue.current_job where id = %s for share", (held,))
        claim = in_thread(
            engine.dsn,
            "batch-claim",
            lambda c: c.execute("select supaqueue.claim_batch(%s)", (batch,)).fetchone(),
        )
        wait_until_blocked(engine, "batch-claim")
        report_body = Jsonb([_ok(lease) for lease in outcomes])
        report = in_thread(
            engine.dsn,
            "batch-report",
            lambda c: c.execute("select supaqueue.report_batch(%s)", (report_body,)).fetchone(),
        )
        wait_until_blocked(engine, "batch-report")
        holder.commit()
    errors: list[str] = []
    answers: list[Any] = []
    for thread, out in (claim, report):
        try:
            answers.append(joined(thread, out))
        except psycopg.Error as exc:
            errors.append(f"{exc.sqlstate}: {exc}")
    assert errors == []
    # the claim went first (it waited first): both leases claimed, then both reported
    [(claimed,), (reported,)] = answers
    return claimed, reported


def _batch_of_two(engine: Engine) -> tuple[str, list[str], str]:
    q = _queue(engine, workers=2, batch_size=2)
    jobs = _insert(engine, q, 2)
    [req] = engine.new_requests()
    return q, jobs, _batch_of(req)


def test_a_report_in_any_order_beside_a_claim_of_its_batch_does_not_deadlock(
    engine: Engine,
) -> None:
    """report_batch locked a batch's leases in its outcomes' order, claim_batch in its own: the
    outcomes in the other order than the claim's made each wait for the other (40P01). Failed
    before; both lock a batch's leases in lease id order now (dispatch.md, "Batch delivery")."""
    q, jobs, batch = _batch_of_two(engine)
    # the claim's order: the order of its answer (a claim rolled back)
    with psycopg.connect(engine.dsn) as probe:
        row = probe.execute("select supaqueue.claim_batch(%s)", (batch,)).fetchone()
        assert row is not None
        first, second = [c["current_job"]["id"] for c in row[0]["jobs"]]
        probe.rollback()
    claimed, reported = _claim_beside_report(engine, batch, first, [second, first])
    assert len(claimed["jobs"]) == 2 and reported == [True, True]
    assert [engine.status(j) for j in jobs] == ["success", "success"]
    assert engine.in_flight(q) == 0


def test_a_claim_beside_a_report_of_its_batch_locks_in_lease_id_order(engine: Engine) -> None:
    """claim_batch's UPDATE locked a batch's leases in its plan's order (here: by job id,
    descending), not the report's: with lease ids set the other way round, a report in lease
    id order deadlocked with it (40P01). Failed before; the claim locks in lease id order."""
    q, jobs, batch = _batch_of_two(engine)
    # the lease of the job with the greater id gets the greater lease id (nothing refers to it)
    for n, job in enumerate(sorted(jobs), start=1):
        engine.conn.execute(
            "update supaqueue.current_job set id = %s where job = %s",
            (f"00000000-0000-0000-0000-00000000000{n}", job),
        )
    low, high = (f"00000000-0000-0000-0000-00000000000{n}" for n in (1, 2))
    claimed, reported = _claim_beside_report(engine, batch, high, [low, high])
    assert [c["current_job"]["id"] for c in claimed["jobs"]] == [low, high]
    assert reported == [True, True]
    assert [engine.status(j) for j in jobs] == ["success", "success"]
    assert engine.in_flight(q) == 0
