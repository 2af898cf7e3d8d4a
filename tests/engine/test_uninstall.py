"""Uninstall takes nothing that is not supaqueue's (issue 14 item 3): objects outside the schema
that depend on it are found and the uninstall refuses, listing them, unless the session allows
dropping them; only supaqueue's own cron jobs are unscheduled, by exact name. Run as a
non-superuser owner of the schema, like the `postgres` role on hosted Supabase. Both ways to
uninstall (`supaqueue.uninstall()` and `sql/uninstall.sql`) behave the same."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from supaqueue import migrations
from supaqueue.local_stack.postgres import Cluster

REPO = Path(__file__).resolve().parents[2]
UNINSTALL_SCRIPT = (REPO / "supaqueue" / "sql" / "uninstall.sql").read_text()

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


def as_owner(dsn: str) -> psycopg.Connection:
    """`postgres`, which the local stack makes as hosted Supabase has it: no superuser, all rights
    on the database, member of the API roles, pg_cron's and Vault's grants
    (docs/architecture.md, "Roles")."""
    conn = psycopg.connect(dsn, autocommit=True)
    assert conn.execute(
        "select current_user, rolsuper from pg_roles where rolname = current_user"
    ).fetchone() == ("postgres", False)
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
    with as_owner(pg_dsn) as conn:
        migrations.apply(conn, migrations.load_migrations())
        yield conn


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
    """One authority: sql/uninstall.sql carries a copy of supaqueue.external_dependents()'s
    body as sql/functions/ defines it."""
    body = re.compile(
        r"function (?:pg_temp\.supaqueue_|supaqueue\.)external_dependents\(\)"
        r"[^$]*?\$\$\n(.*?)\n\$\$;",
        re.S | re.I,
    )
    definitions = [
        found
        for repeatable in migrations.load_migrations().repeatables
        for found in body.findall(repeatable.sql)
    ]
    (script,) = body.findall(UNINSTALL_SCRIPT)
    assert [script] == definitions


@pytest.fixture
def cron_cluster() -> Iterator[Cluster]:
    """A cluster of its own: pg_cron lives in its `postgres` database, which the session
    cluster's other tests share."""
    with Cluster.temporary(prefix="supaqueue-uninstall-cron-") as cluster:
        yield cluster


def test_only_supaqueues_own_cron_jobs_are_unscheduled(cron_cluster: Cluster) -> None:
    dsn = cron_cluster.dsn()
    jobs = "select jobname from cron.job order by jobname"
    for way in sorted(WAYS):
        with as_owner(dsn) as conn:
            migrations.apply(conn, migrations.load_migrations())
            names = conn.execute("select supaqueue.cron_job_names()").fetchone()
            assert names == (["supaqueue-cron-history", "supaqueue-retention", "supaqueue-tick"],)
            # The user's own jobs, one of them named like supaqueue's.
            conn.execute(
                "select cron.schedule('supaqueue-nightly-report', '0 3 * * *', 'select 1')"
            )
            conn.execute("select cron.schedule('cleanup', '0 4 * * *', 'select 1')")
            assert [r[0] for r in conn.execute(jobs)] == [
                "cleanup",
                "supaqueue-cron-history",
                "supaqueue-nightly-report",
                "supaqueue-retention",
                "supaqueue-tick",
            ]
            WAYS[way](conn)
            assert [r[0] for r in conn.execute(jobs)] == [
                "cleanup",
                "supaqueue-nightly-report",
            ], way
            conn.execute("select cron.unschedule('cleanup')")
            conn.execute("select cron.unschedule('supaqueue-nightly-report')")
