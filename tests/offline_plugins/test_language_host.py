"""The offline Python language host, spoken to over gRPC and driven by the real Pulumi CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import platform
import shutil
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import language_pb2

from harness.toolchain import CACHE, REPO, VENV, pulumi_env, require
from offline_plugins.common.serve import engine_address
from offline_plugins.language_host import VERSION
from offline_plugins.language_host.plugins import plugin_version
from offline_plugins.language_host.processes import TERMINATE_GRACE_SECONDS
from tests.support.language_hosts import Host, install_output, program_info
from tests.support.language_hosts import fake_engine as fake_engine_server
from tests.support.language_hosts import start_host as start_module_host
from tests.support.plugins import language_host_env, launcher_env, link_cli_companions

HOST_MODULE = "offline_plugins.language_host"


@pytest.fixture
def fake_engine() -> Iterator[tuple[str, grpc.Server]]:
    with fake_engine_server() as engine:
        yield engine


def start_host(engine: str, extra_env: dict[str, str] | None = None) -> Host:
    return start_module_host(HOST_MODULE, engine, extra_env)


@pytest.fixture
def host(fake_engine: tuple[str, grpc.Server]) -> Iterator[Host]:
    started = start_host(fake_engine[0])
    yield started
    if started.proc.poll() is None:
        code, err = started.stop()
        assert code == 0 and "Traceback" not in err, err


def repo_venv_info(tmp_path: Path) -> language_pb2.ProgramInfo:
    return program_info(tmp_path, virtualenv=str(VENV))


# --- the host on its own -------------------------------------------------------------------


def test_port_first_and_plugin_info(host: Host) -> None:
    assert 0 < host.port < 65536
    assert host.stub.GetPluginInfo(empty_pb2.Empty()).version == VERSION


def test_required_packages_come_from_pulumi_plugin_json(host: Host, tmp_path: Path) -> None:
    resp = host.stub.GetRequiredPackages(
        language_pb2.GetRequiredPackagesRequest(info=repo_venv_info(tmp_path))
    )
    found = {(p.name, p.kind, p.version) for p in resp.packages}
    assert found == {("random", "resource", "v4.21.4"), ("command", "resource", "v1.2.1")}


def test_required_plugins_match_required_packages(host: Host, tmp_path: Path) -> None:
    resp = host.stub.GetRequiredPlugins(
        language_pb2.GetRequiredPluginsRequest(info=repo_venv_info(tmp_path))
    )
    assert {(p.name, p.version) for p in resp.plugins} == {
        ("random", "v4.21.4"),
        ("command", "v1.2.1"),
    }


def test_relative_virtualenv_resolves_against_project_root(host: Host, tmp_path: Path) -> None:
    (tmp_path / "venv").symlink_to(VENV)
    resp = host.stub.GetRequiredPackages(
        language_pb2.GetRequiredPackagesRequest(info=program_info(tmp_path, virtualenv="venv"))
    )
    assert {p.name for p in resp.packages} == {"random", "command"}


def test_missing_virtualenv_is_a_clear_error(host: Host, tmp_path: Path) -> None:
    info = program_info(tmp_path, virtualenv="no-such-venv")
    with pytest.raises(grpc.RpcError) as caught:
        host.stub.GetRequiredPackages(language_pb2.GetRequiredPackagesRequest(info=info))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = caught.value.details()
    assert "'virtualenv' option in Pulumi.yaml" in details
    assert str(tmp_path / "no-such-venv") in details and "doesn't exist" in details
    assert "Traceback" not in details


def test_unsupported_options_are_refused_by_name(host: Host, tmp_path: Path) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"toolchain": "uv"}, "the 'uv' toolchain is not supported"),
        ({"typechecker": "mypy"}, "'typechecker' runtime option is not supported"),
        ({"virtualenv": 3}, "virtualenv option must be a string"),
    ]
    for options, expected in cases:
        with pytest.raises(grpc.RpcError) as caught:
            host.stub.GetRequiredPackages(
                language_pb2.GetRequiredPackagesRequest(info=program_info(tmp_path, **options))
            )
        assert expected in caught.value.details()


def test_about_names_the_program_interpreter(host: Host, tmp_path: Path) -> None:
    about = host.stub.About(language_pb2.AboutRequest(info=repo_venv_info(tmp_path)))
    assert about.executable == str(VENV / "bin" / "python")
    assert about.version == platform.python_version()  # the tests run in that same venv


def test_program_dependencies_top_level_and_transitive(host: Host, tmp_path: Path) -> None:
    def deps(transitive: bool) -> dict[str, str]:
        resp = host.stub.GetProgramDependencies(
            language_pb2.GetProgramDependenciesRequest(
                info=repo_venv_info(tmp_path), transitiveDependencies=transitive
            )
        )
        return {d.name.lower().replace("_", "-"): d.version for d in resp.dependencies}

    everything, top = deps(True), deps(False)
    assert everything["pulumi"] == "3.272.0" and everything["pulumi-random"] == "4.21.4"
    assert "grpcio" in everything and "grpcio" not in top  # pulumi requires it
    assert "supaqueue" in top and "pulumi" not in top  # pulumi_random requires pulumi
    assert set(top) < set(everything)


def test_runtime_options_prompts_are_empty(host: Host, tmp_path: Path) -> None:
    resp = host.stub.RuntimeOptionsPrompts(
        language_pb2.RuntimeOptionsRequest(info=repo_venv_info(tmp_path))
    )
    assert list(resp.prompts) == []


def test_code_generation_answers_unimplemented(host: Host) -> None:
    for call, request in (
        (host.stub.Pack, language_pb2.PackRequest()),
        (host.stub.GenerateProject, language_pb2.GenerateProjectRequest()),
        (host.stub.Template, language_pb2.TemplateRequest()),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(request)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "offline Python language host" in caught.value.details()


def test_handshake_is_answered(host: Host, fake_engine: tuple[str, grpc.Server]) -> None:
    req = language_pb2.LanguageHandshakeRequest(engine_address=fake_engine[0])
    assert host.stub.Handshake(req) == language_pb2.LanguageHandshakeResponse()


def test_install_dependencies_without_requirements_is_a_no_op(host: Host, tmp_path: Path) -> None:
    out, _ = install_output(host, repo_venv_info(tmp_path))
    assert "Installing dependencies" in out
    assert "No requirements.txt found" in out
    assert "Finished installing dependencies" in out


def build_wheel(folder: Path, name: str, version: str, plugin_json: str) -> Path:
    """A minimal pure-Python wheel shipping a pulumi-plugin.json, built by hand (no index)."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "",
        f"{name}/pulumi-plugin.json": plugin_json,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_install_dependencies_creates_the_virtualenv_and_installs_requirements(
    host: Host, tmp_path: Path
) -> None:
    wheel = build_wheel(
        tmp_path, "sqfake", "0.1.0", '{"resource": true, "name": "sqfake", "version": "0.0.7"}'
    )
    (tmp_path / "requirements.txt").write_text(f"{wheel}\n")
    info = program_info(tmp_path, virtualenv="venv")

    out, err = install_output(host, info)

    assert (tmp_path / "venv" / "pyvenv.cfg").is_file(), out + err
    assert "Successfully installed sqfake-0.1.0" in out, out + err
    assert "Finished installing dependencies" in out
    resp = host.stub.GetRequiredPackages(language_pb2.GetRequiredPackagesRequest(info=info))
    assert [(p.name, p.version) for p in resp.packages] == [("sqfake", "v0.0.7")]


