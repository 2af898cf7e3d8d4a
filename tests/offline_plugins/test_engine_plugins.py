"""The offline random and command plugins under the real Pulumi CLI, with plugin downloads off."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.toolchain import CACHE, VENV, require
from tests.support.plugins import language_host_env, write_launcher

pytestmark = pytest.mark.engine

PULUMI = CACHE / "bin" / "pulumi"
PLUGINS = {
    "random": ("4.21.4", "offline_plugins.random_provider"),
    "command": ("1.2.1", "offline_plugins.command_provider"),
}
CLI_SECONDS = 300

PROGRAM = """\
import pulumi
import pulumi_random as random
from pulumi.dynamic import CreateResult, Resource, ResourceProvider
from pulumi_command import local

config = pulumi.Config()
marks = config.require("marks")


class EchoProvider(ResourceProvider):
    def create(self, props):
        return CreateResult(id_="echo", outs={"value": props["value"]})


class Echo(Resource):
    value: pulumi.Output[str]

    def __init__(self, name, value):
        super().__init__(EchoProvider(), name, {"value": value})


password = random.RandomPassword(
    "pw", length=24, min_upper=2, keepers={"rotation": config.get("rotation") or "1"}
)
command = local.Command(
    "cmd",
    create=f'echo "pw-length=$(printf %s "$PW" | wc -c)"; echo "pw=$PW" >&2; touch {marks}/created',
    delete=f"touch {marks}/deleted",
    environment={"PW": password.result},
)
echo = Echo("echo", command.stdout)
pulumi.export("password", password.result)
pulumi.export("stdout", command.stdout)
pulumi.export("echo", echo.value)
"""


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(PULUMI), *args, "--non-interactive"],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_SECONDS,
        )
        if ok:
            assert done.returncode == 0, (
                f"pulumi {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def export(self) -> Any:
        """The stack's deployment (`stack export` prints JSON without a --json flag)."""
        return json.loads(self.run("stack", "export").stdout)["deployment"]


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """A temp PULUMI_HOME holding only our plugins, a temp file backend, downloads disabled."""
    require(PULUMI)
    home, launchers, bin_dir = tmp_path / "home", tmp_path / "launchers", tmp_path / "bin"
    env = language_host_env(bin_dir)
    env.update(
        PULUMI_HOME=str(home),
        PULUMI_BACKEND_URL=f"file://{tmp_path / 'state'}",
        PULUMI_CONFIG_PASSPHRASE="engine-test-passphrase",
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
    )
    (tmp_path / "state").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    installer = Cli(env, project)
    for name, (version, module) in PLUGINS.items():
        launcher = write_launcher(launchers / name, f"pulumi-resource-{name}", module)
        installer.run("plugin", "install", "resource", name, version, "--file", str(launcher))
    yield installer


def test_plugin_ls_lists_both_offline_plugins(cli: Cli) -> None:
    listed = {(p["name"], p["kind"], p["version"]) for p in cli.json("plugin", "ls")}
    assert listed == {("random", "resource", "4.21.4"), ("command", "resource", "1.2.1")}


def write_project(directory: Path, name: str, program: str) -> None:
    """A Python project run by the repo's venv (the `virtualenv` runtime option)."""
    (directory / "Pulumi.yaml").write_text(
        f"name: {name}\nruntime:\n  name: python\n  options:\n    virtualenv: {require(VENV)}\n"
    )
    (directory / "__main__.py").write_text(program)


def _secret_ciphertext(value: Any) -> bool:
    return isinstance(value, dict) and "ciphertext" in value and "plaintext" not in value


def test_up_preview_replace_destroy(cli: Cli, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    write_project(cli.cwd, "offline-plugins-engine", PROGRAM)
    cli.run("stack", "init", "test")
    cli.run("config", "set", "marks", str(marks))

    # A preview plans all four resources and runs no command.
    preview = cli.json("preview")
    planned = {(s["op"], s["urn"].rsplit("::", 1)[-1]) for s in preview["steps"]}
    assert {("create", "pw"), ("create", "cmd"), ("create", "echo")} <= planned
    assert not (marks / "created").exists()

    up = cli.run("up", "--yes")
    assert (marks / "created").exists()
    outputs = cli.json("stack", "output", "--show-secrets")
    password = outputs["password"]
    assert len(password) == 24 and sum(c.isupper() for c in password) >= 2
    # The command received the password through its environment; the dynamic resource its stdout.
    assert outputs["stdout"] == "pw-length=24" and outputs["echo"] == "pw-length=24"
    # Its output lines show in the CLI's progress, with the secret masked.
    assert "pw-length=24" in up.stdout and "pw=[secret]" in up.stdout
    assert password not in up.stdout + up.stderr

    # Nothing changed, so a second preview must say so (non-zero exit otherwise).
    cli.run("preview", "--expect-no-changes")

    # The password is a secret in the state: encrypted, never in plain text in any file.
    pw_state = next(r for r in cli.export()["resources"] if r["urn"].endswith("RandomPassword::pw"))
    assert _secret_ciphertext(pw_state["outputs"]["result"])
    assert _secret_ciphertext(pw_state["outputs"]["bcryptHash"])
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert password not in path.read_text(errors="replace"), path

    # A new keeper value replaces the password (and re-runs the command that uses it).
    cli.run("config", "set", "rotation", "2")
    steps = {s["urn"].rsplit("::", 1)[-1]: s["op"] for s in cli.json("preview")["steps"]}
    assert steps["pw"] == "replace"
    assert steps["cmd"] == "update"
    cli.run("up", "--yes")
    rotated = cli.json("stack", "output", "--show-secrets")["password"]
    assert rotated != password and len(rotated) == 24

    cli.run("destroy", "--yes")
    assert (marks / "deleted").exists()
    assert cli.export().get("resources") in (None, [])


FAILING_PROGRAMS = {
    "zero-length": (
        'random.RandomPassword("pw", length=0)',
        "property length value {0} has a problem: length must be at least 1, got 0",
    ),
    "other-random-type": (
        'random.RandomString("s", length=8)',
        "install the official pulumi-random 4.21.4 plugin",
    ),
    "failing-command": (
        'local.Command("bad", create="echo \'relation jobs does not exist\' >&2; exit 4")',
        "relation jobs does not exist",
    ),
}


@pytest.mark.parametrize("case", sorted(FAILING_PROGRAMS))
def test_bad_resources_fail_the_update_with_a_clear_message(cli: Cli, case: str) -> None:
    declaration, message = FAILING_PROGRAMS[case]
    program = f"import pulumi_random as random\nfrom pulumi_command import local\n\n{declaration}\n"
    write_project(cli.cwd, "offline-plugins-errors", program)
    cli.run("stack", "init", "test")
    done = cli.run("up", "--yes", ok=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert message in output, output
    assert "Traceback" not in output, output
