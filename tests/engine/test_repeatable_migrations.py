"""Repeatable migrations (issue #24 item 1): numbered files once each, `sql/functions/` again when
they change, one transaction per upgrade; a fresh install and an upgrade from every earlier schema
version end equal to the snapshot."""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from harness.engine import FUNCTIONS_URL, SECRET, Engine
from supaqueue import migrations
from supaqueue.local_stack import schema_snapshot
from supaqueue.local_stack.postgres import Cluster
from supaqueue.migrations import MigrationError

# The migrations earlier releases applied, frozen as history: every installation recorded these
# checksums, and an applied migration whose file changed is an error. This file is their
# fixture: the shipped files must stay byte for byte these.
RELEASED = Path(__file__).with_name("released_migrations.sha256")
SNAPSHOT = (migrations.SQL_DIR / schema_snapshot.SNAPSHOT_FILE).read_text()


def _released() -> dict[str, str]:
    pairs = (line.split() for line in RELEASED.read_text().splitlines() if line.strip())
    return {name: checksum for checksum, name in pairs}


def _configure(conn: psycopg.Connection) -> None:
    conn.execute(
        "insert into supaqueue.settings (key, value)"
        " values ('functions_url', %s), ('dispatcher_slug', 'supaqueue')",
        (FUNCTIONS_URL,),
    )
    conn.execute("select vault.create_secret(%s, 'supaqueue_secret')", (SECRET,))


def test_released_migrations_are_kept_byte_for_byte() -> None:
    loaded = {m.path.name: m.checksum for m in migrations.load_migrations()}
    released = _released()
    assert len(released) == 25
    changed = sorted(name for name, checksum in released.items() if loaded.get(name) != checksum)
    assert changed == [], f"released migrations are history, never edited: {changed}"


def test_numbered_migrations_after_the_released_ones_define_no_routine() -> None:
    """From 0026 on, functions, views and triggers live in sql/functions/ only."""
    defines = re.compile(r"\bcreate\s+(or\s+replace\s+)?(function|procedure|view|trigger)\b", re.I)
    later = [m for m in migrations.load_migrations() if m.path.name not in _released()]
    assert [m.label for m in later if defines.search(m.sql)] == []


def test_a_fresh_install_records_every_file(pg_dsn: str) -> None:
    loaded = migrations.load_migrations()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.apply(conn, loaded)
        assert migrations.applied_repeatables(conn) == {
            r.name: r.checksum for r in loaded.repeatables
        }
        assert migrations.repeatables_due(conn, loaded) == []
    assert schema_snapshot.dump_schema(pg_dsn) == SNAPSHOT


def _rows(conn: psycopg.Connection[Any], table: str) -> list[dict[str, Any]]:
    return conn.execute(f"select * from supaqueue.{table} order by 1").fetchall()  # type: ignore[arg-type]


def test_an_upgrade_keeps_queued_and_running_jobs(pg_dsn: str) -> None:
    loaded = migrations.load_migrations()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # the installation the last release left: the frozen migrations and their functions
        # (a later numbered migration may need its functions, e.g. 0026 drops enqueue's old form)
        migrations.apply(conn, [m for m in loaded if m.version <= 25])
        _configure(conn)
    engine = Engine(pg_dsn)
    try:
        queue = engine.queue(workers=1, max_attempts=2)
        running = engine.enqueue(queue, {"n": 1})
        waiting = [engine.enqueue(queue, {"n": n}) for n in (2, 3)]
        later = engine.enqueue(queue, {"n": 4}, _run_at=datetime(2999, 1, 1, tzinfo=UTC))
        (request,) = engine.new_requests()
        assert request.job == running
        tables = ("queue", "worker", "job", "current_job", "job_attempt")
        with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as conn:
            before = {t: _rows(conn, t) for t in tables}
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            applied = migrations.apply(conn, loaded)
            assert [a.label for a in applied] == [m.label for m in loaded if m.version > 25] + [
                r.label for r in loaded.repeatables
            ]
        with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as conn:
            after = {t: _rows(conn, t) for t in tables}
        # every row and value as before; columns added since (0026: job.key, …) hold null, or
        # the value that means "as before" (0027: hold_on_retry_after 'job'; 0028: one job per
        # call, no wait)
        as_before = {"hold_on_retry_after": "job", "batch_size": 1, "batch_max_wait_ms": 0}
        for t, rows in after.items():
            old = before[t][0].keys() if before[t] else set()
            assert [{c: r[c] for c in old} for r in rows] == before[t], t
            assert all(r[c] == as_before.get(c) for r in rows for c in r.keys() - old), t
        # and the engine carries on with them: the running call reports, the next one goes out
        assert engine.end(request.current_job)
        assert engine.job(running)["status"] == "success"
        (second,) = engine.new_requests()
        assert second.job == waiting[0]
        assert engine.job(later)["status"] == "pending"
    finally:
        engine.close()