def test_failed_install_reports_pip_error(host: Host, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(f"{tmp_path / 'missing-1.0-py3-none-any.whl'}\n")
    with pytest.raises(grpc.RpcError) as caught:
        install_output(host, repo_venv_info(tmp_path))
    assert "pip install" in caught.value.details() and "exit code" in caught.value.details()


def run_request(root: Path) -> language_pb2.RunRequest:
    return language_pb2.RunRequest(
        project="p", stack="s", pwd=str(root), info=repo_venv_info(root), monitor_address="x:1"
    )


def test_run_without_the_exec_shim_names_the_fix(
    fake_engine: tuple[str, grpc.Server], tmp_path: Path
) -> None:
    started = start_host(fake_engine[0], {"SUPAQUEUE_PULUMI_EXEC": str(tmp_path / "absent")})
    try:
        with pytest.raises(grpc.RpcError) as caught:
            started.stub.Run(run_request(tmp_path))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "SUPAQUEUE_PULUMI_EXEC" in caught.value.details()
        assert str(tmp_path / "absent") in caught.value.details()
    finally:
        assert started.stop()[0] == 0


def test_cancel_refuses_further_runs(host: Host, tmp_path: Path) -> None:
    assert host.stub.Cancel(empty_pb2.Empty()) == empty_pb2.Empty()
    with pytest.raises(grpc.RpcError) as caught:
        host.stub.Run(run_request(tmp_path))
    assert "cancelled" in caught.value.details()


def test_debugger_attach_is_refused(host: Host, tmp_path: Path) -> None:
    req = run_request(tmp_path)
    req.attach_debugger = True
    with pytest.raises(grpc.RpcError) as caught:
        host.stub.Run(req)
    assert "debugger is not supported" in caught.value.details()


@pytest.mark.parametrize(
    ("pep440", "semver"),
    [
        ("4.21.4", "4.21.4"),
        ("1.0", "1.0.0"),
        ("2", "2.0.0"),
        ("1.2.3a4", "1.2.3-alpha.4"),
        ("1.2.3b1", "1.2.3-beta.1"),
        ("1.2.3rc2", "1.2.3-rc.2"),
        ("1.2.3.post4", "1.2.3+post4"),
        ("1.2.3.dev5", "1.2.3+dev5"),
        ("1.2.3.post4.dev5", "1.2.3+post4dev5"),
        ("1!1.0", None),
        ("1.0+local", None),
        ("", None),
    ],
)
def test_plugin_version_from_package_version(pep440: str, semver: str | None) -> None:
    assert plugin_version(pep440) == semver


@pytest.mark.parametrize(
    ("argv", "address"),
    [
        (["127.0.0.1:1234"], "127.0.0.1:1234"),
        (["-tracing", "http://t:9", "127.0.0.1:1234"], "127.0.0.1:1234"),
        (["-root=/proj", "--logtostderr", "-v=9", "127.0.0.1:1234"], "127.0.0.1:1234"),
        (["-tracing", "http://t:9"], None),
        ([], None),
    ],
)
def test_engine_address_is_the_last_positional_argument(
    argv: list[str], address: str | None
) -> None:
    assert engine_address(argv) == address


# --- process life -------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_the_host_quietly(fake_engine: tuple[str, grpc.Server], sig: int) -> None:
    started = start_host(fake_engine[0])
    assert started.stub.GetPluginInfo(empty_pb2.Empty()).version == VERSION
    code, err = started.stop(sig, timeout=60)  # a guard against a host that never stops
    assert code == 0, "it ended by itself, quietly, not killed"
    assert err == ""
    # The engine kills a plugin that takes over 5 s to stop: the host's own wait for its
    # programs (the only thing it waits for) fits inside that.
    assert TERMINATE_GRACE_SECONDS < 5


def test_host_exits_when_the_engine_is_gone(fake_engine: tuple[str, grpc.Server]) -> None:
    address, server = fake_engine
    started = start_host(address, {"SUPAQUEUE_PLUGIN_HEALTHCHECK_SECONDS": "0.3"})
    time.sleep(1.0)
    assert started.proc.poll() is None, "the host must keep running while the engine answers"
    server.stop(0)
    _, err = started.proc.communicate(timeout=20)
    assert started.proc.returncode == 0
    assert "Traceback" not in err


# --- with the real Pulumi CLI ---------------------------------------------------------------

PROGRAM = '''
import os
import platform
import shutil
from pathlib import Path

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider
from pulumi.runtime.config import is_config_secret


class MarkerProvider(ResourceProvider):
    """Creates a file, so the test can see the provider really ran (and that destroy undid it)."""

    def create(self, props):
        Path(props["path"]).write_text(props["content"])
        return CreateResult(id_=props["path"], outs=props)

    def delete(self, id, props):
        Path(id).unlink(missing_ok=True)


class Marker(Resource):
    def __init__(self, name, path, content):
        super().__init__(MarkerProvider(), name, {"path": path, "content": content})


config = pulumi.Config()
mode = config.get("mode") or "ok"
if mode == "raise":
    raise ValueError("deliberate failure from the test program")
if mode == "exit":
    raise SystemExit(3)

print("hello from the program on stdout")
marker = Marker("marker", config.require("markerPath"), config.require("greeting"))
pulumi.export("greeting", config.require("greeting"))
# PULUMI_CONFIG_SECRET_KEYS reached the program: it knows which keys hold secrets.
pulumi.export("tokenIsSecret", is_config_secret(f"{pulumi.get_project()}:token"))
pulumi.export("greetingIsSecret", is_config_secret(f"{pulumi.get_project()}:greeting"))
pulumi.export("token", config.require_secret("token"))
pulumi.export("markerId", marker.id)
pulumi.export("virtualenv", os.environ.get("VIRTUAL_ENV"))
'''


@dataclass
class Project:
    dir: Path
    env: dict[str, str]
    marker: Path
    bin: Path

    def pulumi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"pulumi {' '.join(args)} exited {result.returncode}\n{result.stdout}\n"
                f"{result.stderr}"
            )
        return result


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "Pulumi.yaml").write_text(
        f"name: langhost-test\nruntime:\n  name: python\n  options:\n    virtualenv: {VENV}\n"
    )
    (folder / "__main__.py").write_text(PROGRAM)
    env = language_host_env(tmp_path / "bin", pulumi_env(tmp_path / "state", passphrase="test"))
    # Checking on the real engine every 0.2 s proves the health check never mistakes it for gone.
    env["SUPAQUEUE_PLUGIN_HEALTHCHECK_SECONDS"] = "0.2"
    proj = Project(folder, env, tmp_path / "marker.txt", tmp_path / "bin")
    proj.pulumi("stack", "init", "test")
    proj.pulumi("config", "set", "greeting", "hello")
    proj.pulumi("config", "set", "markerPath", str(proj.marker))
    proj.pulumi("config", "set", "--secret", "token", "not-a-real-token")
    yield proj
    # Leave nothing behind even when a step failed half way.
    proj.pulumi("destroy", "--yes", check=False)
    proj.pulumi("stack", "rm", "--yes", "--force", check=False)


