"""The tick: pg_cron runs it every second (on pg_cron 1.4 through the per-minute looping call),
the schedule reconciled to the pg_cron present, supaqueue's run history in pg_cron bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from harness.engine import FUNCTIONS_URL, SECRET, Engine, wait_for_room_in_the_minute
from supaqueue import migrations
from supaqueue.local_stack.postgres import Cluster
from tests.support.pg_cron import has_seconds_schedules, pg_cron_version, warn_not_tested_here

LOOP_RUNNING = "select count(*) from pg_stat_activity where query ilike 'call supaqueue.tick_loop%'"


LOOP_APP = "supaqueue-test-tick-loop"


def test_tick_loop_ticks_every_second_and_commits_each_tick(engine: Engine) -> None:
    wait_for_room_in_the_minute(engine, 4)
    q = engine.queue(workers=1)
    job = engine.one(
        "select supaqueue.enqueue(%s, '{}', now() + interval '1.2 seconds')::text", (q,)
    )
    # (seconds since the call, the job's status, whether the loop was running in that snapshot)
    seen: list[tuple[float, str, bool]] = []
    started = time.monotonic()
    loop_done = threading.Event()
    errors: list[BaseException] = []

    def watch() -> None:
        # Another connection sees the dispatch while the loop still runs: each tick committed.
        # It watches until the loop returns (bounded), so a loaded machine cannot outrun it.
        with psycopg.connect(engine.dsn, autocommit=True) as conn:
            while not loop_done.is_set() and time.monotonic() - started < 120:
                row = conn.execute(
                    "select j.status::text, exists (select from pg_stat_activity"
                    "  where application_name = %s and state = 'active') as running"
                    " from supaqueue.job j where j.id = %s",
                    (LOOP_APP, job),
                ).fetchone()
                assert row is not None
                seen.append((time.monotonic() - started, row[0], row[1]))
                time.sleep(0.05)

    def run_loop() -> None:
        try:
            with psycopg.connect(engine.dsn, autocommit=True, application_name=LOOP_APP) as c:
                c.execute("call supaqueue.tick_loop(4)")
        except BaseException as exc:  # reported below
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    loop = threading.Thread(target=run_loop)
    loop.start()
    loop.join(120)  # a guard against a loop that never ends, not a speed limit
    elapsed = time.monotonic() - started
    hung = loop.is_alive()
    if hung:
        engine.one(
            "select count(pg_cancel_backend(pid)) from pg_stat_activity"
            " where application_name = %s",
            (LOOP_APP,),
        )
        loop.join(30)
    loop_done.set()
    watcher.join()
    assert not hung, "tick_loop(4) was still running after 120 s"
    assert errors == []
    assert elapsed >= 3.9, "the loop runs for at least the seconds it was given"
    dispatched = [(t, running) for t, status, running in seen if status == "in_progress"]
    assert dispatched, seen
    # due at 1.2 s: a tick after that dispatches it (a loaded machine may delay that tick)
    assert 1.1 <= dispatched[0][0], seen
    assert any(running for _, running in dispatched), (
        f"the dispatch must be visible while the loop still runs: {seen}"
    )


@pytest.fixture
def cron_cluster() -> Iterator[Cluster]:
    """A cluster of its own: installing into its `postgres` database (where pg_cron lives) must
    not disturb the session cluster other tests share."""
    with Cluster.temporary(prefix="supaqueue-cron-test-") as cluster:
        yield cluster


TICK_JOBS = "select jobname, schedule, command, database, active from cron.job order by jobname"
OWN_RUNS = (
    "select count(*) from cron.job_run_details d join cron.job j using (jobid)"
    " where j.jobname = 'supaqueue-tick' and d.status = 'succeeded' and d.command = %s"
)
LOOP = ("* * * * *", "call supaqueue.tick_loop()")
EVERY_SECOND = ("1 seconds", "select supaqueue.tick()")
HISTORY = ("supaqueue-cron-history", "*/10 * * * *", "select supaqueue.prune_cron_history()")
# 0029: retention in batches, its own job (every 10 s where pg_cron has seconds, else every minute)
RETENTION = "call supaqueue.prune_history()"


def test_the_schedule_is_a_function_of_the_pg_cron_version(engine: Engine) -> None:
    """The one authority for the tick's schedule: both branches asserted, whatever is installed."""
    for version, tick in [
        ("1.4", LOOP),
        ("1.4-1", LOOP),  # Debian's version string
        ("1.4.2", LOOP),
        ("1.5", EVERY_SECOND),
        ("1.6", EVERY_SECOND),
        ("1.6.7", EVERY_SECOND),
        ("2.0", EVERY_SECOND),
    ]:
        rows = engine.conn.execute(
            "select jobname, schedule, command from supaqueue.cron_jobs_for(%s) order by 1",
            (version,),
        ).fetchall()
        jobs = [(r["jobname"], r["schedule"], r["command"]) for r in rows]
        retention = ("supaqueue-retention", "10 seconds" if tick == EVERY_SECOND else "* * * * *")
        assert jobs == [HISTORY, (*retention, RETENTION), ("supaqueue-tick", *tick)], version
        assert has_seconds_schedules(version) == (tick == EVERY_SECOND)


