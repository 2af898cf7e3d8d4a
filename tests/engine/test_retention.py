"""Retention (0029): finished jobs past their queue's `retention_seconds` are deleted by
`supaqueue.prune_history()` (the cron job `supaqueue-retention`) in small batches, each its own
transaction, never by the tick. docs/architecture.md, "Retention"."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from harness.engine import Engine
from supaqueue import migrations
from supaqueue.local_stack.postgres import Cluster

PRUNE = "call supaqueue.prune_history(_seconds => 120, _batch_ms => %s::numeric)"


def finished(engine: Engine, queue: str, count: int, age: str, status: str = "success") -> None:
    """`count` jobs of `queue` that finished `age` ago, each with one attempt in the history."""
    engine.conn.execute(
        "with j as (insert into supaqueue.job (queue, status, attempts, finished_at)"
        " select %s, %s::supaqueue.job_status, 1, now() - %s::interval - g * interval '1 ms'"
        " from generate_series(1, %s) g returning id, queue, finished_at)"
        " insert into supaqueue.job_attempt (job, queue, attempt, started_at, ended_at, outcome)"
        " select id, queue, 1, finished_at, finished_at, 'success' from j",
        (queue, status, age, count),
    )


def count(engine: Engine, queue: str, where: str = "true") -> int:
    return int(
        engine.one(f"select count(*) from supaqueue.job where queue = %s and {where}", (queue,))
    )


def prune(engine: Engine, batch_ms: float = 50) -> int:
    return int(engine.one(PRUNE, (batch_ms,)))


def test_the_tick_no_longer_prunes(engine: Engine) -> None:
    """The tick's transaction carries its dispatches (pg_net sends them at commit): it must not
    wait on a delete. Before 0029 this tick deleted the 10 jobs."""
    queue = engine.queue(workers=0, retention_seconds=60)
    finished(engine, queue, 10, "2 minutes")
    assert engine.tick()["pruned"] == 0
    assert count(engine, queue) == 10
    assert prune(engine) == 10
    assert count(engine, queue) == 0


def test_batches_keep_up_and_each_commits_on_its_own(engine: Engine) -> None:
    """One run deletes the whole backlog, in many transactions of at most a few hundred rows when
    batches must be short (each batch that deletes takes a transaction id of its own)."""
    queue = engine.queue(workers=0, retention_seconds=60)
    finished(engine, queue, 3000, "2 minutes")
    finished(engine, queue, 50, "10 seconds")  # within the retention
    before = int(engine.one("select txid_current()"))
    # a batch can never take 0.001 ms: each halves the next, down to the floor of 100 rows
    assert prune(engine, batch_ms=0.001) == 3000
    transactions = int(engine.one("select txid_current()")) - before - 1
    assert transactions >= 3000 // 500  # 500, 250, 125, then 100 rows each: about 25
    assert count(engine, queue) == 50
    orphans = "select count(*) from supaqueue.job_attempt a where not exists" \
        " (select 1 from supaqueue.job j where j.id = a.job)"  # fmt: skip
    assert engine.one(orphans) == 0
    assert engine.one("select count(*) from supaqueue.job_attempt where queue = %s", (queue,)) == 50


def test_a_finished_job_whose_dependent_still_waits_is_kept(engine: Engine) -> None:
    queue = engine.queue(workers=0, retention_seconds=60)
    finished(engine, queue, 3, "1 hour")
    parent, done_parent, lone = (
        str(r["id"]) for r in engine.conn.execute(
            "select id from supaqueue.job where queue = %s order by finished_at", (queue,)
        ).fetchall()
    )  # fmt: skip
    waiting = engine.insert_job(queue)
    engine.conn.execute(
        "update supaqueue.job set run_at = now() + interval '1 day' where id = %s", (waiting,)
    )
    finished(engine, queue, 1, "1 hour", status="cancelled")
    done_child = str(
        engine.one(
            "select id from supaqueue.job where queue = %s and status = 'cancelled'", (queue,)
        )
    )
    engine.conn.execute(
        "insert into supaqueue.job_dependency (job, depends_on) values (%s, %s), (%s, %s)",
        (waiting, parent, done_child, done_parent),
    )
    assert prune(engine) == 3  # done_parent, its finished dependent, the lone job
    left = {str(r["id"]) for r in engine.conn.execute(
        "select id from supaqueue.job where queue = %s", (queue,)).fetchall()}  # fmt: skip
    assert left == {parent, waiting}
    assert lone not in left
    # the dependent finishes: its parent goes with the next run
    engine.conn.execute(
        "update supaqueue.job set status = 'success', finished_at = now() - interval '1 hour'"
        " where id = %s",
        (waiting,),
    )
    assert prune(engine) == 2
    assert count(engine, queue) == 0


def test_null_retention_keeps_finished_jobs_for_ever(engine: Engine) -> None:
    kept = engine.queue(workers=0, retention_seconds=None)
    pruned = engine.queue(workers=0, retention_seconds=0)
    finished(engine, kept, 200, "400 days")
    finished(engine, pruned, 200, "1 second")
    assert prune(engine) == 200
    assert count(engine, kept) == 200
    assert count(engine, pruned) == 0


def test_nothing_unfinished_is_ever_deleted(engine: Engine) -> None:
    queue = engine.queue(workers=1, retention_seconds=0)
    old = "created_at = now() - interval '30 days', updated_at = now() - interval '30 days'"
    for _ in range(3):
        engine.insert_job(queue)  # one is dispatched (in_progress), two wait
    engine.conn.execute(f"update supaqueue.job set {old} where queue = %s", (queue,))
    delayed = engine.insert_job(queue)
    engine.conn.execute(
        f"update supaqueue.job set {old}, run_at = now() + interval '1 year' where id = %s",
        (delayed,),
    )
    finished(engine, queue, 5, "1 second", status="failed")
    assert count(engine, queue, "status = 'in_progress'") == 1
    assert prune(engine) == 5
    assert count(engine, queue, "finished_at is null") == 4
    assert count(engine, queue) == 4


def test_rows_another_transaction_holds_are_skipped_not_waited_for(engine: Engine) -> None:
    """A finished job that an enqueue's foreign-key check (or an operator's retry) holds is left
    for the next run: the run neither waits for that transaction nor makes it wait long."""
    queue = engine.queue(workers=0, retention_seconds=60)
    finished(engine, queue, 300, "1 hour")
    held = engine.one(
        "select id from supaqueue.job where queue = %s order by finished_at limit 1", (queue,)
    )
    with psycopg.connect(engine.dsn) as other:  # a transaction left open
        other.execute("select 1 from supaqueue.job where id = %s for key share", (held,))
        # a wait would hit this instead of hanging the test
        engine.conn.execute("set statement_timeout = '60s'")
        assert prune(engine) == 299
        other.rollback()
    assert prune(engine) == 1
    assert count(engine, queue) == 0


@pytest.fixture
def cron_cluster() -> Iterator[Cluster]:
    with Cluster.temporary(prefix="supaqueue-retention-test-") as cluster:
        yield cluster


def test_an_upgrade_schedules_the_retention_job_at_once(cron_cluster: Cluster) -> None:
    """Retention moved from the tick to its own cron job: an installation upgraded from 0025 (whose
    tick pruned) gets the job in the upgrade itself, not only at the next `pulumi up`."""
    jobs = "select jobname from cron.job where jobname like 'supaqueue-%' order by 1"
    with psycopg.connect(cron_cluster.dsn(), autocommit=True) as conn:
        every = migrations.load_migrations()
        migrations.apply(conn, list(every[:25]))  # release 25, functions of their day
        assert [r[0] for r in conn.execute(jobs)] == ["supaqueue-cron-history", "supaqueue-tick"]
        migrations.apply(conn, every)
        assert [r[0] for r in conn.execute(jobs)] == [
            "supaqueue-cron-history",
            "supaqueue-retention",
            "supaqueue-tick",
        ]
        assert conn.execute("select supaqueue.cron_drift()").fetchone() == ([],)
        migrations.uninstall(conn)
        assert [r[0] for r in conn.execute(jobs)] == []


@pytest.mark.timeout(150)
@pytest.mark.clock
def test_pg_cron_runs_the_retention_job(cron_cluster: Cluster) -> None:
    """Slow by nature: the job is per-minute on the pg_cron 1.4 here. pg_cron can run a procedure
    that commits between batches, and it deletes."""
    with psycopg.connect(cron_cluster.dsn(), autocommit=True) as conn:
        migrations.apply(conn, migrations.load_migrations())
        engine = Engine(cron_cluster.dsn())
        try:
            queue = engine.queue(workers=0, retention_seconds=0)
            finished(engine, queue, 1000, "1 second")
            deadline = time.monotonic() + 130
            while count(engine, queue) and time.monotonic() < deadline:
                time.sleep(0.5)
            if count(engine, queue):
                runs = conn.execute(
                    "select j.jobname, d.status, d.return_message, d.start_time"
                    " from cron.job_run_details d join cron.job j using (jobid) order by d.runid"
                ).fetchall()
                raise AssertionError(f"supaqueue-retention deleted nothing in 130 s; runs: {runs}")
        finally:
            engine.close()
        runs = conn.execute(
            "select d.status from cron.job_run_details d join cron.job j using (jobid)"
            " where j.jobname = 'supaqueue-retention'"
        ).fetchall()
        assert ("succeeded",) in runs
        migrations.uninstall(conn)