@pytest.mark.engine
def test_cli_lifecycle_up_preview_destroy(project: Project) -> None:
    up = project.pulumi("up", "--yes", "--skip-preview")
    # The CLI says which language host it took: ours, from the launcher folder.
    host_used = f"using pulumi-language-python from $PATH at {project.bin}/pulumi-language-python"
    assert host_used in up.stdout + up.stderr
    assert "hello from the program on stdout" in up.stdout
    assert project.marker.read_text() == "hello"
    outputs = json.loads(project.pulumi("stack", "output", "--json", "--show-secrets").stdout)
    assert outputs == {
        "greeting": "hello",
        "tokenIsSecret": True,
        "greetingIsSecret": False,
        "token": "not-a-real-token",
        "markerId": str(project.marker),
        "virtualenv": str(VENV),
    }

    preview = project.pulumi("preview", "--expect-no-changes")
    assert "2 unchanged" in preview.stdout, preview.stdout

    project.pulumi("destroy", "--yes")
    assert not project.marker.exists()


@pytest.mark.engine
def test_cli_shows_a_raising_program_error_once(project: Project) -> None:
    project.pulumi("config", "set", "mode", "raise")
    result = project.pulumi("preview", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ValueError: deliberate failure from the test program" in output
    # Exit code 32 means the program reported the error itself: the host adds nothing.
    assert "non-zero exit code" not in output


@pytest.mark.engine
def test_cli_reports_a_program_exit_code(project: Project) -> None:
    project.pulumi("config", "set", "mode", "exit")
    result = project.pulumi("preview", check=False)
    assert result.returncode != 0
    assert "program exited with non-zero exit code: 3" in result.stdout + result.stderr


@pytest.mark.engine
def test_cli_runs_a_program_from_a_main_folder(project: Project) -> None:
    app = project.dir / "app"
    app.mkdir()
    (app / "__main__.py").write_text(
        "import os\nimport pulumi\npulumi.export('cwd', os.getcwd())\n"
    )
    pulumi_yaml = project.dir / "Pulumi.yaml"
    pulumi_yaml.write_text(pulumi_yaml.read_text() + "main: app/\n")
    project.pulumi("up", "--yes", "--skip-preview")
    outputs = json.loads(project.pulumi("stack", "output", "--json").stdout)
    assert outputs == {"cwd": str(app)}


@pytest.mark.engine
def test_cli_with_a_source_copy_in_the_plugin_venv(tmp_path: Path) -> None:
    """The shape `make toolchain` installs: sources copied to a folder, run by the plugin venv."""
    python = require(CACHE / "plugin-venv" / "bin" / "python")
    sources = tmp_path / "sources"
    for source in (REPO / "offline_plugins").rglob("*.py"):
        target = sources / source.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    bin_dir = tmp_path / "bin"
    link_cli_companions(bin_dir)
    launcher = bin_dir / "pulumi-language-python"
    launcher.write_text(
        f'#!/bin/sh\nPYTHONPATH="{sources}" exec "{python}" -u -m {HOST_MODULE} "$@"\n'
    )
    launcher.chmod(0o755)
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "Pulumi.yaml").write_text(
        f"name: langhost-copy\nruntime:\n  name: python\n  options:\n    virtualenv: {VENV}\n"
    )
    (folder / "__main__.py").write_text(
        "import os, sys\nimport pulumi\n"
        "pulumi.export('pythonpath', os.environ.get('PYTHONPATH', ''))\n"
        "pulumi.export('python', sys.executable)\n"
    )
    env = launcher_env(bin_dir, pulumi_env(tmp_path / "state", passphrase="test"))
    env.pop("PYTHONPATH", None)
    proj = Project(folder, env, tmp_path / "unused", bin_dir)
    proj.pulumi("stack", "init", "test")
    try:
        proj.pulumi("up", "--yes", "--skip-preview")
        outputs = json.loads(proj.pulumi("stack", "output", "--json").stdout)
        # The launcher's PYTHONPATH (our sources) must not leak into the program.
        assert outputs == {"pythonpath": "", "python": str(VENV / "bin" / "python")}
    finally:
        proj.pulumi("destroy", "--yes", check=False)
        proj.pulumi("stack", "rm", "--yes", "--force", check=False)


