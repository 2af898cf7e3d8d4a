"""Uninstall takes nothing that is not supaqueue's (issue 14 item 3): objects outside the schema
that depend on it are found and the uninstall refuses, listing them, unless the session allows
dropping them; only supaqueue's own cron jobs are unscheduled, by exact name. Run as a
non-superuser owner of the schema, like the `postgres` role on hosted Supabase. Both ways to
uninstall (`supaqueue.uninstall()` and `sql/uninstall.sql`) behave the same."""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from components import migrations
from local_stack.postgres import Cluster, free_port, generate_password

REPO = Path(__file__).resolve().parents[2]
UNINSTALL_SCRIPT = (REPO / "sql" / "uninstall.sql").read_text()

USER_OBJECTS = """
create table public.user_jobs (id int, state supaqueue.job_status,
                               states supaqueue.job_status[],
                               queue uuid references supaqueue.queue (id));
create view public.user_job_view as select id, status from supaqueue.job;
create view public.user_view_on_view as select * from public.user_job_view;
create function public.user_fn(s supaqueue.job_status) returns int language sql as 'select 1';
create domain public.user_status as supaqueue.job_status;
create table public.user_policy_table (id int);
create policy user_policy on public.user_policy_table
  using (supaqueue.unfinished_job_count(null) >= 0);
create function public.user_trigger_fn() returns trigger language plpgsql
  as 'begin return new; end';
create trigger user_trigger after insert on supaqueue.job
  for each row execute function public.user_trigger_fn();
"""
EXPECTED = [
    ("function", "public.user_fn(supaqueue.job_status)"),
    ("policy", "user_policy on public.user_policy_table"),
    ("table column", "public.user_jobs.state"),
    ("table column", "public.user_jobs.states"),
    ("table constraint", "user_jobs_queue_fkey on public.user_jobs"),
    ("trigger", "user_trigger on supaqueue.job"),
    ("type", "public.user_status"),
    ("view", "public.user_job_view"),
    ("view", "public.user_view_on_view"),
]


def make_owner(admin: psycopg.Connection, dbname: str) -> str:
    """A role like Supabase's `postgres`: no superuser, all rights on the database, member of
    the API roles, pg_cron's grants. Returns its name."""
    role = f"sq_owner_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    admin.execute(sql.SQL("create role {} nosuperuser createdb createrole").format(ident))
    admin.execute(sql.SQL("grant all on database {} to {}").format(sql.Identifier(dbname), ident))
    admin.execute(sql.SQL("grant anon, authenticated, service_role to {}").format(ident))
    admin.execute(
        sql.SQL("grant pg_monitor, pg_read_all_data, pg_signal_backend to {}").format(ident)
    )
    admin.execute(sql.SQL("grant create on schema public to {}").format(ident))
    for schema in ("net", "vault", "extensions"):
        admin.execute(
            sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(schema), ident)
        )
    admin.execute(sql.SQL("grant all on all functions in schema vault to {}").format(ident))
    admin.execute(sql.SQL("grant select, delete on all tables in schema vault to {}").format(ident))
    if admin.execute("select to_regclass('cron.job') is not null").fetchone() == (True,):
        admin.execute(sql.SQL("grant usage on schema cron to {}").format(ident))
        admin.execute(sql.SQL("grant select on cron.job to {}").format(ident))
        admin.execute(sql.SQL("grant all on all functions in schema cron to {}").format(ident))
    return role