def test_without_pg_cron_in_the_database_there_is_nothing_to_reconcile(engine: Engine) -> None:
    assert engine.one("select supaqueue.cron_drift()") == []
    assert engine.one("select supaqueue.reconcile_cron()") == []
    assert engine.one("select supaqueue.prune_cron_history()") == 0


def _wait_until_ticking(engine: Engine, version: str, timeout: float) -> None:
    """Each branch does what it must: on >= 1.5 pg_cron runs `select supaqueue.tick()` every
    second itself; on 1.4 it starts the loop at the next minute boundary."""
    deadline = time.monotonic() + timeout
    if has_seconds_schedules(version):
        while time.monotonic() < deadline:
            if engine.one(OWN_RUNS, (EVERY_SECOND[1],)) >= 3:
                assert engine.one(LOOP_RUNNING.replace("%", "%%")) == 0, "no loop on >= 1.5"
                return
            time.sleep(0.2)
        raise AssertionError(f"pg_cron {version} did not run supaqueue.tick() every second")
    while time.monotonic() < deadline:
        if engine.one(LOOP_RUNNING.replace("%", "%%")):
            return
        time.sleep(0.2)
    raise AssertionError(f"pg_cron {version} never started supaqueue.tick_loop within {timeout} s")


@pytest.mark.timeout(150)
def test_pg_cron_job_exists_and_actually_ticks(cron_cluster: Cluster) -> None:
    """Slow by nature: pg_cron 1.4 starts the loop at the next minute boundary (waits <= ~70 s)."""
    dsn = cron_cluster.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrations.apply(conn, migrations.load_migrations())
        version = pg_cron_version(conn)
        tick = EVERY_SECOND if has_seconds_schedules(version) else LOOP
        retention = "10 seconds" if tick == EVERY_SECOND else "* * * * *"
        assert conn.execute(TICK_JOBS).fetchall() == [
            (*HISTORY[:3], "postgres", True),
            ("supaqueue-retention", retention, RETENTION, "postgres", True),
            ("supaqueue-tick", *tick, "postgres", True),
        ]
        if tick == LOOP:
            warn_not_tested_here(version, "pg_cron running supaqueue.tick() every second itself")
        conn.execute(
            "insert into supaqueue.settings values ('functions_url', %s)", (FUNCTIONS_URL,)
        )
        conn.execute("select vault.create_secret(%s, 'supaqueue_secret')", (SECRET,))

    engine = Engine(dsn)
    try:
        q = engine.queue(workers=2, lease_grace_ms=0, timeout_ms=1000)
        # a job whose lease will expire: nobody reports it
        lost = engine.insert_job(q)
        _wait_until_ticking(engine, version, timeout=75)
        # A delayed job becomes due in 2 s: only the tick can dispatch it.
        delayed = engine.one(
            "select supaqueue.enqueue(%s, '{}', now() + interval '2 seconds')::text", (q,)
        )
        # how soon after it is due: a benchmark's figure; here only that the tick does it
        deadline = time.monotonic() + 60
        while engine.status(delayed) == "pending" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert engine.status(delayed) == "in_progress", "no tick dispatched the due job in 60 s"
        dispatched_late = engine.one(
            "select c.started_at >= j.run_at from supaqueue.current_job c"
            " join supaqueue.job j on j.id = c.job where c.job = %s",
            (delayed,),
        )
        assert dispatched_late, "dispatched before it was due"
        # the lost job's lease (1 s) expired; the tick counted the attempt and retried it
        history = engine.conn.execute(
            "select outcome from supaqueue.job_attempt where job = %s", (lost,)
        ).fetchall()
        assert [h["outcome"] for h in history][:1] == ["lease_expired"]
        details = engine.one(
            "select count(*) from cron.job_run_details d join cron.job j using (jobid)"
            " where j.jobname = 'supaqueue-tick'"
        )
        assert details >= 1
    finally:
        engine.close()

    # Uninstall: the cron jobs are gone and the running loop stops by itself.
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrations.uninstall(conn)
        assert conn.execute("select count(*) from cron.job").fetchone() == (0,)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute(LOOP_RUNNING).fetchone()
            if row == (0,):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("tick_loop kept running after uninstall")


