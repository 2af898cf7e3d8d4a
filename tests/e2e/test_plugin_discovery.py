"""How the real engine finds supaqueue's provider plugin, the console script pip installed in
the program's venv (docs/architecture.md, "Resource provider"): through the project's
`plugins.providers` entry (what supaqueue documents: no command, no warning), or the plugin cache
after `pulumi plugin install ... --file`, or (with a warning on every command) on PATH; nowhere,
the engine says so. A one-resource program (the stack identity: no database)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.toolchain import PULUMI, TOOLBIN, VENV, pulumi_env
from supaqueue.provider.version import plugin_version

pytestmark = [pytest.mark.engine]

PROGRAM = """
from supaqueue.providers.stack_identity import StackIdentity
StackIdentity("who", "probe/dev")
"""
PLUGIN = VENV / "bin" / "pulumi-resource-supaqueue"
AMBIENT_WARNING = "using pulumi-resource-supaqueue from $PATH"
TIMEOUT_SECONDS = 300


def project(
    root: Path, *, entry: bool, venv_on_path: bool, home: Path | None = None
) -> tuple[Path, dict[str, str]]:
    workdir = root / "project"
    workdir.mkdir()
    plugins = (
        f"plugins:\n  providers:\n    - name: supaqueue\n      path: {VENV / 'bin'}\n"
        if entry
        else ""
    )
    (workdir / "Pulumi.yaml").write_text(
        f"name: probe\nruntime:\n  name: python\n  options:\n    virtualenv: {VENV}\n{plugins}"
    )
    (workdir / "__main__.py").write_text(PROGRAM)
    env = pulumi_env(root / "state")
    path = [TOOLBIN, *(p for p in env["PATH"].split(os.pathsep) if Path(p) != VENV / "bin")]
    if venv_on_path:
        path.insert(1, VENV / "bin")
    env["PATH"] = os.pathsep.join(map(str, path))
    if home is not None:
        env["PULUMI_HOME"] = str(home)
    run(workdir, env, "stack", "init", "dev")
    return workdir, env


def run(
    workdir: Path, env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(PULUMI), "--non-interactive", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(
            f"pulumi {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
        )
    return done


def types(workdir: Path, env: dict[str, str]) -> set[str]:
    state = json.loads(run(workdir, env, "stack", "export").stdout)
    return {r["type"] for r in state["deployment"]["resources"]}


def test_the_project_entry_finds_the_venvs_plugin_without_a_warning(tmp_path: Path) -> None:
    workdir, env = project(tmp_path, entry=True, venv_on_path=False)
    done = run(workdir, env, "up", "--yes", "--skip-preview")
    assert AMBIENT_WARNING not in done.stdout + done.stderr
    assert "supaqueue:index:StackIdentity" in types(workdir, env)
    assert "pulumi:providers:supaqueue" in types(workdir, env)
    # Even with the venv on PATH (toolchain/env.sh puts it there), the entry wins: no warning.
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env['PATH']}"
    again = run(workdir, env, "preview", "--expect-no-changes")
    assert AMBIENT_WARNING not in again.stdout + again.stderr


def test_without_the_entry_the_engine_says_which_plugin_is_missing(tmp_path: Path) -> None:
    workdir, env = project(tmp_path, entry=False, venv_on_path=False)
    failed = run(workdir, env, "preview", check=False)
    assert failed.returncode != 0
    assert "no resource plugin 'pulumi-resource-supaqueue' found" in failed.stdout + failed.stderr


def test_on_path_the_plugin_is_used_with_a_warning_on_every_command(tmp_path: Path) -> None:
    workdir, env = project(tmp_path, entry=False, venv_on_path=True)
    done = run(workdir, env, "preview")
    assert AMBIENT_WARNING in done.stdout + done.stderr


def test_pulumi_plugin_install_from_the_venv_also_serves(tmp_path: Path) -> None:
    home = tmp_path / "pulumi-home"
    workdir, env = project(tmp_path, entry=False, venv_on_path=False, home=home)
    version = plugin_version()
    run(workdir, env, "plugin", "install", "resource", "supaqueue", version, "--file", str(PLUGIN))
    installed = home / "plugins" / f"resource-supaqueue-v{version}" / PLUGIN.name
    assert installed.read_text() == PLUGIN.read_text()  # the script, naming the venv's Python
    done = run(workdir, env, "up", "--yes", "--skip-preview")
    assert AMBIENT_WARNING not in done.stdout + done.stderr
    assert "supaqueue:index:StackIdentity" in types(workdir, env)
