"""sql/0020_operator_day.sql: dead-letter queues, the last response excerpt and the error search
over it, bulk cancel/retry on a filter, run now, retries marked in the history, job id prefixes,
and the default retention."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from harness.engine import Engine
from supaqueue.providers.queue.spec import FIELDS
from tests.engine.test_operator_api import in_thread, invariants, joined, wait_until_blocked

BOTH = ["pending", "in_progress"]


def fail_once(engine: Engine, job: str, excerpt: str = "{}", status: int = 500) -> None:
    """Answer the job's current attempt with a failure (status, excerpt)."""
    if engine.status(job) == "pending":
        engine.make_due(job)
        engine.tick()
    engine.end(
        engine.current_job_of(job),
        success=False,
        _status_code=status,
        _error=f"HTTP {status} Something",
        _response_excerpt=excerpt,
    )


def dead_letters(engine: Engine, dlq: str) -> list[dict[str, Any]]:
    return [
        r["payload"]
        for r in engine.conn.execute(
            "select payload from supaqueue.job where queue = %s order by created_at", (dlq,)
        ).fetchall()
    ]


# --- dead letters ------------------------------------------------------------------------------


def test_a_job_failing_for_good_enqueues_exactly_one_dead_letter(engine: Engine) -> None:
    dlq = engine.queue(workers=0)
    q = engine.queue(workers=1, max_attempts=2, dead_letter_queue=dlq)
    job = engine.enqueue(q, {"order": 7})
    fail_once(engine, job, '{"msg": "first"}')
    assert engine.status(job) == "pending"
    assert dead_letters(engine, dlq) == []  # a retryable failure is no dead letter
    fail_once(engine, job, '{"msg": "Requested function was not found"}', status=503)
    assert engine.status(job) == "failed"
    [letter] = dead_letters(engine, dlq)
    name = engine.one("select name from supaqueue.queue where id = %s", (q,))
    assert letter["job_id"] == job and letter["queue"] == name
    assert letter["payload"] == {"order": 7}
    # it says where it came from (0031; it said `sql` before)
    source = engine.conn.execute(
        "select source, source_name from supaqueue.job where queue = %s", (dlq,)
    ).fetchone()
    assert source == {"source": "dead_letter", "source_name": name}
    assert letter["error"] == "HTTP 503 Something" and letter["status_code"] == 503
    assert letter["response_excerpt"] == '{"msg": "Requested function was not found"}'
    assert letter["attempts"] == 2 and letter["failed_at"]
    # a dead letter is a job like any other: pending in its queue, with its queue's policy
    assert (
        engine.one(
            "select count(*) from supaqueue.job where queue = %s and status = 'pending'", (dlq,)
        )
        == 1
    )
    invariants(engine)


def test_no_dead_letter_when_a_later_attempt_succeeds(engine: Engine) -> None:
    dlq = engine.queue(workers=0)
    q = engine.queue(workers=1, max_attempts=3, dead_letter_queue=dlq)
    job = engine.enqueue(q)
    fail_once(engine, job, "oops")
    engine.make_due(job)
    engine.tick()
    engine.end(engine.current_job_of(job), _status_code=200)
    assert engine.status(job) == "success"
    assert dead_letters(engine, dlq) == []
    # the success cleared the failure's excerpt with its error
    assert engine.one(
        "select last_response_excerpt is null and last_error is null from supaqueue.job"
        " where id = %s",
        (job,),
    )


def test_exactly_one_dead_letter_under_a_concurrent_operator_retry(
    engine_dsn: str, engine: Engine
) -> None:
    """The final failure and an operator's retry of the same job race: the retry waits for the
    failure, then retries the failed job; one dead letter, whichever order."""
    dlq = engine.queue(workers=0)
    q = engine.queue(workers=1, max_attempts=1, dead_letter_queue=dlq)
    job = engine.enqueue(q)
    lease = engine.current_job_of(job)
    with psycopg.connect(engine_dsn, application_name="reporter") as reporter:
        reporter.execute(
            "select supaqueue.end_current_job(%s, true, false, 500, 'boom', 'HTTP 500 X')",
            (lease,),
        )
        thread, out = in_thread(
            engine_dsn,
            "retrier",
            lambda c: c.execute("select supaqueue.retry_job(%s)", (job,)).fetchone(),
        )
        wait_until_blocked(engine, "retrier")
        reporter.commit()
    assert joined(thread, out) == (True,)
    assert len(dead_letters(engine, dlq)) == 1
    assert engine.status(job) == "in_progress"  # retried and dispatched again
    # the bulk retry of a failed job racing nothing: no dead letter from a retry itself
    engine.end(engine.current_job_of(job), success=False, _status_code=500, _error="again")
    assert len(dead_letters(engine, dlq)) == 2  # it failed for good a second time
    assert engine.one("select supaqueue.retry_jobs(%s)", (q,)) == 1
    assert len(dead_letters(engine, dlq)) == 2
    invariants(engine)


