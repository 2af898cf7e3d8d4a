"""The schema resource: apply, no-op diff, new migration → update, edited migration refused at
check (preview) and at update, refresh, delete = uninstall (schema and cron jobs gone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from supaqueue.migrations import load_migrations
from supaqueue.providers.migrations import MigrationsProvider
from tests.providers.conftest import REPO, failure_text, migrations_props, sql_value, uninstall


def newest_version() -> int:
    return max(m.version for m in load_migrations(REPO / "supaqueue" / "sql"))


def test_create_read_diff_delete(db_url: str) -> None:
    uninstall(db_url)
    provider = MigrationsProvider()
    props = provider.check({}, migrations_props(db_url))
    assert props.failures == []
    created = provider.create(props.inputs)
    outs: dict[str, Any] = created.outs or {}
    assert created.id == "supaqueue"
    assert outs["schema_version"] == newest_version()
    assert sql_value(db_url, "select max(version) from supaqueue.migrations") == newest_version()
    assert [m["version"] for m in outs["migrations"]] == [
        m.version for m in load_migrations(REPO / "supaqueue" / "sql")
    ]

    # Unchanged files: nothing to do, and never a replace.
    diff = provider.diff(created.id, outs, props.inputs)
    assert diff.changes is False and diff.replaces == []

    read = provider.read(created.id, outs)
    assert read.id == "supaqueue" and (read.outs or {})["schema_version"] == newest_version()

    assert sql_value(db_url, "select count(*) from cron.job where jobname like 'supaqueue%%'") > 0
    provider.delete(created.id, outs)
    assert sql_value(db_url, "select to_regnamespace('supaqueue') is null") is True
    assert sql_value(db_url, "select count(*) from cron.job where jobname like 'supaqueue%%'") == 0
    # Refresh after an uninstall behind Pulumi's back: the resource is gone.
    assert provider.read(created.id, outs).id == ""


def test_a_new_migration_updates_in_place(db_url: str, sql_copy: Path) -> None:
    uninstall(db_url)
    provider = MigrationsProvider()
    first = provider.check({}, migrations_props(db_url, sql_copy)).inputs
    outs = provider.create(first).outs or {}
    (sql_copy / "0099_extra.sql").write_text("create table supaqueue.extra (id int);\n")
    second = provider.check(outs, migrations_props(db_url, sql_copy))
    assert second.failures == []
    diff = provider.diff("supaqueue", outs, second.inputs)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update("supaqueue", outs, second.inputs).outs or {}
    assert updated["schema_version"] == 99
    assert sql_value(db_url, "select to_regclass('supaqueue.extra') is not null") is True
    uninstall(db_url)


def test_an_edited_applied_migration_is_refused_at_preview_and_update(
    db_url: str, sql_copy: Path
) -> None:
    uninstall(db_url)
    provider = MigrationsProvider()
    outs = provider.create(provider.check({}, migrations_props(db_url, sql_copy)).inputs).outs
    assert outs is not None
    first = sorted(sql_copy.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")

    checked = provider.check(outs, migrations_props(db_url, sql_copy))
    (failure,) = checked.failures
    assert failure.property == "migrations"
    assert first.stem in failure.reason and "has changed" in failure.reason

    text = failure_text(lambda: provider.update("supaqueue", outs, checked.inputs))
    assert "MigrationEdited" in text and first.stem in text
    assert "Traceback" not in text  # the user sees the message, not a Python stack
    uninstall(db_url)


def test_unreachable_database_is_a_clear_error(db_url: str) -> None:
    provider = MigrationsProvider()
    bad = db_url.rsplit(":", 1)[0] + ":1/postgres"
    props = migrations_props(bad)
    # check does not fail on connectivity (create reports it, with the reason)...
    assert provider.check({}, props).failures == []
    text = failure_text(lambda: provider.create(props))
    assert "DatabaseError: cannot connect to the database postgres@127.0.0.1:1/postgres" in text
    password = db_url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password not in text
    assert "Traceback" not in text


def test_every_up_reconciles_the_cron_jobs(db_url: str) -> None:
    """Not only once by a migration: a cron job changed or removed behind supaqueue's back (or
    left in the per-minute form by a pg_cron upgrade) is drift at check, so a diff, so `up`
    repairs it with no migration pending."""
    uninstall(db_url)
    provider = MigrationsProvider()
    outs = provider.create(provider.check({}, migrations_props(db_url)).inputs).outs or {}
    assert outs["cron_drift"] == []
    jobs = "select jobname, schedule, command from cron.job where jobname like 'supaqueue-%%'"
    with psycopg.connect(db_url, autocommit=True) as conn:
        scheduled = conn.execute(jobs + " order by 1").fetchall()
        names = ["supaqueue-cron-history", "supaqueue-retention", "supaqueue-tick"]
        assert [name for name, _, _ in scheduled] == names
        checked = provider.check(outs, migrations_props(db_url))
        assert checked.inputs["cron_drift"] == []
        assert provider.diff("supaqueue", outs, checked.inputs).changes is False

        conn.execute("select cron.schedule('supaqueue-tick', '*/5 * * * *', 'select 1')")
        checked = provider.check(outs, migrations_props(db_url))
        [drift] = checked.inputs["cron_drift"]
        assert drift.startswith("supaqueue-tick runs 'select 1' at '*/5 * * * *'; pg_cron ")
        diff = provider.diff("supaqueue", outs, checked.inputs)
        assert diff.changes is True and diff.replaces == []

        updated = provider.update("supaqueue", outs, checked.inputs).outs or {}
        assert updated["cron_drift"] == []
        assert conn.execute(jobs + " order by 1").fetchall() == scheduled
        again = provider.check(updated, migrations_props(db_url))
        assert provider.diff("supaqueue", updated, again.inputs).changes is False
    uninstall(db_url)


def test_an_edited_function_file_updates_in_place(db_url: str, sql_copy: Path) -> None:
    """A repeatable file (sql/functions/) changed: a diff, and the update applies it again. An
    installation whose state predates these files (no `repeatables`) updates once, then is
    quiet."""
    uninstall(db_url)
    provider = MigrationsProvider()
    outs = provider.create(provider.check({}, migrations_props(db_url, sql_copy)).inputs).outs
    assert outs is not None
    assert [r["name"] for r in outs["repeatables"]] == [
        r.name for r in load_migrations(sql_copy).repeatables
    ]
    older_state = {k: v for k, v in outs.items() if k != "repeatables"}
    checked = provider.check(older_state, migrations_props(db_url, sql_copy))
    assert provider.diff("supaqueue", older_state, checked.inputs).changes is True

    tick = sql_copy / "functions" / "60_tick.sql"
    tick.write_text(
        tick.read_text() + "\nCREATE OR REPLACE FUNCTION supaqueue.edited_here() RETURNS integer"
        " LANGUAGE sql SET search_path TO '' AS $$ select 7 $$;\n"
    )
    checked = provider.check(outs, migrations_props(db_url, sql_copy))
    assert checked.failures == []
    diff = provider.diff("supaqueue", outs, checked.inputs)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update("supaqueue", outs, checked.inputs).outs or {}
    assert sql_value(db_url, "select supaqueue.edited_here()") == 7
    assert updated["schema_version"] == outs["schema_version"]
    again = provider.check(updated, migrations_props(db_url, sql_copy))
    assert provider.diff("supaqueue", updated, again.inputs).changes is False
    uninstall(db_url)