def test_the_schedule_is_reconciled_to_the_pg_cron_present(cron_cluster: Cluster) -> None:
    """What `pulumi up` runs each time (supaqueue/providers/cron_upkeep.py): a job changed or
    removed behind supaqueue's back is put back; after a pg_cron upgrade to >= 1.5 the per-minute
    loop is named as drift, to be replaced by the '1 seconds' schedule."""
    with psycopg.connect(cron_cluster.dsn(), autocommit=True) as conn:
        migrations.apply(conn, migrations.load_migrations())
        version = pg_cron_version(conn)
        tick = EVERY_SECOND if has_seconds_schedules(version) else LOOP
        installed = conn.execute(TICK_JOBS).fetchall()
        assert conn.execute("select supaqueue.cron_drift()").fetchone() == ([],)

        # Changed and removed behind supaqueue's back (as a user or an old migration left them).
        conn.execute("select cron.schedule('supaqueue-tick', '*/5 * * * *', 'select 1')")
        conn.execute("select cron.unschedule('supaqueue-cron-history')")
        [drift] = conn.execute("select supaqueue.cron_drift()").fetchone() or [None]
        assert drift == [
            f"supaqueue-cron-history is not scheduled; pg_cron {version} needs"
            f" '{HISTORY[2]}' at '{HISTORY[1]}'",
            f"supaqueue-tick runs 'select 1' at '*/5 * * * *'; pg_cron {version} needs"
            f" '{tick[1]}' at '{tick[0]}'",
        ]
        assert conn.execute("select supaqueue.reconcile_cron()").fetchone() == (drift,)
        assert conn.execute(TICK_JOBS).fetchall() == installed
        assert conn.execute("select supaqueue.cron_drift()").fetchone() == ([],)
        assert conn.execute("select supaqueue.reconcile_cron()").fetchone() == ([],)

        # A database installed under pg_cron 1.4, whose pg_cron is now 1.6: the loop is drift.
        if tick == LOOP:
            [upgraded] = conn.execute("select supaqueue.cron_drift('1.6')").fetchone() or [None]
            assert upgraded == [
                "supaqueue-retention runs 'call supaqueue.prune_history()' at '* * * * *';"
                " pg_cron 1.6 needs 'call supaqueue.prune_history()' at '10 seconds'",
                "supaqueue-tick runs 'call supaqueue.tick_loop()' at '* * * * *'; pg_cron 1.6"
                " needs 'select supaqueue.tick()' at '1 seconds'",
            ]
            warn_not_tested_here(version, "rescheduling supaqueue-tick to '1 seconds'")


