"""The application's API (migration 0023): enqueue by the queue's name, one job or a batch, loud on
a wrong name (SQLSTATE SQ020), and a job's status and result by id."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from harness.engine import Engine

UNKNOWN_QUEUE = "SQ020"


def _job_count(engine: Engine) -> int:
    return int(engine.one("select count(*) from supaqueue.job"))


def test_the_old_pattern_drops_a_job_silently_and_enqueue_by_name_refuses(engine: Engine) -> None:
    engine.queue(workers=0, name="demo-echo")
    # the pattern the README used to show: a typo inserts nothing and says nothing
    cur = engine.conn.execute(
        "insert into supaqueue.job (queue, payload)"
        " select id, '{}' from supaqueue.queue where name = 'demo-ehco'"
    )
    assert cur.rowcount == 0
    with pytest.raises(psycopg.Error) as caught:
        engine.conn.execute("select supaqueue.enqueue('demo-ehco', '{}')")
    assert caught.value.sqlstate == UNKNOWN_QUEUE
    assert "there is no queue named 'demo-ehco'" in str(caught.value.diag.message_primary)
    assert "demo-echo" in (caught.value.diag.message_hint or "")
    with pytest.raises(psycopg.Error) as caught:
        engine.conn.execute("select supaqueue.enqueue('Demo-Echo', '{}')")
    assert caught.value.sqlstate == UNKNOWN_QUEUE
    assert caught.value.diag.message_hint == "Names are case-sensitive: did you mean 'demo-echo'?"
    with pytest.raises(psycopg.Error) as caught:
        engine.conn.execute("select supaqueue.enqueue_batch('demo-ehco', '[{}, {}]')")
    assert caught.value.sqlstate == UNKNOWN_QUEUE
    assert "supaqueue.enqueue_batch: there is no queue named 'demo-ehco'" in str(caught.value)
    assert _job_count(engine) == 0


def test_a_removed_queue_name_fails(engine: Engine) -> None:
    q = engine.queue(workers=1, name="gone-soon")
    assert engine.one("select supaqueue.drop_queue(%s, false)", (q,)) is True
    for call in (
        "select supaqueue.enqueue('gone-soon', '{}')",
        "select supaqueue.enqueue('gone-soon', '{}', _dedup_key => 'k')",
        "select supaqueue.enqueue_batch('gone-soon', '[1]')",
    ):
        with pytest.raises(psycopg.Error) as caught:
            engine.conn.execute(call)
        assert caught.value.sqlstate == UNKNOWN_QUEUE, call
        assert "'gone-soon'" in str(caught.value)
        assert caught.value.diag.message_hint == (
            "There are no queues: declare one in the stack and run pulumi up."
        )
    assert _job_count(engine) == 0


def test_a_drop_waits_for_an_enqueue_by_name_then_refuses(engine: Engine) -> None:
    """The name is looked up FOR KEY SHARE: a concurrent drop cannot remove the queue between the
    lookup and the insert, and then sees the job (SQ001) instead of losing it."""
    q = engine.queue(workers=0, name="busy")
    with psycopg.connect(engine.dsn) as enqueuer, psycopg.connect(engine.dsn) as dropper:
        row = enqueuer.execute("select supaqueue.enqueue('busy', '{}')::text").fetchone()
        assert row is not None
        dropper.execute("set lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            dropper.execute("select supaqueue.drop_queue(%s, false)", (q,))
        dropper.rollback()
        enqueuer.commit()
        with pytest.raises(psycopg.Error) as caught:
            dropper.execute("select supaqueue.drop_queue(%s, false)", (q,))
        assert caught.value.sqlstate == "SQ001"
    status = engine.one("select status::text from supaqueue.job where id = %s", (row[0],))
    assert status == "pending"


def test_name_and_id_forms_resolve_as_documented(engine: Engine) -> None:
    q = engine.queue(workers=0, name="demo-echo")
    by_literal = engine.one("select supaqueue.enqueue('demo-echo', '{\"n\": 1}')::text")
    by_param = engine.one("select supaqueue.enqueue(%s, %s)::text", ("demo-echo", Jsonb({"n": 2})))
    # an id as text (a literal or a driver's str parameter) resolves to the text form: still the id
    by_id_text = engine.one(f"select supaqueue.enqueue('{q}', '{{\"n\": 3}}')::text")
    by_id_param = engine.one("select supaqueue.enqueue(%s, '{\"n\": 4}')::text", (q,))
    by_uuid = engine.one("select supaqueue.enqueue(%s::uuid, '{\"n\": 5}')::text", (q,))
    ids = [by_literal, by_param, by_id_text, by_id_param, by_uuid]
    rows = engine.conn.execute(
        "select id::text, queue::text, (payload->>'n')::int as n from supaqueue.job order by 3"
    ).fetchall()
    expected = [(i, q, n + 1) for n, i in enumerate(ids)]
    assert [(r["id"], r["queue"], r["n"]) for r in rows] == expected
    # an unknown id keeps the id form's error (23503), typed or not
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="no queue with id"):
        engine.conn.execute("select supaqueue.enqueue(%s, '{}')", (unknown,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="no queue with id"):
        engine.conn.execute("select supaqueue.enqueue(%s::uuid, '{}')", (unknown,))
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="give the queue's name"):
        engine.conn.execute("select supaqueue.enqueue(null, '{}')")
    # a name wins over an id it might spell
    named = engine.queue(workers=0, name="a0000000-0000-0000-0000-00000000000a")
    j = engine.one("select supaqueue.enqueue('a0000000-0000-0000-0000-00000000000a', '{}')::text")
    assert engine.one("select queue::text from supaqueue.job where id = %s", (j,)) == named


def test_batch_of_10000_in_one_call_keeps_order_and_dispatches_once(engine: Engine) -> None:
    q = engine.queue(workers=4, name="bulk")
    payloads = [{"n": n} for n in range(10_000)]
    before = engine.one("select count(*) from net.http_request_queue")
    ids = engine.one("select supaqueue.enqueue_batch('bulk', %s)::text[]", (Jsonb(payloads),))
    assert len(ids) == 10_000 and len(set(ids)) == 10_000
    rows = engine.conn.execute(
        "select u.id::text, (j.payload->>'n')::int as n from unnest(%s::uuid[]) with ordinality"
        " u(id, ord) join supaqueue.job j on j.id = u.id order by u.ord",
        (ids,),
    ).fetchall()
    assert [r["n"] for r in rows] == list(range(10_000))
    assert engine.one("select count(*) from supaqueue.job where queue = %s", (q,)) == 10_000
    # the statement trigger dispatched once for the batch: one request per worker, no more
    assert engine.one("select count(*) from net.http_request_queue") - before == 4
    assert engine.in_flight(q) == 4


def test_batch_options_dedup_keys_and_dependencies(engine: Engine) -> None:
    q = engine.queue(workers=0, name="steps")
    held = engine.enqueue(q, {"old": True}, _dedup_key="k1")
    ids = engine.one(
        "select supaqueue.enqueue_batch('steps',"
        ' \'[{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}]\','
        " _priority => 7, _dedup_keys => array['k1', 'k2', null, 'k2'])::text[]"
    )
    assert ids[0] == held  # held by an unfinished job: that job's id
    assert ids[3] == ids[1]  # the batch's own earlier element holds k2
    assert len({ids[1], ids[2], held}) == 3
    assert engine.one("select count(*) from supaqueue.job where queue = %s", (q,)) == 3
    assert engine.one("select priority from supaqueue.job where id = %s", (ids[2],)) == 7
    # every job of the batch waits for the dependency, then runs
    dep_q = engine.queue(workers=1)
    dep = engine.enqueue(dep_q, {})
    after = engine.one(
        "select supaqueue.enqueue_batch('steps', '[1, 2]',"
        " _depends_on => array[%s]::uuid[])::text[]",
        (dep,),
    )
    for job in after:
        assert engine.job(job)["pending_dependencies"] == 1
        edges = "select count(*) from supaqueue.job_dependency where job = %s"
        assert engine.one(edges, (job,)) == 1
    (request,) = [r for r in engine.new_requests() if r.job == dep]
    engine.claim(request.current_job)
    engine.end(request.current_job, _result={"ok": True})
    assert [engine.job(j)["pending_dependencies"] for j in after] == [0, 0]
    # a failed dependency: the batch is cancelled at once, as with enqueue
    engine.conn.execute("update supaqueue.queue set max_attempts = 1 where id = %s", (dep_q,))
    bad = engine.enqueue(dep_q, {})
    (request,) = [r for r in engine.new_requests() if r.job == bad]
    engine.claim(request.current_job)
    engine.end(request.current_job, success=False, _status_code=400)
    doomed = engine.one(
        "select supaqueue.enqueue_batch('steps', '[1]', _depends_on => array[%s]::uuid[])::text[]",
        (bad,),
    )
    assert engine.job(doomed[0])["status"] == "cancelled"


def test_batch_refuses_bad_input_naming_it(engine: Engine) -> None:
    engine.queue(workers=0, name="steps")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"JSON array of.*, not object"):
        engine.conn.execute("select supaqueue.enqueue_batch('steps', '{\"a\": 1}')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="2 keys for 3 payloads"):
        engine.conn.execute(
            "select supaqueue.enqueue_batch('steps', '[1, 2, 3]', _dedup_keys => array['a', 'b'])"
        )
    assert engine.one("select supaqueue.enqueue_batch('steps', '[]')::text") == "{}"
    # a payload over the limit refuses the whole batch: nothing half-applied
    limit = int(engine.one("select supaqueue.max_payload_bytes()"))
    big = [{"n": 1}, {"s": "x" * limit}]
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        engine.conn.execute("select supaqueue.enqueue_batch('steps', %s)", (Jsonb(big),))
    assert _job_count(engine) == 0


def test_get_job_follows_a_job_to_its_exact_result(engine: Engine) -> None:
    q = engine.queue(workers=1, name="demo-echo", max_attempts=2)
    job = engine.one("select supaqueue.enqueue('demo-echo', '{\"n\": 1}')::text")
    status = engine.conn.execute("select * from supaqueue.get_job(%s)", (job,)).fetchone()
    assert status is not None
    assert (status["queue"], status["status"], status["attempts"], status["max_attempts"]) == (
        "demo-echo", "in_progress", 1, 2
    )  # fmt: skip
    assert status["result"] is None and status["finished_at"] is None
    (request,) = engine.new_requests()
    engine.claim(request.current_job)
    exact = '{"big": 123456789012345678901234567890, "tiny": 1e-40}'
    engine.conn.execute(
        "select supaqueue.end_current_job(%s, true, true, 200, _result => %s::jsonb)",
        (request.current_job, exact),
    )
    done = engine.conn.execute(
        "select status, attempts, result::text as result, finished_at is not null as finished"
        " from supaqueue.get_job(%s)",
        (job,),
    ).fetchone()
    stored = engine.one("select %s::jsonb::text", (exact,))
    assert "123456789012345678901234567890" in stored
    assert done == {"status": "success", "attempts": 1, "result": stored, "finished": True}
    failing = engine.one("select supaqueue.enqueue('demo-echo', '{}')::text")
    for attempt in (1, 2):
        engine.tick()
        (request,) = [r for r in engine.new_requests() if r.job == failing]
        engine.claim(request.current_job)
        engine.end(request.current_job, success=False, _status_code=503, _error="upstream down")
        engine.conn.execute("update supaqueue.job set run_at = now() where id = %s", (failing,))
        assert engine.one("select attempts from supaqueue.get_job(%s)", (failing,)) == attempt
    failed = engine.conn.execute("select * from supaqueue.get_job(%s)", (failing,)).fetchone()
    assert failed is not None
    assert (failed["status"], failed["last_status_code"], failed["last_error"]) == (
        "failed", 503, "upstream down"
    )  # fmt: skip
    with pytest.raises(psycopg.Error) as caught:
        engine.conn.execute("select * from supaqueue.get_job(gen_random_uuid())")
    assert caught.value.sqlstate == "SQ005"
    assert "there is no job with id" in str(caught.value)
    assert q


def test_only_postgres_and_service_role_may_call_the_application_api(engine: Engine) -> None:
    engine.queue(workers=0, name="demo-echo")
    with psycopg.connect(engine.dsn, autocommit=True) as conn:
        conn.execute("set role service_role")
        job = conn.execute("select supaqueue.enqueue('demo-echo', '{}')").fetchone()
        assert job is not None
        batch = conn.execute("select supaqueue.enqueue_batch('demo-echo', '[1, 2]')").fetchone()
        assert batch is not None and len(batch[0]) == 2
        status = conn.execute("select status from supaqueue.get_job(%s)", job).fetchone()
        assert status == ("pending",)
        for role in ("anon", "authenticated"):
            conn.execute(f"reset role; set role {role}")
            for call in (
                "select supaqueue.enqueue('demo-echo', '{}')",
                "select supaqueue.enqueue_batch('demo-echo', '[1]')",
                f"select supaqueue.get_job('{job[0]}')",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(call)


def test_get_job_takes_a_quoted_id_as_it_is(engine: Engine) -> None:
    """Named `get_job`, not `job_status` (the enum type's name, which Postgres would read as a cast
    of one untyped literal): a quoted id, a typed one, a named argument and a bound parameter."""
    engine.queue(workers=0, name="demo-echo")
    job = engine.one("select supaqueue.enqueue('demo-echo', '{}')::text")
    for call in (
        f"select status from supaqueue.get_job('{job}')",
        f"select status from supaqueue.get_job('{job}'::uuid)",
        f"select status from supaqueue.get_job(_id => '{job}')",
    ):
        assert engine.one(call) == "pending", call
    assert engine.one("select status from supaqueue.get_job(%s)", (job,)) == "pending"
