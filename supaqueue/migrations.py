"""The migration runner: applies `sql/NNNN_<name>.sql` in order, once each, recorded in the DB.

Each migration runs in its own transaction under one advisory lock and records itself in the
ledger `supaqueue.migrations` before its SQL runs, so two installers racing cannot both apply it.
An applied migration whose file changed is an error (`MigrationEdited`), never a silent re-run.

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

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises every installer of this database (pg_advisory_xact_lock key).
_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('supaqueue.migrations', 0))"
_LEDGER_SQL = """
create schema if not exists supaqueue;
create table if not exists supaqueue.migrations (
  version integer primary key,
  name text not null,
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
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: datetime


def load_migrations(directory: Path | str = SQL_DIR) -> list[Migration]:
    """Every `NNNN_<name>.sql` in `directory`, by version. Other files (snapshot, uninstall) are
    not migrations. Checksum = sha256 of the file bytes."""
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
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"migration {path.name} is not UTF-8: {exc}") from exc
        found[version] = Migration(
            version, match.group(2), path, text, hashlib.sha256(data).hexdigest()
        )
    if not found:
        raise MigrationError(f"no migrations (NNNN_<name>.sql) in {directory}")
    return [found[v] for v in sorted(found)]


def applied(conn: psycopg.Connection) -> dict[int, AppliedMigration]:
    """The ledger: {version: AppliedMigration}; empty when supaqueue is not installed."""
    exists = conn.execute("select to_regclass('supaqueue.migrations') is not null").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(
        "select version, name, checksum, applied_at from supaqueue.migrations order by version"
    ).fetchall()
    return {int(r[0]): AppliedMigration(int(r[0]), r[1], r[2], r[3]) for r in rows}


def plan(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    """The migrations still to apply, in order. Raises `MigrationEdited` when an applied one's
    file changed, `MigrationError` when the database holds a migration these files do not know."""
    return _pending(applied(conn), migrations)


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


def apply(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    """Apply the pending migrations, each in its own transaction. Returns those applied here
    (a racing installer may have applied some of them first)."""
    if not conn.autocommit and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise MigrationError("apply() needs a connection that is not inside a transaction")
    done: list[Migration] = []
    try:
        with conn.transaction():
            conn.execute(_LOCK_SQL)
            conn.execute(_LEDGER_SQL)
        for migration in plan(conn, migrations):
            with conn.transaction():
                conn.execute(_LOCK_SQL)
                # Record first: the primary key turns a second, racing apply into a no-op.
                inserted = conn.execute(
                    "insert into supaqueue.migrations (version, name, checksum)"
                    " values (%s, %s, %s) on conflict (version) do nothing returning version",
                    (migration.version, migration.name, migration.checksum),
                ).fetchone()
                if inserted is None:
                    _pending(applied(conn), migrations)  # raises if theirs differs from ours
                    continue
                try:
                    conn.execute(migration.sql.encode())
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"error applying migration {migration.label}: "
                        f"{_describe(exc)} (nothing of it was applied)"
                    ) from exc
            done.append(migration)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"database connection failed while migrating: {exc}") from exc
    return done


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
        return 0


if __name__ == "__main__":
    sys.exit(main())