def test_a_lease_expiry_at_the_last_attempt_is_dead_lettered_by_the_tick(engine: Engine) -> None:
    dlq = engine.queue(workers=0)
    q = engine.queue(workers=1, max_attempts=1, dead_letter_queue=dlq)
    job = engine.enqueue(q)
    engine.expire_lease(engine.current_job_of(job))
    engine.tick()
    assert engine.status(job) == "failed"
    [letter] = dead_letters(engine, dlq)
    assert "lease expired" in letter["error"] and letter["response_excerpt"] is None


def test_a_payload_too_large_for_a_dead_letter_is_left_out(engine: Engine) -> None:
    dlq = engine.queue(workers=0)
    q = engine.queue(workers=1, max_attempts=1, dead_letter_queue=dlq)
    limit = engine.one("select supaqueue.max_payload_bytes()")
    job = engine.enqueue(q, {"blob": "x" * (limit - 20)})
    fail_once(engine, job, "y" * 2000)
    assert engine.status(job) == "failed"
    [letter] = dead_letters(engine, dlq)
    assert letter["payload"] is None and job in letter["payload_omitted"]


def test_dead_letter_loops_are_refused(engine: Engine) -> None:
    a = engine.queue(workers=0, name="loop-a")
    b = engine.queue(workers=0, name="loop-b", dead_letter_queue=a)
    with pytest.raises(psycopg.errors.CheckViolation) as self_loop:
        engine.conn.execute("update supaqueue.queue set dead_letter_queue = id where id = %s", (a,))
    assert "loop-a -> loop-a" in str(self_loop.value)
    with pytest.raises(psycopg.errors.CheckViolation) as cycle:
        engine.conn.execute(
            "update supaqueue.queue set dead_letter_queue = %s where id = %s", (b, a)
        )
    assert "loop-a -> loop-b -> loop-a" in str(cycle.value)
    assert cycle.value.diag.constraint_name == "queue_dead_letter_no_loop"
    # a queue named as a dead-letter queue cannot be dropped while it is
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as named:
        engine.conn.execute("select supaqueue.drop_queue(%s, true)", (a,))
    assert named.value.diag.constraint_name == "queue_dead_letter_queue_fkey"
    # in words: which queue names it, and what to do
    assert 'queue "loop-a" is the dead-letter queue of queue(s) "loop-b"' in str(named.value)
    assert "Remove dead_letter_queue from those queues first" in (
        named.value.diag.message_hint or ""
    )
    assert engine.one("select count(*) from supaqueue.queue where id = %s", (b,)) == 1


# --- why it failed -------------------------------------------------------------------------------


def list_ids(engine: Engine, **kwargs: Any) -> list[str]:
    args = ", ".join(f"{k} => %({k})s" for k in kwargs)
    rows = engine.conn.execute(
        f"select id::text from supaqueue.list_jobs({args})", kwargs
    ).fetchall()
    return [r["id"] for r in rows]


def test_the_error_search_covers_the_response_excerpt(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=1)
    missing = engine.enqueue(q)
    fail_once(engine, missing, '{"msg":"Requested function was not found"}', status=404)
    literal = engine.enqueue(q)
    fail_once(engine, literal, "disk 100% full_now")
    assert (
        engine.one("select last_response_excerpt from supaqueue.job where id = %s", (missing,))
        == '{"msg":"Requested function was not found"}'
    )
    assert list_ids(engine, _error_contains="function WAS not") == [missing]
    assert list_ids(engine, _queue=q, _error_contains="function was not") == [missing]
    assert list_ids(engine, _error_contains="HTTP 404") == [missing]  # the error itself
    # % and _ match themselves
    assert list_ids(engine, _error_contains="100% full_") == [literal]
    assert list_ids(engine, _error_contains="1%0") == []
    assert (
        engine.one("select supaqueue.retry_failed_jobs(%s, null, 'was not found', true)", (q,)) == 1
    )