def processes_with(marker: str, cmdline_part: str) -> list[int]:
    """Live processes whose command line holds `cmdline_part` and environment holds `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (
                cmdline_part.encode() in (proc / "cmdline").read_bytes()
                and marker.encode() in (proc / "environ").read_bytes()
            ):
                found.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


@pytest.mark.engine
def test_cli_interrupt_leaves_no_program_or_host_running(project: Project) -> None:
    pid_file = project.dir / "program.pid"
    (project.dir / "__main__.py").write_text(
        "import os, time\nfrom pathlib import Path\n"
        f"Path({str(pid_file)!r}).write_text(str(os.getpid()))\ntime.sleep(120)\n"
    )
    cli = subprocess.Popen(
        ["pulumi", "up", "--yes", "--non-interactive"],
        cwd=project.dir,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline and cli.poll() is None:
        time.sleep(0.1)
    assert pid_file.exists(), "the program never started"
    program = int(pid_file.read_text())

    cli.send_signal(signal.SIGINT)  # what Ctrl-C does
    output, _ = cli.communicate(timeout=60)
    assert cli.returncode != 0 and "canceled" in output, output

    deadline = time.monotonic() + 15
    left = processes_with(str(project.bin), "offline_plugins.language_host")
    while (left or Path(f"/proc/{program}").exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_with(str(project.bin), "offline_plugins.language_host")
    assert not Path(f"/proc/{program}").exists(), "the program outlived the CLI"
    assert left == [], "the language host outlived the CLI"
