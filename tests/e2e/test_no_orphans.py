"""No process started by a `pulumi` command outlives it.

Seen once: a `python -m pulumi.dynamic` provider (parent `pulumi-resource-pulumi-python`) alive
17 minutes after its CLI was gone. It happens whenever the CLI dies without shutting its plugins
down (SIGKILL, a crash, a test's timeout): upstream's launcher runs the provider under a shell and
the provider waits for a SIGINT that never comes. The launcher make toolchain installs
(toolchain/pulumi-resource-pulumi-python) ends it once its CLI is gone. The real CLI, the real
dynamic-provider plugin, a minimal program with one dynamic resource.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.toolchain import PULUMI, TOOLBIN, VENV, pulumi_env

pytestmark = [pytest.mark.engine]

PROGRAM = """
import os, time
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

class SlowProvider(ResourceProvider):
    def create(self, props):
        time.sleep(float(props["sleep"]))
        return CreateResult(id_="slow", outs=props)

class Slow(Resource):
    def __init__(self, name, sleep):
        super().__init__(SlowProvider(), name, {"sleep": sleep})

Slow("slow", float(os.environ["PROBE_SLEEP_S"]))
"""


def session_members(sid: int) -> list[tuple[int, str]]:
    """Live processes of session `sid` (the CLI's, started with a new session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append((int(entry.name), cmdline))
    return found


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "Pulumi.yaml").write_text(
        f"name: orphan-probe\nruntime:\n  name: python\n  options:\n    virtualenv: {VENV}\n"
    )
    (workdir / "__main__.py").write_text(PROGRAM)
    env = pulumi_env(tmp_path / "state")
    init = subprocess.run(
        [str(PULUMI), "--non-interactive", "stack", "init", "dev"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    return workdir, env


def test_the_dynamic_provider_launcher_is_the_guarded_one() -> None:
    launcher = TOOLBIN / "pulumi-resource-pulumi-python"
    assert (
        launcher.read_bytes()
        == (Path(__file__).parents[2] / "toolchain" / launcher.name).read_bytes()
    )


@pytest.mark.timeout(300)
def test_a_killed_cli_leaves_no_process_behind(project: tuple[Path, dict[str, str]]) -> None:
    workdir, env = project
    cli = subprocess.Popen(
        [str(PULUMI), "--non-interactive", "up", "--yes", "--stack", "dev"],
        cwd=workdir,
        env={**env, "PROBE_SLEEP_S": "600"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # everything it starts shares its session id
    )
    try:
        # Wait until the provider is busy creating (the program and the plugins all run).
        wait_for(
            "the dynamic provider running",
            lambda: any("pulumi.dynamic" in c for _, c in session_members(cli.pid)),
            timeout=180,
        )
        time.sleep(3)
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait(30)
        wait_for(
            f"every process of the killed CLI gone (left: {session_members(cli.pid)})",
            lambda: session_members(cli.pid) == [],
            timeout=60,
        )
    finally:
        for pid, _ in session_members(cli.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(300)
def test_a_finished_command_leaves_no_process_behind(project: tuple[Path, dict[str, str]]) -> None:
    workdir, env = project
    for args in (["up", "--yes"], ["preview"], ["destroy", "--yes"]):
        cli = subprocess.Popen(
            [str(PULUMI), "--non-interactive", *args, "--stack", "dev"],
            cwd=workdir,
            env={**env, "PROBE_SLEEP_S": "0"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out, _ = cli.communicate(timeout=240)
        assert cli.returncode == 0, out.decode(errors="replace")[-3000:]
        wait_for(
            f"pulumi {args[0]}: its processes gone (left: {session_members(cli.pid)})",
            lambda: session_members(cli.pid) == [],  # noqa: B023 - checked before the next loop
            timeout=30,
        )
