"""`supaqueue dev` outside this checkout: where a project's local stack keeps its state, and what
`dev up` says on a machine that lacks PostgreSQL 15 + pg_cron or Deno (nothing is made then)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.toolchain import REPO
from supaqueue.local_stack.state import default_dir


@pytest.fixture
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPAQUEUE_LOCAL_STACK_DIR", raising=False)


@pytest.mark.usefixtures("no_override")
def test_a_pulumi_project_keeps_its_stack_in_its_own_folder(tmp_path: Path) -> None:
    project = tmp_path / "infra"
    (project / "sub" / "deeper").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: infra\nruntime: python\n")
    assert default_dir(project) == project / ".local-stack"
    # From anywhere inside the project: the nearest Pulumi.yaml upwards.
    assert default_dir(project / "sub" / "deeper") == project / ".local-stack"


@pytest.mark.usefixtures("no_override")
def test_this_repository_keeps_its_stack_where_make_up_always_did() -> None:
    assert default_dir(REPO) == REPO / ".local-stack"
    assert default_dir(REPO / "tests" / "unit") == REPO / ".local-stack"


@pytest.mark.usefixtures("no_override")
def test_outside_any_project_the_stack_is_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "elsewhere").mkdir()
    expected = tmp_path / "state" / "supaqueue" / "local-stack"
    assert default_dir(tmp_path / "elsewhere") == expected


def test_the_environment_chooses_over_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: p\nruntime: python\n")
    monkeypatch.setenv("SUPAQUEUE_LOCAL_STACK_DIR", str(tmp_path / "mine"))
    assert default_dir(tmp_path) == tmp_path / "mine"


def _dev_up_without(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`supaqueue dev up` in a project folder, on a machine whose tools are only those in env."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: p\nruntime: python\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUPAQUEUE_")}
    base.update(PATH="/usr/bin:/bin", SUPAQUEUE_CACHE=str(tmp_path / "empty-cache"), **env)
    return subprocess.run(
        [sys.executable, "-m", "supaqueue.cli", "dev", "up"],
        cwd=project,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_postgres_and_deno_say_what_to_install_and_make_nothing(tmp_path: Path) -> None:
    done = _dev_up_without(tmp_path, SUPAQUEUE_PG_BIN=str(tmp_path / "no-postgres"))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("supaqueue dev up: PostgreSQL 15 is not installed"), lines[0]
    assert "apt-get install postgresql-15 postgresql-15-cron" in lines[0]
    assert "Deno is not installed: install Deno 2" in lines[0]
    assert "SUPAQUEUE_DENO" in lines[0]
    assert not (tmp_path / "project" / ".local-stack").exists()


def test_missing_pg_cron_says_what_to_install(tmp_path: Path) -> None:
    # A PostgreSQL bin folder whose server has no pg_cron: a fake pg_config names empty dirs.
    pg_bin = tmp_path / "pg" / "bin"
    pg_bin.mkdir(parents=True)
    (pg_bin / "postgres").write_text("#!/bin/sh\n")
    (pg_bin / "pg_config").write_text(f"#!/bin/sh\necho {tmp_path}/share; echo {tmp_path}/lib\n")
    (pg_bin / "pg_config").chmod(0o755)
    done = _dev_up_without(tmp_path, SUPAQUEUE_PG_BIN=str(pg_bin), SUPAQUEUE_DENO=sys.executable)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"supaqueue dev up: pg_cron is not installed for the PostgreSQL in {pg_bin}: "
        "as root: apt-get install postgresql-15 postgresql-15-cron"
    )
    assert not (tmp_path / "project" / ".local-stack").exists()
