"""Shared pytest fixtures. Add yours below, additively; keep them generic."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from supaqueue.local_stack.postgres import Cluster

TEMPLATE_DB = "supaqueue_test_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A fresh PostgreSQL 15 + pg_cron cluster for the session, bootstrapped like Supabase.

    The `postgres` database has pg_cron (`cron` schema: pg_cron only lives in
    `cron.database_name`), pgcrypto (schema `extensions`), and the `net`/`vault` stand-ins.
    Also builds the template that `pg_dsn` copies. Stopped and deleted at the end of the session.
    """
    with Cluster.temporary(prefix="supaqueue-test-pg-") as cluster:
        with cluster.connect() as conn:
            conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(TEMPLATE_DB)))
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(TEMPLATE_DB)))
        cluster.bootstrap(TEMPLATE_DB)
        with cluster.connect() as conn:
            # No connections to the template, so concurrent CREATE DATABASE … TEMPLATE never fails.
            conn.execute(
                sql.SQL("alter database {} with allow_connections false is_template true").format(
                    sql.Identifier(TEMPLATE_DB)
                )
            )
        yield cluster


@contextlib.contextmanager
def fresh_database(cluster: Cluster, template: str) -> Iterator[str]:
    """DSN (as `postgres`) of a new database copied from `template`; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with cluster.connect() as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    try:
        yield cluster.dsn(name)
    finally:
        with cluster.connect() as conn:
            drop = sql.SQL("drop database if exists {} with (force)")
            conn.execute(drop.format(sql.Identifier(name)))


def make_template(cluster: Cluster, name: str, prepare: Callable[[str], None]) -> str:
    """A template database: a copy of the bootstrapped one, then `prepare(dsn)` (once per
    session, instead of once per test), then closed to connections so that concurrent
    CREATE DATABASE … TEMPLATE never fails."""
    with cluster.connect() as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE_DB)
            )
        )
    prepare(cluster.dsn(name))
    with cluster.connect() as conn:
        conn.execute(
            sql.SQL("alter database {} with allow_connections false is_template true").format(
                sql.Identifier(name)
            )
        )
    return name


@pytest.fixture
def pg_dsn(pg_cluster: Cluster) -> Iterator[str]:
    """DSN (as `postgres`) of a fresh database for this test, copied from the bootstrapped template.

    It has pgcrypto, `net` and `vault` but no `cron` schema (pg_cron is in `postgres` only: use
    `pg_cluster.dsn()` and `cron.schedule_in_database(...)` for cron tests). Dropped afterwards.
    """
    with fresh_database(pg_cluster, TEMPLATE_DB) as dsn:
        yield dsn


@pytest.fixture
def pg_conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this test's fresh database."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


# --- the whole local stack (Postgres + daemon), as `supaqueue dev up` starts it -------------


class LocalStack:
    """A running local stack: `.env` is `supaqueue dev status -o env` as a dict, `.dir` its
    state folder. `deploy()` puts an Edge Function there through the Management API stand-in."""

    def __init__(self, state_dir: Path, env: dict[str, str]) -> None:
        self.dir = state_dir
        self.env = env

    def deploy(
        self,
        slug: str,
        files: Mapping[str, str | bytes],
        entrypoint: str = "index.ts",
        verify_jwt: bool = True,
        import_map: str | None = None,
    ) -> dict[str, object]:
        import json

        import httpx

        metadata: dict[str, object] = {"entrypoint_path": entrypoint, "verify_jwt": verify_jwt}
        if import_map:
            metadata["import_map_path"] = import_map
        parts: list[tuple[str, tuple[str | None, str | bytes, str]]] = [
            ("metadata", (None, json.dumps(metadata), "application/json"))
        ]
        parts += [
            ("file", (name, data, "application/octet-stream")) for name, data in files.items()
        ]
        response = httpx.post(
            f"{self.env['MANAGEMENT_API_URL']}/v1/projects/{self.env['PROJECT_REF']}/functions/deploy",
            params={"slug": slug},
            headers={"Authorization": f"Bearer {self.env['ACCESS_TOKEN']}"},
            files=parts,
            timeout=60,
        )
        if response.status_code != 201:
            raise RuntimeError(f"deploy {slug} failed: {response.status_code} {response.text}")
        result: dict[str, object] = response.json()
        return result


def supaqueue_dev(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (`supaqueue dev ...`) in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "supaqueue.local_stack.cli", "dev", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """A whole local stack in a temp dir for the session, destroyed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="supaqueue-test-stack-"))
    os.chmod(root, 0o755)  # the postgres OS user must reach pgdata inside it
    state_dir = root / "stack"
    try:
        started = supaqueue_dev("up", "--dir", str(state_dir))
        if started.returncode != 0:
            raise RuntimeError(f"supaqueue dev up failed: {started.stderr.strip()}")
        status = supaqueue_dev("status", "-o", "env", "--dir", str(state_dir))
        if status.returncode != 0:
            raise RuntimeError(f"supaqueue dev status failed: {status.stderr.strip()}")
        env = dict(line.split("=", 1) for line in status.stdout.splitlines() if "=" in line)
        yield LocalStack(state_dir, env)
    finally:
        supaqueue_dev("destroy", "--dir", str(state_dir))
        shutil.rmtree(root, ignore_errors=True)
