"""What `make toolchain` leaves behind: the CLI at the pinned version, the plugins the wheels ask
for, Deno, and a second run that installs nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.toolchain import CACHE, PULUMI, REPO, TOOLBIN, VENV, pulumi_env, require


def wheel_plugin_version(package: str) -> str:
    (plugin_json,) = VENV.glob(f"lib/python*/site-packages/{package}/pulumi-plugin.json")
    return str(json.loads(plugin_json.read_text())["version"])


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_pulumi_cli_is_the_pinned_version(tmp_path: Path) -> None:
    done = run(str(require(PULUMI)), "version", env=pulumi_env(tmp_path))
    assert done.returncode == 0, done.stderr
    if PULUMI.resolve().is_relative_to(CACHE):
        assert done.stdout.strip() == "v3.274.1"  # built from Go modules by make toolchain
    else:
        print(f"NOTE: using the official Pulumi CLI on PATH, {done.stdout.strip()}")
        assert done.stdout.startswith("v3.")


def test_plugins_match_what_the_pinned_wheels_request(tmp_path: Path) -> None:
    done = run(str(PULUMI), "plugin", "ls", "--json", env=pulumi_env(tmp_path))
    assert done.returncode == 0, done.stderr
    installed = {(p["name"], p["kind"], p["version"]) for p in json.loads(done.stdout)}
    assert ("random", "resource", wheel_plugin_version("pulumi_random")) in installed
    assert ("command", "resource", wheel_plugin_version("pulumi_command")) in installed
    assert wheel_plugin_version("pulumi_random") == "4.21.4"
    assert wheel_plugin_version("pulumi_command") == "1.2.1"


def test_companions_of_the_cli_are_linked() -> None:
    for name in ("pulumi-language-python", "pulumi-language-python-exec", "deno"):
        path = TOOLBIN / name
        assert path.exists(), f"{path} is missing"
        assert (
            path.resolve().is_relative_to(CACHE) or path.resolve().parent == PULUMI.resolve().parent
        )
    # The dynamic-provider launcher is the repo's guarded one (tests/e2e/test_no_orphans.py).
    launcher = TOOLBIN / "pulumi-resource-pulumi-python"
    assert launcher.read_bytes() == (REPO / "toolchain" / launcher.name).read_bytes()


def test_deno_runs() -> None:
    done = run(str(TOOLBIN / "deno"), "--version")
    assert done.returncode == 0 and done.stdout.startswith("deno 2.9.6"), done.stdout


def test_second_run_installs_nothing() -> None:
    done = run("bash", "toolchain/bootstrap.sh")
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line for line in done.stdout.splitlines() if line.startswith("==>")]
    assert steps == [steps[-1]] and steps[-1].startswith("==> toolchain ready: v3.274.1"), steps
