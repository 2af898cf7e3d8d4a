"""The checked schema snapshot `sql/schema.snapshot.sql`: every migration and repeatable file
(`sql/functions/`) applied to a scratch database, dumped with pg_dump and normalised. Dev
tooling (it needs a cluster with the Supabase roles and the net/vault stand-ins), so it lives
here, not in the shipped library.

    python -m supaqueue.local_stack.schema_snapshot            # regenerate sql/schema.snapshot.sql
    python -m supaqueue.local_stack.schema_snapshot --check    # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from supaqueue.errors import DatabaseError, SupaqueueError
from supaqueue.local_stack.postgres import PG_BIN, USER_ROLE, Cluster
from supaqueue.local_stack.standins import install_standins, standin_sql
from supaqueue.migrations import SQL_DIR, apply, load_migrations

SNAPSHOT_FILE = "schema.snapshot.sql"
# supaqueue_api: the Data API's wrappers (sql/0024, sql/functions/85_data_api.sql).
SCHEMAS = ("supaqueue", "supaqueue_api")
REGENERATE = "python -m supaqueue.local_stack.schema_snapshot"

_DROP_LINE = re.compile(r"^(--.*|SET .*|SELECT pg_catalog\.set_config\(.*|\\(un)?restrict .*)$")


def normalise_dump(text: str) -> str:
    """pg_dump output without what varies between runs and versions: comments, SET lines,
    pg_dump 15.14+'s random `\\restrict` keys, runs of blank lines."""
    kept = [line.rstrip() for line in text.splitlines() if not _DROP_LINE.match(line)]
    out: list[str] = []
    for line in kept:
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def dump_schema(dsn: str) -> str:
    """`pg_dump --schema-only` of schemas supaqueue and supaqueue_api at `dsn`, normalised."""
    # The password goes through the environment, never the command line (visible in ps).
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    proc = subprocess.run(
        [
            str(PG_BIN / "pg_dump"),
            "--schema-only",
            *(arg for schema in SCHEMAS for arg in ("--schema", schema)),
            "--dbname",
            psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()}),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if proc.returncode != 0:
        raise DatabaseError(f"pg_dump failed: {proc.stderr.strip()}")
    return normalise_dump(proc.stdout)


def schema_after_migrations(admin_dsn: str, directory: Path | str = SQL_DIR) -> str:
    """Apply every migration to a new scratch database of the cluster at `admin_dsn` and dump it.
    The cluster needs the Supabase roles and the net/vault stand-ins (or extensions).

    Connected as a superuser (the cluster's admin role), the extensions are created by it, as
    supautils does on Supabase (the real pg_net is untrusted: `postgres` cannot create it), with
    the grants Supabase gives `postgres`; the migrations then run as `postgres`, so the objects
    are owned as on a hosted project. Connected as a non-superuser, everything runs as that role
    (the stand-ins only)."""
    name = f"supaqueue_snapshot_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        row = admin.execute(
            "select rolsuper, exists (select 1 from pg_roles where rolname = %s and not rolsuper)"
            " from pg_roles where rolname = current_user",
            (USER_ROLE,),
        ).fetchone()
        superuser, hosted = bool(row and row[0]), bool(row and row[1])
        create = sql.SQL("create database {}").format(sql.Identifier(name))
        if superuser and hosted:
            create += sql.SQL(" owner {}").format(sql.Identifier(USER_ROLE))
        admin.execute(create)
        try:
            scratch_dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
            with psycopg.connect(scratch_dsn, autocommit=True) as conn:
                try:
                    install_standins(conn)
                except psycopg.errors.InsufficientPrivilege as exc:
                    # The real pg_net (and supabase_vault) only a superuser may create.
                    raise DatabaseError(
                        f"{exc.diag.message_primary}: this server has the real extensions, which"
                        " only its superuser may create; pass --admin-dsn as the admin role"
                        " (supabase_admin) or leave it out to use a temporary cluster"
                    ) from exc
                if superuser and hosted:
                    conn.execute(standin_sql("hosted_grants.sql"))  # type: ignore[arg-type]
                    conn.execute(sql.SQL("set role {}").format(sql.Identifier(USER_ROLE)))
                apply(conn, load_migrations(directory))
            return dump_schema(scratch_dsn)
        finally:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def schema_in_temporary_cluster(directory: Path | str = SQL_DIR) -> str:
    """`schema_after_migrations` in a throwaway cluster of its own."""
    with Cluster.temporary(prefix="supaqueue-snapshot-") as cluster:
        return schema_after_migrations(cluster.dsn(user=cluster.admin_user), directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE,
        description=f"regenerate (or --check) sql/{SNAPSHOT_FILE}",
    )
    parser.add_argument("--dir", type=Path, default=SQL_DIR, help="migrations directory")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 when {SNAPSHOT_FILE} is out of date"
    )
    parser.add_argument(
        "--admin-dsn",
        help="a cluster to create a scratch database in, best as its superuser (supabase_admin: "
        "the real pg_net needs it); default: a temporary cluster",
    )
    args = parser.parse_args(argv)
    directory: Path = args.dir
    try:
        if args.admin_dsn:
            dumped = schema_after_migrations(args.admin_dsn, directory)
        else:
            dumped = schema_in_temporary_cluster(directory)
    except (SupaqueueError, psycopg.Error, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    target = directory / SNAPSHOT_FILE
    if not args.check:
        target.write_text(dumped)
        print(f"wrote {target}")
        return 0
    if target.exists() and target.read_text() == dumped:
        print(f"{target} is up to date")
        return 0
    print(f"{target} is out of date: run `{REGENERATE}`")
    return 1


if __name__ == "__main__":
    sys.exit(main())
