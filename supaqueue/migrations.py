"""The migration runner: numbered migrations once each, then the repeatable files; one transaction.

`sql/NNNN_<name>.sql` change tables and data. Each applies once, recorded in the ledger
`supaqueue.migrations` with its checksum; an applied migration whose file changed is an error
(`MigrationEdited`), never a silent re-run. 0001..0025 are frozen history (they also defined the
functions of their day); from 0026 on, a numbered migration holds only table and data changes.

`sql/functions/NN_<area>.sql` hold every function, procedure, view and trigger as it is today
(`create or replace`): the one place to read them. They are recorded in
`supaqueue.repeatable_migrations` (file name, checksum). When any of them differs from the ledger,
or a numbered migration is pending, all of them are applied again, in file-name order, after the
numbered ones: a table change and the functions that need it commit together or not at all.

Everything runs under one advisory lock in one transaction, so two installers racing cannot both
apply a migration, and a failure leaves the database as it was.

CLI: `python -m supaqueue.migrations {status,apply,uninstall}`. The schema snapshot
(`sql/schema.snapshot.sql`) is dev tooling: `python -m supaqueue.local_stack.schema_snapshot`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from supaqueue import package_data
from supaqueue.clients.postgres import connect
from supaqueue.errors import DatabaseError, SupaqueueError

# The migrations as this package ships them (package data).
SQL_DIR = package_data.folder("sql")
UNINSTALL_FILE = "uninstall.sql"
REPEATABLE_DIR = "functions"

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_REPEATABLE_NAME = re.compile(r"^\d{2}_[a-z0-9_]+\.sql$")
# Serialises every installer of this database (pg_advisory_xact_lock key).
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('supaqueue.migrations', 0))"
# How many times one upgrade runs when it deadlocks with the running engine.
_ATTEMPTS = 3
# After an upgrade: touch supaqueue's pg_cron jobs (an UPDATE of cron.job, so pg_cron reloads its
# job list). One large transaction can overflow the invalidation queue of pg_cron's idle
# scheduler, and pg_cron 1.4 then misses that cron.job changed: the tick never ran (seen in the
# e2e test: rate-limited jobs waited for a tick that never came).
_CRON_RELOAD_SQL = """
select cron.alter_job(j.jobid, active => j.active)
from cron.job j
where to_regprocedure('supaqueue.cron_job_names()') is not null
  and j.jobname = any (supaqueue.cron_job_names())
"""
_LEDGER_SQL = """
create schema if not exists supaqueue;
create table if not exists supaqueue.migrations (
  version integer primary key,
  name text not null,
  checksum text not null,
  applied_at timestamptz not null default now()
);
create table if not exists supaqueue.repeatable_migrations (
  name text primary key,
  checksum text not null,
  applied_at timestamptz not null default now()
);
"""


class MigrationError(SupaqueueError):
    """The migrations on disk and in the database cannot be reconciled."""


class MigrationEdited(MigrationError):
    """A migration that is already applied no longer matches its file."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True)
class Repeatable:
    """A file of `sql/functions/`: applied again whenever the set of these files changes."""

    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        return f"{REPEATABLE_DIR}/{self.name}"


class MigrationSet(list[Migration]):
    """The numbered migrations of a folder, in order, and its repeatable files (`repeatables`).

    A plain list of migrations (the first k of them: an installation of an earlier version, as
    the tests build one) has no repeatable files: `apply` then applies exactly those migrations."""

    def __init__(self, migrations: list[Migration], repeatables: list[Repeatable]) -> None:
        super().__init__(migrations)
        self.repeatables: tuple[Repeatable, ...] = tuple(repeatables)


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: datetime