def test_run_history_is_bounded_to_supaqueue_own_rows(cron_cluster: Cluster) -> None:
    """pg_cron keeps a row per run (86,400 a day for a '1 seconds' job) and never prunes them:
    supaqueue deletes its own jobs' rows after an hour, and nobody else's."""
    with (
        psycopg.connect(cron_cluster.dsn(), autocommit=True) as conn,
        cron_cluster.admin_connect() as pg_cron,  # writes run rows as pg_cron itself does
    ):
        migrations.apply(conn, migrations.load_migrations())
        # a user's job whose name merely starts with supaqueue, and another user job
        conn.execute("select cron.schedule('supaqueue-reports', '0 3 * * *', 'select 1')")
        conn.execute("select cron.schedule('nightly', '0 4 * * *', 'select 1')")
        jobs: dict[str, int] = dict(conn.execute("select jobname, jobid from cron.job").fetchall())
        runid = 10_000_000

        def run(job: str, age: str, ended: bool = True) -> None:
            nonlocal runid
            runid += 1
            pg_cron.execute(
                "insert into cron.job_run_details (jobid, runid, database, username, command,"
                " status, start_time, end_time) values (%s, %s, 'postgres', 'postgres', 'x',"
                " %s, now() - %s::interval, case when %s then now() - %s::interval end)",
                (jobs[job], runid, "succeeded" if ended else "running", age, ended, age),
            )

        for job in ("supaqueue-tick", "supaqueue-cron-history", "supaqueue-reports", "nightly"):
            run(job, "2 hours")
            run(job, "10 minutes")
        run("supaqueue-tick", "3 days", ended=False)  # left 'running' by a crash
        run("supaqueue-tick", "30 minutes", ended=False)  # the loop still running

        assert conn.execute("select supaqueue.prune_cron_history()").fetchone() == (3,)
        left = conn.execute(
            "select j.jobname, count(*) from cron.job_run_details d join cron.job j using (jobid)"
            " where d.runid > 10000000 group by 1 order by 1"
        ).fetchall()
        assert left == [
            ("nightly", 2),
            ("supaqueue-cron-history", 1),
            ("supaqueue-reports", 2),
            ("supaqueue-tick", 2),
        ]
        # uninstall removes supaqueue's jobs (the user's 'supaqueue-reports' is the data-safety
        # work's business: issue 14, item 3)
        migrations.uninstall(conn)


@pytest.mark.parametrize("how", ["supaqueue.uninstall()", "sql/uninstall.sql"])
def test_uninstall_removes_the_run_history_of_its_own_jobs(cron_cluster: Cluster, how: str) -> None:
    """pg_cron keeps a job's runs after `cron.unschedule`, and pruning keys on jobs still
    scheduled: without this, a destroy then a new install left the old tick's rows forever."""
    with (
        psycopg.connect(cron_cluster.dsn(), autocommit=True) as conn,
        cron_cluster.admin_connect() as pg_cron,
    ):
        migrations.apply(conn, migrations.load_migrations())
        conn.execute("select cron.schedule('nightly', '0 4 * * *', 'select 1')")
        jobs: dict[str, int] = dict(conn.execute("select jobname, jobid from cron.job").fetchall())
        for runid, job in enumerate(("supaqueue-tick", "supaqueue-cron-history", "nightly")):
            pg_cron.execute(
                "insert into cron.job_run_details (jobid, runid, database, username, command,"
                " status, start_time, end_time) values (%s, %s, 'postgres', 'postgres', 'x',"
                " 'succeeded', now(), now())",
                (jobs[job], 20_000_000 + runid),
            )
        if how == "sql/uninstall.sql":
            migrations.uninstall(conn)
        else:
            conn.execute("select supaqueue.uninstall()")
        left = conn.execute(
            "select jobid from cron.job_run_details where runid >= 20000000 order by 1"
        ).fetchall()
        assert left == [(jobs["nightly"],)]
        assert conn.execute("select jobname from cron.job").fetchall() == [("nightly",)]