def _copy_sql(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(migrations.SQL_DIR, target)
    return target


def test_an_edited_repeatable_file_applies_again(pg_dsn: str, tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.apply(conn, migrations.load_migrations(sql_dir))
        assert migrations.apply(conn, migrations.load_migrations(sql_dir)) == []
        tick = sql_dir / "functions" / "60_tick.sql"
        tick.write_text(
            tick.read_text() + "\nCREATE OR REPLACE FUNCTION supaqueue.fresh_helper() RETURNS"
            " integer LANGUAGE sql SET search_path TO '' AS $$ select 1 $$;\n"
        )
        loaded = migrations.load_migrations(sql_dir)
        assert migrations.repeatables_due(conn, loaded) == list(loaded.repeatables)
        done = migrations.apply(conn, loaded)
        # no numbered migration, every repeatable file again (in order), and the ledger follows
        assert [d.label for d in done] == [r.label for r in loaded.repeatables]
        assert conn.execute("select supaqueue.fresh_helper()").fetchone() == (1,)
        assert (
            migrations.applied_repeatables(conn)["60_tick"]
            == hashlib.sha256(tick.read_bytes()).hexdigest()
        )
        # the privilege pass ran after it: service_role may call it, as any public routine
        assert conn.execute(
            "select has_function_privilege('service_role', 'supaqueue.fresh_helper()', 'execute')"
        ).fetchone() == (True,)
        assert migrations.apply(conn, loaded) == []


def test_a_table_change_and_the_functions_it_needs_commit_together_or_not_at_all(
    pg_dsn: str, tmp_path: Path
) -> None:
    sql_dir = _copy_sql(tmp_path)
    functions = sql_dir / "functions"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.apply(conn, migrations.load_migrations(sql_dir))
        recorded = migrations.applied_repeatables(conn)
        (sql_dir / "0099_note.sql").write_text(
            "alter table supaqueue.queue add column note text;\n"
        )
        (functions / "96_note.sql").write_text(
            "CREATE OR REPLACE FUNCTION supaqueue.queue_note(_queue uuid) RETURNS text\n"
            "    LANGUAGE sql STABLE SECURITY DEFINER SET search_path TO ''\n"
            "    AS $$ select q.note from supaqueue.queue q where q.id = _queue $$;\n"
            "select no_such_function();\n"
        )
        with pytest.raises(MigrationError, match=r"functions/96_note: function no_such_function"):
            migrations.apply(conn, migrations.load_migrations(sql_dir))
        # nothing of the upgrade: neither the column nor the function nor a ledger row
        assert 99 not in migrations.applied(conn)
        assert migrations.applied_repeatables(conn) == recorded
        assert conn.execute(
            "select count(*) from information_schema.columns"
            " where table_schema = 'supaqueue' and table_name = 'queue' and column_name = 'note'"
        ).fetchone() == (0,)
        assert conn.execute("select to_regproc('supaqueue.queue_note')").fetchone() == (None,)

        (functions / "96_note.sql").write_text(
            (functions / "96_note.sql").read_text().replace("select no_such_function();\n", "")
        )
        done = migrations.apply(conn, migrations.load_migrations(sql_dir))
        assert [d.label for d in done][:2] == ["0099_note", "functions/10_values"]
        assert "functions/96_note" in [d.label for d in done]
        assert conn.execute("select supaqueue.queue_note(gen_random_uuid())").fetchone() == (None,)


def test_a_removed_repeatable_file_is_forgotten(pg_dsn: str, tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    extra = sql_dir / "functions" / "96_extra.sql"
    extra.write_text("select 1;\n")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.apply(conn, migrations.load_migrations(sql_dir))
        assert "96_extra" in migrations.applied_repeatables(conn)
        extra.unlink()
        assert migrations.apply(conn, migrations.load_migrations(sql_dir))
        assert "96_extra" not in migrations.applied_repeatables(conn)


def test_a_badly_named_repeatable_file_is_refused(tmp_path: Path) -> None:
    sql_dir = _copy_sql(tmp_path)
    (sql_dir / "functions" / "dispatch.sql").write_text("select 1;\n")
    with pytest.raises(MigrationError, match=r"functions/dispatch.sql: .* NN_<area>.sql"):
        migrations.load_migrations(sql_dir)


def test_each_routine_is_defined_once_in_the_repeatable_files(engine: Engine) -> None:
    """A reader finds today's `dispatch` in one place: every routine of the installation is
    created by exactly one statement of sql/functions/ (overloads by theirs)."""
    created = re.compile(
        r"^CREATE OR REPLACE (?:FUNCTION|PROCEDURE) (supaqueue(?:_api)?\.[a-z_0-9]+)\(", re.M
    )
    counts: dict[str, int] = {}
    for repeatable in migrations.load_migrations().repeatables:
        for name in created.findall(repeatable.sql):
            counts[name] = counts.get(name, 0) + 1
    rows = engine.conn.execute(
        "select n.nspname || '.' || p.proname as name, count(*)::int as n from pg_proc p"
        " join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname in ('supaqueue', 'supaqueue_api') group by 1"
    ).fetchall()
    assert counts == {r["name"]: r["n"] for r in rows}


def test_the_lease_deadline_is_one_inlined_function(engine: Engine) -> None:
    """timeout + grace is written once (supaqueue._lease_deadline) and costs no call: the planner
    inlines it into its callers' statements."""
    code = [re.sub(r"--.*", "", r.sql) for r in migrations.load_migrations().repeatables]
    formula = re.compile(r"timeout_ms\W+\w*\W*\+\s*\w*\.?_?(lease_)?grace_ms", re.I)
    assert sum(len(formula.findall(c)) for c in code) == 1
    plan = "\n".join(
        r["QUERY PLAN"]
        for r in engine.conn.execute(
            "explain (verbose, costs off) select supaqueue._lease_deadline(now(), q.timeout_ms,"
            " q.lease_grace_ms) from supaqueue.queue q"
        ).fetchall()
    )
    assert "_lease_deadline" not in plan and "make_interval" in plan, plan
    queue = engine.queue(timeout_ms=1500, lease_grace_ms=250)
    engine.enqueue(queue)
    assert engine.one(
        "select lease_expires_at - started_at from supaqueue.current_job c"
        " join supaqueue.worker w on w.id = c.worker where w.queue = %s",
        (queue,),
    ) == engine.one("select interval '1.75 seconds'")


def _bodies(text: str) -> dict[str, str]:
    """{function name: body between its dollar quotes} of the cron evaluator's functions."""
    definition = re.compile(
        r"create\s+(?:or\s+replace\s+)?function\s+supaqueue\.(\w+)\(.*?\bas\s+(\$\w*\$)(.*?)\2",
        re.I | re.S,
    )
    return {m.group(1): m.group(3).strip() for m in definition.finditer(text)}


def test_the_schedule_previews_evaluator_is_the_installed_one() -> None:
    """The schedule provider evaluates a cron expression at preview by running the migration
    *_cron.sql alone (supaqueue/providers/schedule/provider.py): its functions must be the ones
    sql/functions/20_cron.sql installs, or preview and the engine disagree."""
    (cron,) = [m for m in migrations.load_migrations() if m.name == "cron"]
    (installed,) = [r for r in migrations.load_migrations().repeatables if r.name == "20_cron"]
    previewed = _bodies(cron.sql)
    assert len(previewed) >= 10
    current = _bodies(installed.sql)
    assert {name: current.get(name) for name in previewed} == previewed


def test_an_upgrade_that_deadlocks_with_the_running_engine_runs_again(
    pg_cluster: Cluster, pg_dsn: str
) -> None:
    """Re-creating a trigger locks its table, so an upgrade can deadlock with a running tick that
    holds one of supaqueue's tables and waits for another. Postgres rolls the upgrade back whole;
    the runner runs it again instead of failing the `up`."""
    loaded = migrations.load_migrations()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.apply(conn, list(loaded))  # an earlier release's: every repeatable file due
    database = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    outcome: list[object] = []

    def upgrade() -> None:
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                outcome.append(migrations.apply(conn, loaded))
        except Exception as exc:  # reported below
            outcome.append(exc)

    # The engine's side, as the admin role: it may wait longer than the upgrade before checking
    # for a deadlock, so Postgres picks the upgrade to roll back.
    with psycopg.connect(pg_cluster.dsn(str(database), pg_cluster.admin_user)) as engine:
        engine.execute("set deadlock_timeout = '60s'")
        engine.execute("lock table supaqueue.job in row exclusive mode")
        upgrader = threading.Thread(target=upgrade)
        upgrader.start()
        deadline = time.monotonic() + 60
        while not engine.execute(
            "select exists (select 1 from pg_locks where not granted"
            " and relation = 'supaqueue.job'::regclass)"
        ).fetchone() == (True,):
            assert time.monotonic() < deadline, "the upgrade never waited for supaqueue.job"
            time.sleep(0.05)
        # the upgrade holds supaqueue.queue (its trigger came first) and waits for job
        engine.execute("lock table supaqueue.queue in row exclusive mode")
        engine.commit()
    upgrader.join(timeout=60)
    (result,) = outcome
    assert isinstance(result, list), result
    assert [r.label for r in result] == [r.label for r in loaded.repeatables]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert migrations.applied_repeatables(conn) == {
            r.name: r.checksum for r in loaded.repeatables
        }