def test_a_common_error_text_is_listed_newest_first(engine: Engine) -> None:
    """Over 5,000 matches list_jobs reads its ranges newest first instead of the index: the
    same page either way."""
    q = engine.queue(workers=0)
    engine.conn.execute(
        "insert into supaqueue.job (queue, status, attempts, created_at, finished_at, last_error,"
        " last_response_excerpt)"
        " select %s, 'failed', 1, now() - g * interval '1 second', now(),"
        " case when g %% 2 = 0 then 'HTTP 503 common' end,"
        " case when g %% 2 = 1 then 'a common answer' end"
        " from generate_series(1, 5200) g",
        (q,),
    )
    newest = [
        r["id"]
        for r in engine.conn.execute(
            "select id::text from supaqueue.job where queue = %s"
            " order by created_at desc, id desc limit 30",
            (q,),
        ).fetchall()
    ]
    assert list_ids(engine, _error_contains="COMMON", _limit=30) == newest
    assert list_ids(engine, _queue=q, _error_contains="common", _limit=30) == newest
    assert (
        list_ids(engine, _queue=q, _error_contains="common answer", _limit=15) == newest[::2][:15]
    )


def test_the_error_search_is_served_by_the_trigram_index(engine: Engine) -> None:
    assert engine.one("select count(*) from pg_extension where extname = 'pg_trgm'") == 1
    engine.conn.execute("set enable_seqscan = off")
    plan = "\n".join(
        r["QUERY PLAN"]
        for r in engine.conn.execute(
            "explain select id from supaqueue.job x"
            " where (x.last_error is not null or x.last_response_excerpt is not null)"
            " and (coalesce(x.last_error, '') || ' ' || coalesce(x.last_response_excerpt, ''))"
            " ilike '%not found%'"
        ).fetchall()
    )
    assert "job_error_search_idx" in plan, plan


# --- emptying a queue -----------------------------------------------------------------------------


def test_cancel_jobs_cancels_the_pending_jobs_of_a_queue_and_their_dependents(
    engine: Engine,
) -> None:
    q = engine.queue(workers=0)
    other = engine.queue(workers=0)
    jobs = [engine.enqueue(q, {"n": n}) for n in range(5)]
    dependent = engine.enqueue(other, _depends_on=[jobs[0]])
    untouched = engine.enqueue(other)
    assert engine.one("select supaqueue.cancel_jobs(%s, _dry_run => true)", (q,)) == 5
    assert all(engine.status(j) == "pending" for j in jobs)
    assert engine.one("select supaqueue.cancel_jobs(%s)", (q,)) == 5
    assert {engine.status(j) for j in jobs} == {"cancelled"}
    assert engine.status(dependent) == "cancelled" and engine.status(untouched) == "pending"
    assert engine.one("select supaqueue.cancel_jobs(%s)", (q,)) == 0
    with pytest.raises(psycopg.Error) as finished:
        engine.conn.execute(
            "select supaqueue.cancel_jobs(%s, array['failed']::supaqueue.job_status[])", (q,)
        )
    assert finished.value.diag.sqlstate == "22023"


def test_cancel_jobs_in_progress_takes_the_leases_away(engine: Engine) -> None:
    q = engine.queue(workers=2)
    running = [engine.enqueue(q, {"n": n}) for n in range(2)]
    waiting = engine.enqueue(q, {"n": 3})
    leases = [engine.current_job_of(j) for j in running]
    assert (
        engine.one(
            "select supaqueue.cancel_jobs(%s, %s::supaqueue.job_status[], _dry_run => true)",
            (q, BOTH),
        )
        == 3
    )
    assert (
        engine.one(
            "select supaqueue.cancel_jobs(%s, %s::supaqueue.job_status[])",
            (q, BOTH),
        )
        == 3
    )
    assert {engine.status(j) for j in [*running, waiting]} == {"cancelled"}
    # the late answers change nothing
    assert [engine.end(lease, _status_code=200) for lease in leases] == [False, False]
    assert {engine.status(j) for j in running} == {"cancelled"}
    assert engine.one(
        "select array_agg(distinct outcome) from supaqueue.job_attempt where job = any(%s::uuid[])",
        (running,),
    ) == ["cancelled"]
    invariants(engine)


