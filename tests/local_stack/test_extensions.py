"""Real pg_net / supabase_vault where installed, stand-ins elsewhere: the decision logic, and the
cluster settings it leads to. The real extensions are not installable here, so their branch is
tested through the plan and the files it writes; the stand-in branch runs for real."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from supaqueue.local_stack.extensions import (
    ExtensionPlan,
    detect,
    installed_extensions,
    server_dirs,
)
from supaqueue.local_stack.postgres import PG_BIN, Cluster, free_port, generate_password
from supaqueue.local_stack.standins import standin_sql


def fake_server(root: Path, *, control: set[str], library: set[str]) -> tuple[Path, Path]:
    share, lib = root / "share", root / "lib"
    (share / "extension").mkdir(parents=True)
    lib.mkdir()
    for name in control:
        (share / "extension" / f"{name}.control").write_text("default_version = '1'\n")
    for name in library:
        (lib / f"{name}.so").write_bytes(b"")
    return share, lib


def test_an_extension_counts_as_installed_only_with_its_control_file_and_library(
    tmp_path: Path,
) -> None:
    dirs = fake_server(
        tmp_path, control={"pg_net", "supabase_vault", "other"}, library={"pg_net", "other"}
    )
    assert installed_extensions(*dirs) == {"pg_net"}


@pytest.mark.parametrize(
    ("installed", "preload", "net", "vault", "sender"),
    [
        (set(), ("pg_cron",), "stand-in", "stand-in", True),
        ({"pg_net"}, ("pg_cron", "pg_net"), "extension", "stand-in", False),
        ({"supabase_vault"}, ("pg_cron", "supabase_vault"), "stand-in", "extension", True),
        (
            {"supabase_vault", "pg_net"},
            ("pg_cron", "pg_net", "supabase_vault"),
            "extension",
            "extension",
            False,
        ),
    ],
)
def test_the_plan_preloads_what_is_installed_and_never_runs_two_senders(
    installed: set[str], preload: tuple[str, ...], net: str, vault: str, sender: bool
) -> None:
    plan = ExtensionPlan(frozenset(installed))
    assert plan.preload == preload
    assert plan.describe() == {"net": net, "vault": vault}
    assert plan.standin_sender is sender
    settings = plan.settings(Path("/state/vault-getkey"))
    assert settings["shared_preload_libraries"] == ",".join(preload)
    assert ("vault.getkey_script" in settings) is ("supabase_vault" in installed)


def test_this_machine() -> None:
    """Says loudly which branch cannot run here."""
    sharedir, _libdir = server_dirs(PG_BIN)
    assert (sharedir / "extension" / "pg_cron.control").is_file()
    plan = detect(PG_BIN)
    missing = sorted({"pg_net", "supabase_vault"} - plan.installed)
    if missing:
        warnings.warn(
            f"NOT TESTED HERE: {', '.join(missing)} not installed, so the stack runs the "
            "stand-ins; the real-extension branch is tested through its plan only",
            UserWarning,
            stacklevel=1,
        )


@pytest.fixture
def vault_plan_cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="supaqueue-test-ext-"))
    os.chmod(root, 0o755)
    cluster = Cluster(
        data_dir=root / "pgdata",
        port=free_port(),
        password=generate_password(),
        fast=True,
        extensions=ExtensionPlan(frozenset({"pg_net", "supabase_vault"})),
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_with_the_real_extensions_the_cluster_preloads_them_and_serves_vault_its_key(
    vault_plan_cluster: Cluster,
) -> None:
    cluster = vault_plan_cluster
    cluster.init()  # writes the config; not started (the libraries are not on this machine)
    conf = (cluster.data_dir / "supaqueue.conf").read_text()
    assert "shared_preload_libraries = 'pg_cron,pg_net,supabase_vault'" in conf
    assert f"vault.getkey_script = '{cluster.getkey_script}'" in conf
    # supabase_vault runs the script as the server's OS user and wants 64 hex characters.
    pw = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    printed = subprocess.run(
        [str(cluster.getkey_script)],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
        user=pw.pw_uid if pw else None,
        group=pw.pw_gid if pw else None,
        extra_groups=[] if pw else None,
    ).stdout.strip()
    assert len(printed) == 64 and int(printed, 16) >= 0
    assert printed == cluster.key_path.read_text().strip()


def test_hosted_grants_let_postgres_read_the_real_vault_view(
    pg_dsn: str, pg_cluster: Cluster
) -> None:
    """The real supabase_vault's view `decrypted_secrets` calls vault._crypto_aead_det_decrypt with
    the reader's rights: `make up` on the real extensions failed with "permission denied for
    function _crypto_aead_det_decrypt" (issue 21). Supabase's after-create script grants it to
    postgres (with grant option) and service_role; so does hosted_grants.sql, checked here on a
    function of that signature made as the real extension makes it (owned by the superuser,
    revoked from PUBLIC)."""
    plan = detect(PG_BIN)
    if "supabase_vault" not in plan.installed:
        warnings.warn(
            "NOT TESTED HERE: supabase_vault is not installed, so reading vault.decrypted_secrets "
            "through the real extension's _crypto_aead_det_decrypt is not run; its grant is "
            "checked on a function of the same signature",
            UserWarning,
            stacklevel=1,
        )
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    signature = "vault._crypto_aead_det_decrypt(bytea, bytea, bigint, bytea, bytea)"
    with pg_cluster.admin_connect(str(dbname)) as admin:
        if admin.execute("select to_regprocedure(%s)", (signature,)).fetchone() == (None,):
            admin.execute(
                "create function vault._crypto_aead_det_decrypt(message bytea, additional bytea,"
                " key_id bigint, context bytea default 'pgsodium', nonce bytea default null)"
                " returns bytea language sql immutable as 'select message'"
            )
        admin.execute(f"revoke all on function {signature} from public, postgres, service_role")
        admin.execute(standin_sql("hosted_grants.sql"))
        granted = admin.execute(
            "select r.rolname, a.is_grantable from pg_proc p,"
            " aclexplode(p.proacl) a join pg_roles r on r.oid = a.grantee"
            " where p.oid = %s::regprocedure and a.privilege_type = 'EXECUTE'"
            " and r.rolname in ('postgres', 'service_role') order by 1",
            (signature,),
        ).fetchall()
    assert granted == [("postgres", True), ("service_role", False)]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        if "supabase_vault" in plan.installed:
            # The real function rejects a message it did not encrypt: past the permission check.
            with pytest.raises(psycopg.errors.DataException, match="invalid message"):
                conn.execute(f"select {signature.split('(')[0]}('x', 'y', 0)")
        else:
            conn.execute(f"select {signature.split('(')[0]}('x', 'y', 0)")
        if "supabase_vault" in plan.installed:
            conn.execute("select vault.create_secret('s', 'grant-check')")
            row = conn.execute(
                "select decrypted_secret from vault.decrypted_secrets where name = 'grant-check'"
            ).fetchone()
            assert row == ("s",)