def _read(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    try:
        return data.decode("utf-8"), hashlib.sha256(data).hexdigest()
    except UnicodeDecodeError as exc:
        raise MigrationError(f"migration {path.name} is not UTF-8: {exc}") from exc


def load_migrations(directory: Path | str = SQL_DIR) -> MigrationSet:
    """Every `NNNN_<name>.sql` in `directory`, by version, with the repeatable files of its
    `functions/` folder. Other files (snapshot, uninstall) are not migrations. Checksum = sha256
    of the file bytes."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations with version {version:04d}: {found[version].path.name} "
                f"and {path.name}"
            )
        text, checksum = _read(path)
        found[version] = Migration(version, match.group(2), path, text, checksum)
    if not found:
        raise MigrationError(f"no migrations (NNNN_<name>.sql) in {directory}")
    return MigrationSet([found[v] for v in sorted(found)], load_repeatables(directory))


def load_repeatables(directory: Path | str = SQL_DIR) -> list[Repeatable]:
    """The files `functions/NN_<area>.sql` of `directory`, in the order they apply (by name)."""
    folder = Path(directory) / REPEATABLE_DIR
    if not folder.is_dir():
        return []
    found: list[Repeatable] = []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        if _REPEATABLE_NAME.fullmatch(path.name) is None:
            raise MigrationError(
                f"{REPEATABLE_DIR}/{path.name}: a repeatable file is named NN_<area>.sql "
                "(two digits for its place in the order, then lower-case letters, digits, _)"
            )
        text, checksum = _read(path)
        found.append(Repeatable(path.stem, path, text, checksum))
    return found


def applied(conn: psycopg.Connection) -> dict[int, AppliedMigration]:
    """The ledger: {version: AppliedMigration}; empty when supaqueue is not installed."""
    exists = conn.execute("select to_regclass('supaqueue.migrations') is not null").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(
        "select version, name, checksum, applied_at from supaqueue.migrations order by version"
    ).fetchall()
    return {int(r[0]): AppliedMigration(int(r[0]), r[1], r[2], r[3]) for r in rows}


def applied_repeatables(conn: psycopg.Connection) -> dict[str, str]:
    """The repeatable ledger: {file name without .sql: checksum}; empty before any applied."""
    exists = conn.execute(
        "select to_regclass('supaqueue.repeatable_migrations') is not null"
    ).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("select name, checksum from supaqueue.repeatable_migrations").fetchall()
    return {str(name): str(checksum) for name, checksum in rows}


def plan(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    """The numbered migrations still to apply, in order. Raises `MigrationEdited` when an
    applied one's file changed, `MigrationError` when the database holds a migration these files
    do not know."""
    return _pending(applied(conn), migrations)


def repeatables_due(conn: psycopg.Connection, migrations: list[Migration]) -> list[Repeatable]:
    """The repeatable files `apply` would run now: all of them, or none."""
    return _due(applied_repeatables(conn), _repeatables(migrations), bool(plan(conn, migrations)))


def _repeatables(migrations: list[Migration]) -> tuple[Repeatable, ...]:
    return migrations.repeatables if isinstance(migrations, MigrationSet) else ()


def _due(
    recorded: dict[str, str], repeatables: tuple[Repeatable, ...], numbered_pending: bool
) -> list[Repeatable]:
    # All or none: a view or trigger uses functions of other files, a table change may have
    # dropped a view, and the privilege pass (the last file) must see every routine.
    if not repeatables:
        return []
    current = {r.name: r.checksum for r in repeatables}
    return list(repeatables) if numbered_pending or recorded != current else []


def _pending(done: dict[int, AppliedMigration], migrations: list[Migration]) -> list[Migration]:
    known = {m.version: m for m in migrations}
    unknown = sorted(set(done) - set(known))
    if unknown:
        names = ", ".join(f"{v:04d}_{done[v].name}" for v in unknown)
        raise MigrationError(
            f"the database has migrations these files do not have ({names}): "
            "it was installed by a newer supaqueue; upgrade this checkout instead"
        )
    for version, record in done.items():
        migration = known[version]
        if record.checksum != migration.checksum:
            raise MigrationEdited(
                f"migration {migration.label} was applied on {record.applied_at:%Y-%m-%d %H:%M} "
                f"but its file has changed since (checksum {record.checksum[:12]}… in the "
                f"database, {migration.checksum[:12]}… on disk). Applied migrations are never "
                "re-run: restore the file and put the change in a new migration."
            )
    return [m for m in migrations if m.version not in done]


def apply(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration | Repeatable]:
    """Apply the pending numbered migrations, then (when due) every repeatable file, in one
    transaction. Returns what was applied here, in order (a racing installer that got the lock
    first leaves nothing to do)."""
    if not conn.autocommit and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise MigrationError("apply() needs a connection that is not inside a transaction")
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            done = _apply_once(conn, migrations)
            if done:
                _reload_cron(conn)
            return done
        except psycopg.errors.DeadlockDetected as exc:
            # Re-creating a trigger locks its table: a running tick or dispatch that holds one
            # of supaqueue's tables and waits for another can deadlock with it. Postgres rolled
            # the whole upgrade back, so it can simply run again.
            if attempt == _ATTEMPTS:
                raise MigrationError(
                    f"the upgrade deadlocked with the running engine {attempt} times (nothing of it"
                    " was applied): run it again"
                ) from exc
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"database connection failed while migrating: {exc}") from exc
    raise AssertionError("unreachable")


def _reload_cron(conn: psycopg.Connection) -> None:
    exists = conn.execute(
        "select to_regclass('cron.job') is not null"
        " and to_regprocedure('cron.alter_job(bigint,text,text,text,text,boolean)') is not null"
    ).fetchone()
    if not exists or not exists[0]:
        return  # no pg_cron in this database: nothing schedules the tick here
    try:
        with conn.transaction():
            conn.execute(_CRON_RELOAD_SQL)
    except psycopg.errors.InsufficientPrivilege:
        pass  # jobs another role scheduled: the upgrade stands; pg_cron reloads on its next change


def _apply_once(
    conn: psycopg.Connection, migrations: list[Migration]
) -> list[Migration | Repeatable]:
    with conn.transaction():
        conn.execute(_LOCK_SQL)
        conn.execute(_LEDGER_SQL)
        pending = plan(conn, migrations)
        due = _due(applied_repeatables(conn), _repeatables(migrations), bool(pending))
        for migration in pending:
            conn.execute(
                "insert into supaqueue.migrations (version, name, checksum) values (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            _execute(conn, migration.label, migration.sql)
        for repeatable in due:
            _execute(conn, repeatable.label, repeatable.sql)
        if due:
            conn.execute("delete from supaqueue.repeatable_migrations")
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into supaqueue.repeatable_migrations (name, checksum) values (%s, %s)",
                    [(r.name, r.checksum) for r in due],
                )
    return [*pending, *due]


def _execute(conn: psycopg.Connection, label: str, text: str) -> None:
    try:
        conn.execute(text.encode())
    except psycopg.errors.DeadlockDetected:
        raise  # apply() runs the upgrade again
    except psycopg.Error as exc:
        raise MigrationError(
            f"error applying migration {label}: {_describe(exc)} (nothing of this upgrade was "
            "applied)"
        ) from exc


def uninstall(
    conn: psycopg.Connection, directory: Path | str = SQL_DIR, *, drop_dependents: bool = False
) -> None:
    """Unschedule supaqueue's pg_cron jobs and drop the schema (sql/uninstall.sql). Refuses
    (SQLSTATE SQ002) while objects outside the schema depend on it, unless `drop_dependents`."""
    script = (Path(directory) / UNINSTALL_FILE).read_bytes()
    with conn.transaction():
        conn.execute(
            "select set_config('supaqueue.drop_dependents', %s, true)",
            ("on" if drop_dependents else "off",),
        )
        conn.execute(script)


def _describe(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or str(exc).strip()
    if diag.sqlstate:
        text = f"{text} [SQLSTATE {diag.sqlstate}]"
    if diag.context:
        text = f"{text}; where: {diag.context.splitlines()[0]}"
    return text


# ---- CLI ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supaqueue.migrations", description="supaqueue's SQL migrations"
    )
    parser.add_argument("--dir", type=Path, default=SQL_DIR, help="migrations directory")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("status", "list applied and pending migrations"),
        ("apply", "apply pending migrations"),
        ("uninstall", "unschedule supaqueue's cron jobs and drop the schema"),
    ]:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--dsn", default=os.environ.get("DB_URL"), help="database (default $DB_URL)")
        if name == "uninstall":
            p.add_argument(
                "--drop-dependents",
                action="store_true",
                help="also drop objects outside the schema that depend on it (default: refuse)",
            )
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (SupaqueueError, psycopg.Error, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if not args.dsn:
        raise MigrationError("no database: pass --dsn or set DB_URL")
    with connect(args.dsn) as conn:  # its errors never show the password
        if args.command == "uninstall":
            uninstall(conn, directory, drop_dependents=args.drop_dependents)
            print("supaqueue uninstalled")
            return 0
        migrations = load_migrations(directory)
        if args.command == "apply":
            done = apply(conn, migrations)
            print(f"applied {len(done)} migration(s)" + "".join(f"\n  {m.label}" for m in done))
            return 0
        records = applied(conn)
        pending = {m.version for m in _pending(records, migrations)}
        for m in migrations:
            state = (
                "pending" if m.version in pending else f"applied {records[m.version].applied_at}"
            )
            print(f"{m.label}  {state}")
        due = _due(applied_repeatables(conn), migrations.repeatables, bool(pending))
        for r in migrations.repeatables:
            print(f"{r.label}  {'pending' if due else 'applied'}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