def test_run_job_now_and_retries_marked_in_the_history(engine: Engine) -> None:
    q = engine.queue(workers=1, max_attempts=2)
    later = engine.enqueue(q, {"n": 1}, _run_at="2099-01-01T00:00:00Z")
    assert engine.one("select supaqueue.run_job_now(%s)", (later,)) is True
    assert engine.status(later) == "in_progress"
    assert engine.one("select supaqueue.run_job_now(%s)", (later,)) is False  # not pending
    for _ in range(2):
        fail_once(engine, later)
    assert engine.status(later) == "failed"
    assert engine.one("select supaqueue.retry_job(%s)", (later,)) is True
    fail_once(engine, later)
    runs = engine.one("select supaqueue.job_runs(%s)", (later,))
    assert [(a["attempt"], a["run"]) for a in runs["attempts"]] == [(1, 1), (2, 1), (1, 2)]
    assert [(a["action"], a["run"]) for a in runs["actions"]] == [
        ("run_job_now", 1),
        ("retry_job", 2),
    ]
    assert runs["actions"][1]["by"].startswith(engine.one("select session_user"))
    with pytest.raises(psycopg.Error) as missing:
        engine.conn.execute("select supaqueue.run_job_now(gen_random_uuid())")
    assert missing.value.diag.sqlstate == "SQ005"


def test_retry_jobs_on_a_filter(engine: Engine) -> None:
    q = engine.queue(workers=0, max_attempts=1)
    ids = [engine.insert_job(q) for _ in range(3)]
    engine.conn.execute(
        "update supaqueue.job set status = 'failed', finished_at = now(), attempts = 1,"
        " last_error = case when id = %s then 'HTTP 503' else 'HTTP 404' end where queue = %s",
        (ids[0], q),
    )
    assert engine.one("select supaqueue.retry_jobs(%s, '503', _dry_run => true)", (q,)) == 1
    assert engine.one("select supaqueue.retry_jobs(null, '404')") == 2
    assert [engine.status(j) for j in ids] == ["failed", "pending", "pending"]
    assert (
        engine.one("select count(*) from supaqueue.job_operator_action where action = 'retry_jobs'")
        == 2
    )


def test_job_ids_by_prefix(engine: Engine) -> None:
    q = engine.queue(workers=0)
    ids = [
        str(
            engine.one("insert into supaqueue.job (id, queue) values (%s, %s) returning id", (i, q))
        )
        for i in (
            "abcd0000-0000-0000-0000-000000000001",
            "abcd0000-0000-0000-0000-000000000002",
            "abce0000-0000-0000-0000-000000000003",
        )
    ]

    def matches(prefix: str) -> list[str]:
        rows = engine.conn.execute(
            "select supaqueue.job_ids_with_prefix(%s)::text as id", (prefix,)
        ).fetchall()
        return [r["id"] for r in rows]

    assert matches("abcd") == ids[:2]
    assert matches("ABCE0000") == ids[2:]
    assert matches("abcd0000-0000-0000-0000-00000000000") == ids[:2]
    assert matches("ffff") == []
    with pytest.raises(psycopg.Error) as bad:
        matches("xyz")
    assert bad.value.diag.sqlstate == "22023"


# --- retention ---------------------------------------------------------------------------------


def test_the_default_retention_is_the_specs(engine: Engine) -> None:
    default = engine.one(
        "select column_default from information_schema.columns where table_schema = 'supaqueue'"
        " and table_name = 'queue' and column_name = 'retention_seconds'"
    )
    assert int(default) == FIELDS["retention_seconds"].default == 7 * 24 * 3600
    q = engine.queue(workers=0)
    assert engine.one("select retention_seconds from supaqueue.queue where id = %s", (q,)) == 604800
    explicit = engine.queue(workers=0, retention_seconds=None)
    assert (
        engine.one("select retention_seconds from supaqueue.queue where id = %s", (explicit,))
        is None
    )


def test_an_upgrade_keeps_the_retention_of_existing_queues(pg_dsn: str) -> None:
    """Migrations up to 0019, a queue with no retention, then 0020: it still has none (a null
    may be a choice; the stack's next `up` applies the default where the declaration is silent)."""
    from supaqueue import migrations

    every = migrations.load_migrations(migrations.SQL_DIR)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.apply(conn, [m for m in every if m.version < 20])
        queue = conn.execute(
            "insert into supaqueue.queue (name, edge_function_name) values ('old', 'f')"
            " returning id"
        ).fetchone()
        assert queue is not None
        migrations.apply(conn, every)
        row = conn.execute(
            "select retention_seconds from supaqueue.queue where id = %s", (queue[0],)
        ).fetchone()
    assert row == (None,)
