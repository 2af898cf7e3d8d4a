"""service_role (the Supabase API's all-powerful key) uses the documented interface only: it reads
everything, enqueues (INSERT of the documented columns, or supaqueue.enqueue), reports and ticks.
Direct writes that would break the engine's invariants are refused, tested as service_role."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from harness.engine import Engine

# Each statement, run as service_role, would break an invariant if it were allowed.
BREAKERS = {
    # the dependent's pending count no longer matches its edges: a later success report fails
    "hand-made dependency": "insert into supaqueue.job_dependency (job, depends_on)"
    " values (%(pending)s, %(other)s)",
    "dependency removed": "delete from supaqueue.job_dependency",
    "job finished by hand": "update supaqueue.job set status = 'success', finished_at = now()",
    "job made ready by hand": "update supaqueue.job set pending_dependencies = 0",
    "job inserted as finished": "insert into supaqueue.job (queue, status, finished_at)"
    " values (%(queue)s, 'success', now())",
    "job inserted with no dependencies counted": "insert into supaqueue.job"
    " (queue, pending_dependencies) values (%(queue)s, 1)",
    "job deleted under its dependents": "delete from supaqueue.job",
    "extra worker (breaks the workers bound)": "insert into supaqueue.worker (queue)"
    " values (%(queue)s)",
    "busy worker freed": "update supaqueue.worker set locked = false",
    "lease removed": "delete from supaqueue.current_job",
    "lease extended": "update supaqueue.current_job"
    " set lease_expires_at = now() + interval '1 year'",
    "dispatch redirected (the secret would go there)": "update supaqueue.settings"
    " set value = 'http://attacker.invalid'",
    "queue changed behind Pulumi": "update supaqueue.queue set max_attempts = 100",
    "history rewritten": "delete from supaqueue.job_attempt",
    "rate-limit tokens minted": "update supaqueue.queue_bucket set tokens = 1e9",
    "migration ledger edited": "delete from supaqueue.migrations",
    "internal: attempt finished without a lease": "select supaqueue._finish_attempt("
    "(select c from supaqueue.current_job c limit 1),"
    " 'success', 200, null, null, null, null, null)",
    "internal: dependents cancelled": "select supaqueue._cancel_dependents(%(other)s, 'x')",
    "internal: privileges reapplied": "select supaqueue.apply_privileges()",
    "workers resized": "select supaqueue.set_worker_count(%(queue)s, 50)",
    "queue dropped": "select supaqueue.drop_queue(%(queue)s, true)",
}


@pytest.fixture
def as_service_role(engine: Engine) -> Iterator[psycopg.Connection]:
    with psycopg.connect(engine.dsn, autocommit=True) as conn:
        conn.execute("set role service_role")
        yield conn


@pytest.mark.parametrize("what", BREAKERS)
def test_service_role_cannot_break_an_invariant(
    engine: Engine, as_service_role: psycopg.Connection, what: str
) -> None:
    q = engine.queue(workers=1, rate_limit_per_second=1)
    other = engine.enqueue(q, {"n": 1})  # dispatched: holds the worker and a lease
    pending = engine.enqueue(q, {"n": 2}, _depends_on=[other])
    before = engine.conn.execute(
        "select (select count(*) from supaqueue.job_dependency) as deps,"
        " (select count(*) from supaqueue.worker) as workers,"
        " (select count(*) from supaqueue.current_job) as leases,"
        " (select array_agg(status::text order by id) from supaqueue.job) as jobs"
    ).fetchone()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_service_role.execute(BREAKERS[what], {"queue": q, "other": other, "pending": pending})
    after = engine.conn.execute(
        "select (select count(*) from supaqueue.job_dependency) as deps,"
        " (select count(*) from supaqueue.worker) as workers,"
        " (select count(*) from supaqueue.current_job) as leases,"
        " (select array_agg(status::text order by id) from supaqueue.job) as jobs"
    ).fetchone()
    assert after == before


def test_the_documented_interface_still_works_as_service_role(
    engine: Engine, as_service_role: psycopg.Connection
) -> None:
    q = engine.queue(workers=2)
    conn = as_service_role
    first = conn.execute(
        "insert into supaqueue.job (queue, payload, priority, run_at, dedup_key)"
        " values (%s, '{\"a\": 1}', 5, now(), 'k-1') returning id, status::text",
        (q,),
    ).fetchone()
    assert first is not None and first[1] in ("pending", "in_progress")
    row = conn.execute(
        "select supaqueue.enqueue(%s, '{}', _depends_on => array[%s]::uuid[])", (q, first[0])
    ).fetchone()
    assert row is not None
    lease = conn.execute("select id from supaqueue.current_job where job = %s", (first[0],))
    cj = lease.fetchone()
    assert cj is not None
    assert conn.execute("select supaqueue.end_current_job(%s, true, true, 200)", cj).fetchone() == (
        True,
    )
    assert conn.execute("select supaqueue.tick() ? 'expired'").fetchone() == (True,)
    assert conn.execute("select supaqueue.unfinished_job_count(%s)", (q,)).fetchone() == (1,)
    for relation in ("job", "job_attempt", "queue", "queue_stats", "worker", "current_job"):
        conn.execute(f"select count(*) from supaqueue.{relation}")  # reading is allowed
    # the dependent became ready when its dependency succeeded: the invariant held
    assert engine.status(str(row[0])) == "in_progress"


def test_service_role_may_run_no_internal_or_owner_routine(engine: Engine) -> None:
    rows = engine.conn.execute(
        "select p.proname::text as name,"
        " has_function_privilege('service_role', p.oid, 'execute') as allowed,"
        " p.proname like '\\_%%' or p.prorettype = 'trigger'::regtype"
        "   or p.proname = any (supaqueue.owner_only_routines()) as internal"
        " from pg_proc p where p.pronamespace = 'supaqueue'::regnamespace"
    ).fetchall()
    allowed = {r["name"] for r in rows if r["allowed"]}
    assert not {r["name"] for r in rows if r["internal"]} & allowed
    assert {"enqueue", "end_current_job", "tick", "unfinished_job_count"} <= allowed
    assert {"_finish_attempt", "uninstall", "drop_queue", "reconcile_cron"} <= {
        r["name"] for r in rows if not r["allowed"]
    }
    # tables: read everything, write nothing but the enqueue columns of job
    writable = engine.conn.execute(
        "select c.relname::text from pg_class c where c.relnamespace = 'supaqueue'::regnamespace"
        " and c.relkind = 'r' and (has_table_privilege('service_role', c.oid, 'update, delete')"
        "   or (c.relname <> 'job' and has_any_column_privilege('service_role', c.oid, 'insert')))"
    ).fetchall()
    assert writable == []