def drop_owner(admin: psycopg.Connection, role: str) -> None:
    admin.execute(sql.SQL("drop owned by {} cascade").format(sql.Identifier(role)))
    admin.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def as_owner(dsn: str, role: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
    assert conn.execute(
        "select rolsuper from pg_roles where rolname = current_user"
    ).fetchone() == (False,)
    return conn


def by_function(conn: psycopg.Connection) -> None:
    conn.execute("select supaqueue.uninstall()")


def by_script(conn: psycopg.Connection) -> None:
    conn.execute(UNINSTALL_SCRIPT)


WAYS: dict[str, Callable[[psycopg.Connection], None]] = {
    "function": by_function,
    "script": by_script,
}


@pytest.fixture
def owner_conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """supaqueue installed by a non-superuser owner, in a fresh database."""
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        role = make_owner(admin, str(dbname))
        try:
            with as_owner(pg_dsn, role) as conn:
                migrations.apply(conn, migrations.load_migrations())
                yield conn
        finally:
            drop_owner(admin, role)


def test_dependents_outside_the_schema_are_found(owner_conn: psycopg.Connection) -> None:
    assert owner_conn.execute("select * from supaqueue.external_dependents()").fetchall() == []
    owner_conn.execute(USER_OBJECTS)
    found = owner_conn.execute("select * from supaqueue.external_dependents()").fetchall()
    assert found == EXPECTED


@pytest.mark.parametrize("way", sorted(WAYS))
def test_uninstall_refuses_while_user_objects_depend_on_it(
    owner_conn: psycopg.Connection, way: str
) -> None:
    owner_conn.execute(USER_OBJECTS)
    owner_conn.execute("insert into public.user_jobs (id, state) values (1, 'success')")
    with pytest.raises(psycopg.Error) as refused:
        WAYS[way](owner_conn)
    assert refused.value.sqlstate == "SQ002"
    message = refused.value.diag.message_primary or ""
    assert message.startswith("supaqueue was not removed: 9 object(s) outside the schema")
    for kind, identity in EXPECTED:
        assert f"{kind} {identity}" in message
    assert "supaqueue.drop_dependents = on" in (refused.value.diag.message_hint or "")
    # Nothing was dropped: the schema, the user's column and its data, the view, the constraint.
    assert owner_conn.execute("select to_regnamespace('supaqueue') is not null").fetchone() == (
        True,
    )
    assert owner_conn.execute("select state::text from public.user_jobs").fetchall() == [
        ("success",)
    ]
    assert owner_conn.execute("select count(*) from public.user_job_view").fetchone() == (0,)
    assert owner_conn.execute(
        "select count(*) from pg_constraint where conname = 'user_jobs_queue_fkey'"
    ).fetchone() == (1,)

    # Allowed explicitly in the session: they go with it.
    owner_conn.execute("set supaqueue.drop_dependents = on")
    WAYS[way](owner_conn)
    assert owner_conn.execute("select to_regnamespace('supaqueue') is null").fetchone() == (True,)
    assert owner_conn.execute("select to_regclass('public.user_job_view') is null").fetchone() == (
        True,
    )


@pytest.mark.parametrize("way", sorted(WAYS))
def test_uninstall_without_dependents_drops_the_schema(
    owner_conn: psycopg.Connection, way: str
) -> None:
    owner_conn.execute("create table public.unrelated (id int)")
    WAYS[way](owner_conn)
    assert owner_conn.execute("select to_regnamespace('supaqueue') is null").fetchone() == (True,)
    assert owner_conn.execute("select to_regclass('public.unrelated') is not null").fetchone() == (
        True,
    )


def test_the_script_uses_the_same_dependency_query_as_the_function() -> None:
    """One authority: sql/uninstall.sql carries a copy of supaqueue.external_dependents() as
    the newest migration that (re)defines it has it."""
    body = re.compile(r"external_dependents\(\)\n(returns table.*?\$\$;)", re.S)
    definitions = [
        found
        for migration in migrations.load_migrations()
        for found in body.findall(migration.path.read_text())
    ]
    (script,) = body.findall(UNINSTALL_SCRIPT)
    assert script == definitions[-1]


@pytest.fixture
def cron_cluster() -> Iterator[Cluster]:
    """A cluster of its own: pg_cron lives in its `postgres` database, which the session
    cluster's other tests share."""
    root = Path(tempfile.mkdtemp(prefix="supaqueue-uninstall-cron-"))
    root.chmod(0o755)
    cluster = Cluster(
        data_dir=root / "pgdata", port=free_port(), password=generate_password(), fast=True
    )
    try:
        cluster.init()
        cluster.start()
        cluster.bootstrap("postgres")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_only_supaqueues_own_cron_jobs_are_unscheduled(cron_cluster: Cluster) -> None:
    dsn = cron_cluster.dsn()
    jobs = "select jobname from cron.job order by jobname"
    with psycopg.connect(dsn, autocommit=True) as admin:
        role = make_owner(admin, "postgres")
        for way in sorted(WAYS):
            with as_owner(dsn, role) as conn:
                migrations.apply(conn, migrations.load_migrations())
                names = conn.execute("select supaqueue.cron_job_names()").fetchone()
                assert names == (["supaqueue-cron-history", "supaqueue-tick"],)
                # The user's own jobs, one of them named like supaqueue's.
                conn.execute(
                    "select cron.schedule('supaqueue-nightly-report', '0 3 * * *', 'select 1')"
                )
                conn.execute("select cron.schedule('cleanup', '0 4 * * *', 'select 1')")
                assert [r[0] for r in conn.execute(jobs)] == [
                    "cleanup",
                    "supaqueue-cron-history",
                    "supaqueue-nightly-report",
                    "supaqueue-tick",
                ]
                WAYS[way](conn)
                assert [r[0] for r in conn.execute(jobs)] == [
                    "cleanup",
                    "supaqueue-nightly-report",
                ], way
                conn.execute("select cron.unschedule('cleanup')")
                conn.execute("select cron.unschedule('supaqueue-nightly-report')")
        drop_owner(admin, role)
