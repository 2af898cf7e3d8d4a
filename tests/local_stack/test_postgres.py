"""The local cluster: settings, bootstrap, start errors, stop, persistence (real PostgreSQL 15)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from supaqueue.local_stack.postgres import Cluster, ClusterError, free_port, generate_password


@pytest.fixture
def fresh_cluster() -> Iterator[Cluster]:
    """A cluster of its own (initialised, not started), for lifecycle tests."""
    root = Path(tempfile.mkdtemp(prefix="supaqueue-test-lifecycle-"))
    os.chmod(root, 0o755)
    cluster = Cluster(
        data_dir=root / "pgdata", port=free_port(), password=generate_password(), fast=True
    )
    cluster.init()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _processes_using(data_dir: Path) -> list[int]:
    """PIDs whose command line names `data_dir` (the postmaster and its children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(data_dir) in cmdline:
            pids.append(int(entry.name))
    return pids


def test_session_cluster_is_bootstrapped_like_supabase(pg_cluster: Cluster) -> None:
    # Settings and pg_hba rules are the superuser's to read (as on Supabase).
    with pg_cluster.admin_connect() as conn:
        settings: dict[Any, Any] = dict(
            conn.execute(
                "select name, setting from pg_settings where name = any(%s)",
                (
                    [
                        "listen_addresses",
                        "shared_preload_libraries",
                        "cron.database_name",
                        "cron.use_background_workers",
                        "password_encryption",
                    ],
                ),
            ).fetchall()
        )
        assert settings == {
            "listen_addresses": "127.0.0.1",
            # pg_cron, plus pg_net and supabase_vault on a server built with them
            "shared_preload_libraries": ",".join(pg_cluster.plan.preload),
            "cron.database_name": "postgres",
            "cron.use_background_workers": "on",
            "password_encryption": "scram-sha-256",
        }
        roles: dict[Any, Any] = dict(
            conn.execute(
                "select rolname, rolcanlogin from pg_roles where rolname = any(%s)",
                (
                    [
                        "supabase_admin",
                        "postgres",
                        "anon",
                        "authenticated",
                        "service_role",
                        "authenticator",
                    ],
                ),
            ).fetchall()
        )
        assert roles == {
            "supabase_admin": True,
            "postgres": True,
            "anon": False,
            "authenticated": False,
            "service_role": False,
            "authenticator": False,
        }
        extensions = {r[0] for r in conn.execute("select extname from pg_extension").fetchall()}
        assert {"pg_cron", "pgcrypto"} <= extensions
        schemas = {r[0] for r in conn.execute("select nspname from pg_namespace").fetchall()}
        assert {"cron", "net", "vault", "extensions"} <= schemas
        hba = conn.execute(
            "select type, address, auth_method from pg_hba_file_rules where error is null"
        ).fetchall()
        assert hba, "pg_hba.conf has no rules"
        assert all(method == "scram-sha-256" for _, _, method in hba)
        assert {address for kind, address, _ in hba if kind == "host"} == {"127.0.0.1"}


def test_postgres_has_the_hosted_role_model(pg_cluster: Cluster) -> None:
    """As on hosted Supabase (docs/reference/supabase-platform.md, "Roles")."""
    with pg_cluster.connect() as conn:
        attrs = conn.execute(
            "select rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication,"
            " rolbypassrls from pg_roles where rolname = current_user"
        ).fetchone()
        assert conn.execute("select current_user").fetchone() == ("postgres",)
        assert attrs == (False, True, True, True, True, True)
        admin = conn.execute(
            "select rolsuper from pg_roles where rolname = 'supabase_admin'"
        ).fetchone()
        assert admin == (True,)
        member_of = {
            r[0]
            for r in conn.execute(
                "select b.rolname from pg_auth_members m join pg_roles b on b.oid = m.roleid"
                " join pg_roles u on u.oid = m.member where u.rolname = 'postgres'"
            ).fetchall()
        }
        assert member_of == {
            "anon",
            "authenticated",
            "service_role",
            "pg_monitor",
            "pg_read_all_data",
            "pg_signal_backend",
        }

        def may(privilege: str, obj: str, kind: str = "table") -> bool:
            row = conn.execute(
                f"select has_{kind}_privilege('postgres', %s, %s)", (obj, privilege)
            ).fetchone()
            return bool(row and row[0])

        assert may("CREATE", "postgres", "database")
        # pg_cron: use it, read the jobs (only the functions write them), prune the history.
        assert may("USAGE", "cron", "schema")
        assert may("EXECUTE", "cron.schedule(text, text, text)", "function")
        assert may("EXECUTE", "cron.unschedule(bigint)", "function")
        assert may("SELECT", "cron.job")
        assert not may("INSERT", "cron.job") and not may("UPDATE", "cron.job")
        assert not may("DELETE", "cron.job")
        assert may("DELETE", "cron.job_run_details") and may("SELECT", "cron.job_run_details")
        # Vault: read and delete; write through the functions only.
        assert may("USAGE", "vault", "schema")
        for relation in ("vault.secrets", "vault.decrypted_secrets"):
            assert may("SELECT", relation) and may("DELETE", relation)
            assert not may("INSERT", relation) and not may("UPDATE", relation)
        assert may("EXECUTE", "vault.create_secret(text, text, text, uuid)", "function")
        assert may("EXECUTE", "vault.update_secret(uuid, text, text, text, uuid)", "function")
        # pg_net: everyone may call it.
        assert may("EXECUTE", "net.http_post(text, jsonb, jsonb, jsonb, integer)", "function")


@pytest.mark.parametrize(
    "statement",
    [
        "alter system set work_mem = '8MB'",
        "select pg_read_file('postgresql.conf')",
        "alter role postgres superuser",
        "insert into vault.secrets (secret) values ('x')",
        "update cron.job set active = false",
        "copy (select 1) to program 'true'",
    ],
)
def test_superuser_statements_fail_for_postgres_as_on_supabase(
    pg_cluster: Cluster, statement: str
) -> None:
    with (
        pg_cluster.connect() as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def test_test_databases_have_the_role_model_too(pg_conn: psycopg.Connection) -> None:
    row = pg_conn.execute(
        "select current_user, rolsuper from pg_roles where rolname = current_user"
    ).fetchone()
    assert row == ("postgres", False)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        pg_conn.execute("insert into vault.secrets (secret) values ('x')")
    secret = pg_conn.execute("select vault.create_secret('s3cret', 'probe')").fetchone()
    assert secret is not None
    decrypted = pg_conn.execute(
        "select decrypted_secret from vault.decrypted_secrets where name = 'probe'"
    ).fetchone()
    assert decrypted == ("s3cret",)


def test_password_is_required(pg_cluster: Cluster) -> None:
    bad = pg_cluster.dsn().replace(pg_cluster.password, "wrong-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=5)


def test_bootstrap_is_idempotent(pg_cluster: Cluster) -> None:
    pg_cluster.bootstrap("postgres")
    pg_cluster.bootstrap("postgres")
    with pg_cluster.connect() as conn:
        count = conn.execute(
            "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = 'net' and p.proname = 'http_post'"
        ).fetchone()
        assert count == (1,)


def test_each_test_database_is_fresh_and_has_the_standins(pg_conn: psycopg.Connection) -> None:
    schemas = {r[0] for r in pg_conn.execute("select nspname from pg_namespace").fetchall()}
    assert {"net", "vault", "extensions"} <= schemas
    assert "cron" not in schemas  # pg_cron lives in the postgres database only
    # A table made by another test would be here if databases were shared.
    pg_conn.execute("create table isolation_probe (x int)")
    assert pg_conn.execute("select count(*) from net.http_request_queue").fetchone() == (0,)


def test_each_test_database_is_fresh_again(pg_conn: psycopg.Connection) -> None:
    found = pg_conn.execute("select to_regclass('public.isolation_probe')").fetchone()
    assert found == (None,)


def test_start_with_port_taken_gives_a_clear_error(fresh_cluster: Cluster) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", fresh_cluster.port))
        blocker.listen(1)
        with pytest.raises(ClusterError, match=rf"port {fresh_cluster.port} .* already in use"):
            fresh_cluster.start()
    assert not fresh_cluster.is_running()
    assert _processes_using(fresh_cluster.data_dir) == []


def test_failed_start_reports_log_tail_and_leaves_nothing_running(fresh_cluster: Cluster) -> None:
    conf = fresh_cluster.data_dir / "postgresql.conf"
    conf.write_text(conf.read_text() + "\nshared_buffers = 'not-a-size'\n")
    with pytest.raises(ClusterError) as info:
        fresh_cluster.start()
    message = str(info.value)
    assert "failed to start" in message
    assert "server log tail" in message
    assert "shared_buffers" in message
    assert not fresh_cluster.is_running()
    assert _processes_using(fresh_cluster.data_dir) == []


def test_init_refuses_a_foreign_non_empty_directory() -> None:
    root = Path(tempfile.mkdtemp(prefix="supaqueue-test-foreign-"))
    os.chmod(root, 0o755)
    try:
        data = root / "pgdata"
        data.mkdir()
        (data / "something.txt").write_text("not a cluster")
        cluster = Cluster(data_dir=data, port=free_port(), password="x" * 16)
        with pytest.raises(ClusterError, match="not empty and holds no cluster"):
            cluster.init()
        assert (data / "something.txt").read_text() == "not a cluster"  # left untouched
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_stop_leaves_no_process_and_data_survives_restart(fresh_cluster: Cluster) -> None:
    fresh_cluster.start()
    fresh_cluster.bootstrap()
    assert fresh_cluster.is_running()
    with fresh_cluster.connect() as conn:
        conn.execute("create table kept (v text)")
        conn.execute("insert into kept values ('survives')")
        conn.execute("select vault.create_secret('restart-secret', 'restart')")
    assert _processes_using(fresh_cluster.data_dir) != []

    fresh_cluster.stop()
    assert not fresh_cluster.is_running()
    assert _processes_using(fresh_cluster.data_dir) == []
    assert not (fresh_cluster.data_dir / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(fresh_cluster.dsn(), connect_timeout=3)

    fresh_cluster.start()
    with fresh_cluster.connect() as conn:
        assert conn.execute("select v from kept").fetchall() == [("survives",)]
        row = conn.execute(
            "select decrypted_secret from vault.decrypted_secrets where name = 'restart'"
        ).fetchone()
        assert row == ("restart-secret",)
    fresh_cluster.start()  # already running: a no-op, not an error
    fresh_cluster.stop()
    fresh_cluster.stop()  # already stopped: a no-op
    assert _processes_using(fresh_cluster.data_dir) == []


def test_dsn_shape(fresh_cluster: Cluster) -> None:
    assert fresh_cluster.dsn("db1") == (
        f"postgresql://postgres:{fresh_cluster.password}@127.0.0.1:{fresh_cluster.port}/db1"
    )


def test_unreachable_state_folder_is_a_clear_error() -> None:
    private = Path(tempfile.mkdtemp(prefix="supaqueue-test-private-"))  # 0700, ours
    try:
        cluster = Cluster(data_dir=private / "pgdata", port=free_port(), password="p" * 20)
        if os.geteuid() == 0:
            # As root the server runs as `postgres`, which cannot enter a 0700 root folder.
            with pytest.raises(ClusterError, match=r"cannot reach .*chmod o\+x"):
                cluster.init()
        else:
            cluster.init()  # the server runs as us: nothing to refuse
            assert cluster.is_initialized()
    finally:
        shutil.rmtree(private, ignore_errors=True)
