"""The `supaqueue` schema: pending migrations applied in order, recorded in the database.

An applied migration whose file changed is an error at preview (check) and at update, never a
silent re-run. This resource is also the installation's ownership gate (providers/ownership.py):
its check refuses an installation owned by another stack, and one that vanished from under the
state; create/update record the owner. Delete uninstalls (supaqueue.uninstall(): its own cron
jobs unscheduled, the schema dropped) only when no other stack's queue and no object outside the
schema depends on it. No input ever replaces this resource: replacing would drop every job.
"""

from __future__ import annotations

import contextlib
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
    ResourceProvider,
    UpdateResult,
)

from supaqueue import migrations as runner
from supaqueue.clients.postgres import check_url, connect
from supaqueue.errors import DatabaseError, OwnershipError, SupaqueueError
from supaqueue.providers import cron_upkeep, ownership
from supaqueue.providers.base import (
    declared_outputs,
    explicit_diff,
    presented,
    unknown_keys,
    with_secret_outputs,
)
from supaqueue.providers.custom import SupaqueueResource
from supaqueue.sql_files import queries

SQL = "migrations.sql"


def declared(migrations_dir: Path) -> list[dict[str, Any]]:
    """The migrations in a folder as plain data (an input, so a new file shows in the diff)."""
    return [
        {"version": m.version, "name": m.name, "checksum": m.checksum}
        for m in runner.load_migrations(migrations_dir)
    ]


def declared_repeatables(migrations_dir: Path) -> list[dict[str, str]]:
    """The repeatable files (`functions/`) as plain data: an edited one shows in the diff, and the
    update applies them again."""
    return [
        {"name": r.name, "checksum": r.checksum} for r in runner.load_repeatables(migrations_dir)
    ]


def _ledger(conn: psycopg.Connection) -> list[dict[str, Any]] | None:
    """The applied migrations, or None when supaqueue is not installed."""
    text = queries(SQL)
    exists = conn.execute(text["ledger_exists"]).fetchone()
    if not exists or not exists[0]:
        return None
    rows = conn.execute(text["ledger"]).fetchall()
    return [{"version": v, "name": n, "checksum": c} for v, n, c in rows]


def _repeatable_ledger(conn: psycopg.Connection) -> list[dict[str, str]]:
    """The applied repeatable files, in file order; empty before the first (installations of
    supaqueue before they existed)."""
    text = queries(SQL)
    exists = conn.execute(text["repeatable_ledger_exists"]).fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute(text["repeatable_ledger"]).fetchall()
    return [{"name": n, "checksum": c} for n, c in rows]


def _claim(conn: psycopg.Connection, me: ownership.Stack) -> None:
    """Record `me` as the owner once the ownership table exists (migration 0007)."""
    row = conn.execute(queries("ownership.sql")["owner_table_exists"]).fetchone()
    if row and row[0]:
        with conn.transaction():
            ownership.claim(conn, me)


def _outs(
    props: dict[str, Any], ledger: list[dict[str, Any]], repeatables: list[dict[str, str]]
) -> dict[str, Any]:
    version = max((m["version"] for m in ledger), default=0)
    return {**props, "migrations": ledger, "repeatables": repeatables, "schema_version": version}


def _migrate(props: dict[str, Any], in_state: bool) -> dict[str, Any]:
    loaded = runner.load_migrations(Path(props["migrations_dir"]))
    me = ownership.stack_of(props)
    if me is None:
        raise DatabaseError("internal: the schema resource has no owner input")
    with connect(props["db_url"]) as conn:
        # Again here, not only at check: another stack may have installed in between.
        if problem := ownership.install_problem(conn, me, in_state):
            raise OwnershipError(problem)
        runner.plan(conn, loaded)  # raises MigrationEdited before anything runs
        try:
            runner.apply(conn, loaded)
        except Exception:
            # Even when a later migration failed: the retry of this stack's `up` (whose state
            # does not hold the resource after a failed create) must find the installation its own.
            with contextlib.suppress(psycopg.Error, SupaqueueError):
                _claim(conn, me)
            raise
        _claim(conn, me)
        ledger = _ledger(conn)
        repeatables = _repeatable_ledger(conn)
        cron_drift = cron_upkeep.reconcile(conn)
    if ledger is None:
        raise DatabaseError("migrations ran but supaqueue.migrations does not exist")
    return {**_outs(props, ledger, repeatables), cron_upkeep.KEY: cron_drift}


