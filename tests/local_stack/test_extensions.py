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

import pytest

from local_stack.extensions import ExtensionPlan, detect, installed_extensions, server_dirs
from local_stack.postgres import PG_BIN, Cluster, free_port, generate_password


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
