"""The `supaqueue` schema: pending migrations applied in order, recorded in the database.

An applied migration whose file changed is an error at preview (check) and at update, never a
silent re-run. Delete uninstalls: supaqueue's cron jobs unscheduled, the schema dropped.
No input ever replaces this resource: replacing would drop every queued job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from components import migrations as runner
from components.clients.postgres import check_url, connect
from components.errors import DatabaseError
from components.providers import cron_upkeep
from components.providers.base import (
    declared_outputs,
    explicit_diff,
    presented,
    unknown_keys,
    with_secret_outputs,
)
from components.sql_files import queries

SQL = "migrations.sql"


def declared(migrations_dir: Path) -> list[dict[str, Any]]:
    """The migrations in a folder as plain data (an input, so a new file shows in the diff)."""
    return [
        {"version": m.version, "name": m.name, "checksum": m.checksum}
        for m in runner.load_migrations(migrations_dir)
    ]


def _ledger(conn: psycopg.Connection) -> list[dict[str, Any]] | None:
    """The applied migrations, or None when supaqueue is not installed."""
    text = queries(SQL)
    exists = conn.execute(text["ledger_exists"]).fetchone()
    if not exists or not exists[0]:
        return None
    rows = conn.execute(text["ledger"]).fetchall()
    return [{"version": v, "name": n, "checksum": c} for v, n, c in rows]


def _outs(props: dict[str, Any], ledger: list[dict[str, Any]]) -> dict[str, Any]:
    version = max((m["version"] for m in ledger), default=0)
    return {**props, "migrations": ledger, "schema_version": version}


def _migrate(props: dict[str, Any]) -> dict[str, Any]:
    loaded = runner.load_migrations(Path(props["migrations_dir"]))
    with connect(props["db_url"]) as conn:
        runner.plan(conn, loaded)  # raises MigrationEdited before anything runs
        runner.apply(conn, loaded)
        ledger = _ledger(conn)
        cron_drift = cron_upkeep.reconcile(conn)
    if ledger is None:
        raise DatabaseError("migrations ran but supaqueue.migrations does not exist")
    return {**_outs(props, ledger), cron_upkeep.KEY: cron_drift}


class MigrationsProvider(ResourceProvider):
    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        unknown = unknown_keys(news)
        db_url = news.get("db_url")
        folder = news.get("migrations_dir")
        if not isinstance(folder, str) or not Path(folder).is_dir():
            failures.append(CheckFailure("migrations_dir", f"{folder!r} is not a folder"))
        if "db_url" not in unknown and (why := check_url(db_url)):
            failures.append(CheckFailure("db_url", f"the database URL {why}"))
        if not failures and "db_url" not in unknown:
            failures += _edited_failures(str(db_url), Path(str(folder)))
        inputs = {"db_url": db_url, "migrations_dir": folder, "migrations": news.get("migrations")}
        # Checked on every preview and up: drift found here makes the diff, and `up` repairs it.
        inputs[cron_upkeep.KEY] = (
            cron_upkeep.drift(str(db_url)) if not failures and "db_url" not in unknown else []
        )
        return CheckResult(inputs, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # migrations_dir is where the files are, not what they say: it never forces an update.
        return explicit_diff(olds, news, updatable=("migrations", "db_url", cron_upkeep.KEY))

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("supaqueue", _migrate(props))

    @presented
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(_migrate(news))

    @presented
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with connect(props["db_url"]) as conn:
            ledger = _ledger(conn)
        if ledger is None:
            return ReadResult("", {})
        return ReadResult(id_, _outs(props, ledger))

    @presented
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            found = conn.execute(text["uninstall_function_exists"]).fetchone()
            if found and found[0]:
                conn.execute(text["uninstall"])
            else:
                runner.uninstall(conn, Path(props["migrations_dir"]))


def _edited_failures(db_url: str, folder: Path) -> list[CheckFailure]:
    """An edited applied migration, reported at preview. An unreachable database is not a
    check failure: create/update report it with its own message."""
    try:
        loaded = runner.load_migrations(folder)
        with connect(db_url) as conn:
            runner.plan(conn, loaded)
    except runner.MigrationError as exc:
        return [CheckFailure("migrations", str(exc))]
    except (DatabaseError, psycopg.Error):
        return []
    return []


class Migrations(Resource, module="supaqueue", name="Migrations"):
    """The supaqueue schema at the version of the newest migration in `migrations_dir`."""

    schema_version: pulumi.Output[int]
    migrations: pulumi.Output[list[dict[str, Any]]]

    def __init__(
        self,
        name: str,
        db_url: pulumi.Input[str],
        migrations_dir: Path,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "db_url": db_url,
            "migrations_dir": str(migrations_dir),
            "migrations": declared(migrations_dir),
        }
        super().__init__(
            MigrationsProvider(),
            name,
            declared_outputs(props, ["schema_version"]),
            with_secret_outputs(opts, ["db_url"]),
        )