class MigrationsProvider(ResourceProvider):
    @presented
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        unknown = unknown_keys(news)
        db_url = news.get("db_url")
        folder = news.get("migrations_dir")
        if not isinstance(folder, str) or not Path(folder).is_dir():
            failures.append(CheckFailure("migrations_dir", f"{folder!r} is not a folder"))
        if "db_url" not in unknown and (why := check_url(db_url)):
            failures.append(CheckFailure("db_url", f"the database URL {why}"))
        owner = news.get("owner")
        if "owner" not in unknown and ownership.stack_of(news) is None:
            failures.append(CheckFailure("owner", "must name the stack (`<project>/<stack>`)"))
        drop_dependents = news.get("drop_dependents", False)
        if not isinstance(drop_dependents, bool):
            failures.append(CheckFailure("drop_dependents", "must be true or false"))
        if not failures and not {"db_url", "owner"} & unknown:
            failures += _database_failures(str(db_url), Path(str(folder)), news, bool(olds))
        inputs = {
            "db_url": db_url,
            "migrations_dir": folder,
            "migrations": news.get("migrations"),
            "repeatables": news.get("repeatables"),
            "owner": owner,
            "drop_dependents": drop_dependents,
        }
        # Checked on every preview and up: drift found here makes the diff, and `up` repairs it.
        inputs[cron_upkeep.KEY] = (
            cron_upkeep.drift(str(db_url)) if not failures and "db_url" not in unknown else []
        )
        return CheckResult(inputs, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # migrations_dir is where the files are, not what they say: it never forces an update.
        return explicit_diff(
            olds,
            news,
            updatable=(
                "migrations",
                "repeatables",
                "db_url",
                "owner",
                "drop_dependents",
                cron_upkeep.KEY,
            ),
        )

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult("supaqueue", _migrate(props, in_state=False))

    @presented
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(_migrate(news, in_state=True))

    @presented
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with connect(props["db_url"]) as conn:
            ledger = _ledger(conn)
            repeatables = _repeatable_ledger(conn) if ledger is not None else []
        if ledger is None:
            return ReadResult("", {})
        return ReadResult(id_, _outs(props, ledger, repeatables))

    @presented
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        text = queries(SQL)
        drop_dependents = bool(props.get("drop_dependents"))
        with connect(props["db_url"]) as conn:
            problems = ownership.destroy_problems(
                conn, ownership.stack_of(props), drop_dependents=drop_dependents
            )
            ownership.refuse_destroy(problems, first=False)
            found = conn.execute(text["uninstall_function_exists"]).fetchone()
            try:
                if found and found[0]:
                    with conn.transaction():
                        conn.execute(text["allow_dropping_dependents"], {"on": drop_dependents})
                        conn.execute(text["uninstall"])
                else:
                    runner.uninstall(
                        conn, Path(props["migrations_dir"]), drop_dependents=drop_dependents
                    )
            except psycopg.Error as exc:
                if exc.sqlstate == "SQ002":  # dependents appeared since the check above
                    ownership.refuse_destroy([exc.diag.message_primary or str(exc)], first=False)
                raise


def _database_failures(
    db_url: str, folder: Path, news: dict[str, Any], in_state: bool
) -> list[CheckFailure]:
    """Found at preview, on one connection: another stack's installation, or this stack's
    vanished one (ownership first: then nothing else matters); an edited applied migration.
    An unreachable database is not a check failure: create/update report it with its message."""
    me = ownership.stack_of(news)
    try:
        loaded = runner.load_migrations(folder)
        with connect(db_url) as conn:
            if me is not None and (problem := ownership.install_problem(conn, me, in_state)):
                return [CheckFailure("owner", problem)]
            runner.plan(conn, loaded)
    except runner.MigrationError as exc:
        return [CheckFailure("migrations", str(exc))]
    except (DatabaseError, psycopg.Error):
        return []
    return []


class Migrations(SupaqueueResource, kind="Migrations"):
    """The supaqueue schema at the version of the newest migration in `migrations_dir`."""

    schema_version: pulumi.Output[int]
    migrations: pulumi.Output[list[dict[str, Any]]]
    repeatables: pulumi.Output[list[dict[str, str]]]
    """The applied repeatable files (`sql/functions/`): `[{"name", "checksum"}]`."""

    owner: pulumi.Output[dict[str, str]]
    """The owning stack: `{"stack": "<project>/<stack>", "stack_id": ...}`."""

    def __init__(
        self,
        name: str,
        db_url: pulumi.Input[str],
        migrations_dir: Path,
        opts: pulumi.ResourceOptions | None = None,
        *,
        owner: pulumi.Input[dict[str, Any]],
        drop_dependents: bool = False,
    ) -> None:
        props = {
            "db_url": db_url,
            "migrations_dir": str(migrations_dir),
            "migrations": declared(migrations_dir),
            "repeatables": declared_repeatables(migrations_dir),
            "owner": owner,
            "drop_dependents": drop_dependents,
        }
        super().__init__(
            name,
            declared_outputs(props, ["schema_version"]),
            with_secret_outputs(opts, ["db_url"]),
        )