def test_a_new_install_deletes_the_history_an_older_uninstall_left(cron_cluster: Cluster) -> None:
    """Before 0019 uninstall left its jobs' runs behind, and pruning keys on jobs still scheduled:
    the install deletes them (this database and role, supaqueue's exact commands, job gone)."""
    with (
        psycopg.connect(cron_cluster.dsn(), autocommit=True) as conn,
        cron_cluster.admin_connect() as pg_cron,
    ):
        conn.execute("select cron.schedule('nightly', '0 4 * * *', 'select 1')")
        [nightly] = conn.execute("select jobid from cron.job").fetchone() or [None]
        rows = [
            (900001, "select supaqueue.tick()", "postgres"),  # the old tick: gone
            (900002, "call supaqueue.tick_loop()", "postgres"),  # its pg_cron 1.4 form: gone
            (900003, "select supaqueue.prune_cron_history()", "postgres"),  # gone
            (900004, "select supaqueue.tick()", "supabase_admin"),  # another role's: kept
            (900005, "select 1", "postgres"),  # not supaqueue's: kept
            (nightly, "select 1", "postgres"),  # a scheduled job's: kept
        ]
        for runid, (jobid, command, user) in enumerate(rows, start=30_000_000):
            pg_cron.execute(
                "insert into cron.job_run_details (jobid, runid, database, username, command,"
                " status, start_time, end_time) values (%s, %s, 'postgres', %s, %s,"
                " 'succeeded', now(), now())",
                (jobid, runid, user, command),
            )
        migrations.apply(conn, migrations.load_migrations())
        with cron_cluster.admin_connect() as admin:
            left = admin.execute(
                "select jobid from cron.job_run_details where runid >= 30000000 order by runid"
            ).fetchall()
        assert [row[0] for row in left] == [900004, 900005, nightly]


def test_pruning_needs_only_the_grants_postgres_has_on_supabase(cron_cluster: Cluster) -> None:
    """On Supabase `postgres` is no superuser: it may SELECT cron.job and SELECT/DELETE
    cron.job_run_details, and pg_cron's row security shows it its own jobs only. The pruning,
    run as such a role, deletes that role's supaqueue rows and cannot see anyone else's."""
    with psycopg.connect(cron_cluster.dsn(), autocommit=True) as owner:
        migrations.apply(owner, migrations.load_migrations())
    # The set-up (a role, pg_cron's own rows) is the superuser's.
    with cron_cluster.admin_connect() as conn:
        conn.execute("create role hosted_postgres nologin nosuperuser nobypassrls")
        conn.execute("grant usage on schema cron, supaqueue to hosted_postgres")
        conn.execute("grant select on cron.job to hosted_postgres")
        conn.execute("grant select, delete on cron.job_run_details to hosted_postgres")
        conn.execute(
            "grant execute on function supaqueue.cron_job_names(), supaqueue.cron_jobs_for(text)"
            " to hosted_postgres"
        )
        conn.execute(
            "alter function supaqueue.prune_cron_history(interval) owner to hosted_postgres"
        )
        # as if hosted_postgres had installed supaqueue (jobs inactive: nobody logs in as it)
        conn.execute(
            "update cron.job set username = 'hosted_postgres', active = false"
            " where jobname in ('supaqueue-tick', 'supaqueue-cron-history', 'supaqueue-retention')"
        )
        with psycopg.connect(cron_cluster.dsn(), autocommit=True) as other:  # another user's
            other.execute("select cron.schedule('supaqueue-tick', '0 0 1 1 *', 'select 1')")
        jobs = conn.execute("select jobid, username from cron.job").fetchall()
        for runid, (jobid, username) in enumerate(jobs * 2, start=20_000_000):
            conn.execute(
                "insert into cron.job_run_details (jobid, runid, database, username, command,"
                " status, start_time, end_time) values (%s, %s, 'postgres', %s, 'x', 'succeeded',"
                " now() - interval '3 hours', now() - interval '3 hours')",
                (jobid, runid, username),
            )
        assert conn.execute("select supaqueue.prune_cron_history()").fetchone() == (6,)
        left = conn.execute(
            "select username, count(*) from cron.job_run_details where runid >= 20000000 group by 1"
        ).fetchall()
        assert left == [("postgres", 2)]
