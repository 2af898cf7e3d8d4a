"""The offline Node.js language host, spoken to over gRPC and driven by the real Pulumi CLI.

The contract part stands a recording script in for the SDK's runner (the official host allows
that with PULUMI_LANGUAGE_NODEJS_RUN_PATH), so the exact command line and environment are seen.
The CLI part runs a TypeScript program with the real @pulumi/pulumi and @pulumi/random from npm.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import language_pb2

from harness.toolchain import pulumi_env
from offline_plugins.nodejs_host import VERSION
from tests.support.language_hosts import (
    Host,
    announce_host,
    install_output,
    program_info,
    start_host,
)
from tests.support.language_hosts import fake_engine as fake_engine_server
from tests.support.plugins import launcher_env, write_launcher
from tests.support.pulumi_nodejs import program_node_modules

HOST_MODULE = "offline_plugins.nodejs_host"
# Records how the host started it, then exits with the code the test asks for.
RECORDING_RUNNER = """
const fs = require("fs");
const keys = ["PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS", "PULUMI_NODEJS_TYPESCRIPT",
              "PULUMI_NODEJS_TSCONFIG_PATH", "PYTHONPATH"];
const env = {};
for (const k of keys) { if (k in process.env) env[k] = process.env[k]; }
fs.writeFileSync(process.env.RECORD_TO, JSON.stringify({
  argv: process.argv.slice(1), execArgv: process.execArgv, cwd: process.cwd(), env }));
process.exit(Number(fs.readFileSync("exit-code", "utf8")));  // cwd: the program folder
"""


@pytest.fixture
def fake_engine() -> Iterator[tuple[str, grpc.Server]]:
    with fake_engine_server() as engine:
        yield engine


@pytest.fixture
def host(fake_engine: tuple[str, grpc.Server]) -> Iterator[Host]:
    started = start_host(HOST_MODULE, fake_engine[0])
    yield started
    if started.proc.poll() is None:
        code, err = started.stop()
        assert code == 0 and "Traceback" not in err, err


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def package(folder: Path, name: str, version: str, pulumi: dict[str, Any] | None = None) -> None:
    data: dict[str, Any] = {"name": name, "version": version}
    if pulumi is not None:
        data["pulumi"] = pulumi
    write_json(folder / "package.json", data)


# --- the host on its own -------------------------------------------------------------------


def test_port_first_and_plugin_info(host: Host) -> None:
    assert 0 < host.port < 65536
    assert host.stub.GetPluginInfo(empty_pb2.Empty()).version == VERSION


def test_version_flag_prints_the_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", HOST_MODULE, "-version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == VERSION


@pytest.fixture
def plugin_tree(tmp_path: Path) -> Path:
    """A program folder whose node_modules holds every case the official host's walk handles."""
    prog = tmp_path / "prog"
    nm = prog / "node_modules"
    package(nm / "@pulumi" / "pulumi", "@pulumi/pulumi", "3.276.0")
    package(nm / "@pulumi" / "random", "@pulumi/random", "4.21.2", {"resource": True})
    package(
        nm / "@pulumi" / "command",
        "@pulumi/command",
        "1.0.0",
        {"resource": True, "name": "command", "version": "1.2.1"},
    )
    package(
        nm / "acme-plugin",
        "acme-plugin",
        "2.0.0",
        {"resource": True, "name": "acme", "server": "https://plugins.example.invalid"},
    )
    value = base64.b64encode(b"parameter bytes").decode()
    package(
        nm / "@acme" / "ext",
        "@acme/ext",
        "0.1.0",
        {
            "resource": True,
            "name": "terraform-provider",
            "version": "0.8.0",
            "parameterization": {"name": "ext", "version": "0.1.0", "value": value},
        },
    )
    # Not plugins: no `resource`, resource false, a third party without a plugin name.
    package(nm / "left-pad", "left-pad", "1.3.0")
    package(nm / "@pulumi" / "policy", "@pulumi/policy", "1.0.0", {"resource": False})
    package(nm / "nameless", "nameless", "1.0.0", {"resource": True})
    (nm / "broken").mkdir()
    (nm / "broken" / "package.json").write_text("{ not json")
    # Outside node_modules: the program's own package.json is no plugin source.
    package(prog, "prog", "0.0.0", {"resource": True, "name": "not-a-plugin"})
    # A nested copy is reported again, as the official host does.
    package(nm / "wrapper" / "node_modules" / "@pulumi" / "tls", "@pulumi/tls", "5.0.0",
            {"resource": True})  # fmt: skip
    # A policy pack's own plugins are not the program's.
    (prog / "policy").mkdir()
    (prog / "policy" / "PulumiPolicy.yaml").write_text("runtime: nodejs\n")
    package(prog / "policy" / "node_modules" / "@pulumi" / "gcp", "@pulumi/gcp", "8.0.0",
            {"resource": True})  # fmt: skip
    # A symlink cycle is walked once.
    (nm / "cycle").symlink_to(prog, target_is_directory=True)
    return prog


EXPECTED_PLUGINS = {
    ("random", "v4.21.2", ""),
    ("command", "v1.2.1", ""),
    ("acme", "v2.0.0", "https://plugins.example.invalid"),
    ("terraform-provider", "v0.8.0", ""),
    ("tls", "v5.0.0", ""),
}


def test_required_packages_follow_the_official_walk(host: Host, plugin_tree: Path) -> None:
    resp = host.stub.GetRequiredPackages(
        language_pb2.GetRequiredPackagesRequest(info=program_info(plugin_tree))
    )
    found = {(p.name, p.version, p.server) for p in resp.packages}
    assert found == EXPECTED_PLUGINS
    assert {p.kind for p in resp.packages} == {"resource"}
    ext = next(p for p in resp.packages if p.name == "terraform-provider")
    assert (ext.parameterization.name, ext.parameterization.version) == ("ext", "0.1.0")
    assert ext.parameterization.value == b"parameter bytes"
    code, err = host.stop()
    assert code == 0
    # The broken and nameless packages are reported, and hid nothing.
    assert "broken/package.json" in err and "nameless" in err


def test_required_plugins_match_required_packages(host: Host, plugin_tree: Path) -> None:
    resp = host.stub.GetRequiredPlugins(
        language_pb2.GetRequiredPluginsRequest(info=program_info(plugin_tree))
    )
    assert {(p.name, p.version, p.server) for p in resp.plugins} == EXPECTED_PLUGINS


def test_incompatible_sdk_copies_are_reported(host: Host, tmp_path: Path) -> None:
    nm = tmp_path / "node_modules"
    package(nm / "@pulumi" / "pulumi", "@pulumi/pulumi", "3.276.0")
    package(nm / "old" / "node_modules" / "@pulumi" / "pulumi", "@pulumi/pulumi", "2.25.0")
    host.stub.GetRequiredPackages(
        language_pb2.GetRequiredPackagesRequest(info=program_info(tmp_path))
    )
    _, err = host.stop()
    assert "Found incompatible versions of @pulumi/pulumi" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"typescript": "yes"}, "typescript option must be a boolean"),
        ({"tsconfig": 3}, "tsconfig option must be a string"),
        ({"nodeargs": "--inspect 'unclosed"}, "nodeargs option"),
        ({"packagemanager": "pip"}, "packagemanager option must be one of"),
    ],
)
def test_bad_options_are_refused_by_name(
    host: Host, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        host.stub.GetRequiredPackages(
            language_pb2.GetRequiredPackagesRequest(info=program_info(tmp_path, **options))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test_other_package_managers_are_refused_by_name(host: Host, tmp_path: Path) -> None:
    write_json(tmp_path / "package.json", {"name": "p"})
    with pytest.raises(grpc.RpcError) as caught:
        install_output(host, program_info(tmp_path, packagemanager="pnpm"))
    assert "'pnpm' is not supported by the offline Node.js language host" in (
        caught.value.details()
    )
    (tmp_path / "yarn.lock").write_text("")
    with pytest.raises(grpc.RpcError) as caught:
        install_output(host, program_info(tmp_path))  # auto: the lock file says yarn
    assert "'yarn' is not supported" in caught.value.details()


def test_install_dependencies_runs_npm_install(host: Host, tmp_path: Path) -> None:
    # A local package: npm installs it without reaching any registry.
    package(tmp_path / "dep", "dep", "1.2.3", {"resource": True, "name": "dep"})
    prog = tmp_path / "prog"
    write_json(prog / "package.json", {"name": "prog", "dependencies": {"dep": "file:../dep"}})
    out, _ = install_output(host, program_info(prog))
    assert "Installing dependencies..." in out and "Finished installing dependencies" in out
    assert "npm install --loglevel=error" in out
    assert (prog / "node_modules" / "dep" / "package.json").exists()
    resp = host.stub.GetRequiredPackages(
        language_pb2.GetRequiredPackagesRequest(info=program_info(prog))
    )
    assert [(p.name, p.version) for p in resp.packages] == [("dep", "v1.2.3")]


def test_install_without_package_json_names_the_file(host: Host, tmp_path: Path) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        install_output(host, program_info(tmp_path))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"no package.json in {tmp_path}" in caught.value.details()


def test_program_dependencies_come_from_the_lock_file(host: Host, tmp_path: Path) -> None:
    write_json(
        tmp_path / "package.json",
        {"name": "p", "dependencies": {"a": "^1"}, "devDependencies": {"typescript": "^5"}},
    )
    write_json(
        tmp_path / "package-lock.json",
        {
            "lockfileVersion": 3,
            "packages": {
                "": {"name": "p"},
                "node_modules/a": {"version": "1.0.0"},
                "node_modules/b": {"version": "2.0.0"},
                "node_modules/a/node_modules/b": {"version": "1.5.0"},
                "node_modules/typescript": {"version": "5.9.3"},
                "node_modules/linked": {"link": True, "resolved": "../linked"},
            },
        },
    )

    def deps(transitive: bool) -> list[tuple[str, str]]:
        req = language_pb2.GetProgramDependenciesRequest(
            info=program_info(tmp_path), transitiveDependencies=transitive
        )
        return [(d.name, d.version) for d in host.stub.GetProgramDependencies(req).dependencies]

    assert deps(False) == [("a", "1.0.0"), ("typescript", "5.9.3")]
    assert sorted(deps(True)) == [
        ("a", "1.0.0"),
        ("b", "1.5.0"),
        ("b", "2.0.0"),
        ("typescript", "5.9.3"),
    ]
    (tmp_path / "package-lock.json").unlink()
    with pytest.raises(grpc.RpcError) as caught:
        deps(False)
    assert "no package-lock.json found" in caught.value.details()


def test_about_names_node_and_npm(host: Host, tmp_path: Path) -> None:
    resp = host.stub.About(language_pb2.AboutRequest(info=program_info(tmp_path)))
    assert resp.executable == shutil.which("node")
    assert resp.version.startswith("v")
    assert resp.metadata["packagemanager"] == "npm"
    assert resp.metadata["packagemanagerVersion"][0].isdigit()
    assert "offline" in resp.metadata["host"]


def test_code_generation_answers_unimplemented(host: Host) -> None:
    for call, request in (
        (host.stub.Pack, language_pb2.PackRequest()),
        (host.stub.GenerateProject, language_pb2.GenerateProjectRequest()),
        (host.stub.RunPlugin, language_pb2.RunPluginRequest()),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            list(call(request)) if call is host.stub.RunPlugin else call(request)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "offline Node.js language host" in caught.value.details()


# --- Run, seen through a recording runner ---------------------------------------------------


@dataclass
class Recorder:
    host: Host
    record: Path
    program: Path

    def run(self, exit_code: int = 0, **changes: Any) -> language_pb2.RunResponse:
        req = language_pb2.RunRequest(
            project="proj",
            stack="dev",
            organization="org",
            monitor_address="127.0.0.1:1",
            dryRun=True,
            parallel=4,
            args=["extra-arg"],
            config={"proj:greeting": "hi", "aws:config:region": "eu-west-1"},
            configSecretKeys=["proj:greeting"],
            info=program_info(self.program, tsconfig="tsconfig.pulumi.json"),
        )
        req.info.entry_point = "index.ts"
        for key, value in changes.items():
            if key == "info":
                req.info.CopyFrom(value)
            else:
                setattr(req, key, value)
        (self.program / "exit-code").write_text(str(exit_code))
        return self.host.stub.Run(req, timeout=120)

    def seen(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.record.read_text())
        return data


@pytest.fixture
def recorder(fake_engine: tuple[str, grpc.Server], tmp_path: Path) -> Iterator[Recorder]:
    runner = tmp_path / "runner.js"
    runner.write_text(RECORDING_RUNNER)
    program = tmp_path / "program"
    program.mkdir()
    record = tmp_path / "record.json"
    started = start_host(
        HOST_MODULE,
        fake_engine[0],
        {"PULUMI_LANGUAGE_NODEJS_RUN_PATH": str(runner), "RECORD_TO": str(record)},
    )
    yield Recorder(started, record, program)
    if started.proc.poll() is None:
        assert started.stop()[0] == 0


def test_run_passes_the_official_arguments_and_environment(
    recorder: Recorder, fake_engine: tuple[str, grpc.Server], tmp_path: Path
) -> None:
    assert recorder.run() == language_pb2.RunResponse()
    seen = recorder.seen()
    prog = str(recorder.program)
    assert seen["argv"] == [
        str(tmp_path / "runner.js"),
        "--monitor", "127.0.0.1:1",
        "--engine", fake_engine[0],
        "--organization", "org",
        "--project", "proj",
        "--root-directory", prog,
        "--stack", "dev",
        "--pwd", prog,
        "--dry-run",
        "--parallel", "4",
        "index.ts",
        "extra-arg",
    ]  # fmt: skip
    assert seen["cwd"] == prog
    env = seen["env"]
    # Keys in the old `<ns>:config:<name>` form, whichever form the engine sent.
    assert json.loads(env["PULUMI_CONFIG"]) == {
        "proj:config:greeting": "hi",
        "aws:config:region": "eu-west-1",
    }
    assert json.loads(env["PULUMI_CONFIG_SECRET_KEYS"]) == ["proj:greeting"]
    assert env["PULUMI_NODEJS_TYPESCRIPT"] == "true"
    assert env["PULUMI_NODEJS_TSCONFIG_PATH"] == "tsconfig.pulumi.json"
    assert "offline_plugins" not in env.get("PYTHONPATH", "")


def test_run_options_typescript_off_and_nodeargs(recorder: Recorder) -> None:
    info = program_info(recorder.program, typescript=False, nodeargs="--max-old-space-size=256")
    recorder.run(info=info, dryRun=False)
    seen = recorder.seen()
    assert "PULUMI_NODEJS_TYPESCRIPT" not in seen["env"]
    assert seen["execArgv"] == ["--max-old-space-size=256"]
    assert "--dry-run" not in seen["argv"]
    assert seen["argv"][-2:] == [".", "extra-arg"]


def test_exit_code_32_bails_quietly(recorder: Recorder) -> None:
    assert recorder.run(exit_code=32) == language_pb2.RunResponse(bail=True)


def test_other_exit_codes_are_reported(recorder: Recorder) -> None:
    resp = recorder.run(exit_code=3)
    assert resp.error == "program exited with non-zero exit code: 3" and not resp.bail


def test_run_without_the_sdk_says_to_install(host: Host, tmp_path: Path) -> None:
    resp = host.stub.Run(
        language_pb2.RunRequest(project="p", stack="s", info=program_info(tmp_path)),
        timeout=120,
    )
    assert "It looks like the Pulumi SDK has not been installed" in resp.error


def test_cancel_refuses_further_runs(host: Host, tmp_path: Path) -> None:
    assert host.stub.Cancel(empty_pb2.Empty()) == empty_pb2.Empty()
    with pytest.raises(grpc.RpcError) as caught:
        host.stub.Run(language_pb2.RunRequest(info=program_info(tmp_path)))
    assert "cancelled" in caught.value.details()


def test_debugger_attach_is_refused(host: Host, tmp_path: Path) -> None:
    req = language_pb2.RunRequest(info=program_info(tmp_path), attach_debugger=True)
    with pytest.raises(grpc.RpcError) as caught:
        host.stub.Run(req)
    assert "debugger is not supported" in caught.value.details()


# --- process life -------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_the_host_quietly(fake_engine: tuple[str, grpc.Server], sig: int) -> None:
    started = start_host(HOST_MODULE, fake_engine[0])
    assert started.stub.GetPluginInfo(empty_pb2.Empty()).version == VERSION
    code, err = started.stop(sig, timeout=60)  # a guard against a host that never stops
    assert code == 0, "it ended by itself, quietly, not killed"
    assert err == ""


def test_host_exits_when_the_engine_is_gone(fake_engine: tuple[str, grpc.Server]) -> None:
    address, server = fake_engine
    started = start_host(HOST_MODULE, address, {"SUPAQUEUE_PLUGIN_HEALTHCHECK_SECONDS": "0.3"})
    time.sleep(1.0)
    assert started.proc.poll() is None, "the host must keep running while the engine answers"
    server.stop(0)
    _, err = started.proc.communicate(timeout=20)
    assert started.proc.returncode == 0
    assert "Traceback" not in err


# --- with the real Pulumi CLI and the real @pulumi/pulumi -----------------------------------

PROGRAM = """
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";

const config = new pulumi.Config();
const mode = config.get("mode") ?? "";
if (mode === "throw") {
    throw new Error("deliberate failure from the test program");
}
if (mode === "exit") {
    process.exit(3);
}
console.log("hello from the TypeScript program");
// npm serves @pulumi/random up to 4.21.2; the offline random plugin is 4.21.4 (the version the
// pinned Python wheel asks for), so the resource names the plugin version it is served by.
const password = new random.RandomPassword("password", {
    length: config.requireNumber("length"),
    special: false,
}, { version: "4.21.4" });
export const passwordLength = password.result.apply((p: string) => p.length);
export const token = config.requireSecret("token");
export const stack = pulumi.getStack();
"""


@dataclass
class Project:
    dir: Path
    env: dict[str, str]
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
    node_modules = program_node_modules()
    (folder / "node_modules").symlink_to(node_modules, target_is_directory=True)
    shutil.copy(node_modules.parent / "package.json", folder / "package.json")
    (folder / "Pulumi.yaml").write_text("name: nodejs-host-test\nruntime: nodejs\n")
    (folder / "index.ts").write_text(PROGRAM)
    bin_dir = tmp_path / "bin"
    write_launcher(bin_dir, "pulumi-language-nodejs", HOST_MODULE)
    announce_host("nodejs", "offline", bin_dir / "pulumi-language-nodejs")
    env = launcher_env(bin_dir, pulumi_env(tmp_path / "state", passphrase="test"))
    proj = Project(folder, env, bin_dir)
    proj.pulumi("stack", "init", "test")
    proj.pulumi("config", "set", "length", "24")
    proj.pulumi("config", "set", "--secret", "token", "not-a-real-token")
    yield proj
    # Leave nothing behind even when a step failed half way.
    proj.pulumi("destroy", "--yes", check=False)
    proj.pulumi("stack", "rm", "--yes", "--force", check=False)


@pytest.mark.engine
def test_cli_lifecycle_up_preview_destroy(project: Project) -> None:
    up = project.pulumi("up", "--yes", "--skip-preview")
    # The CLI says which language host it took: ours, from the launcher folder.
    host_used = f"using pulumi-language-nodejs from $PATH at {project.bin}/pulumi-language-nodejs"
    assert host_used in up.stdout + up.stderr
    assert "hello from the TypeScript program" in up.stdout
    outputs = json.loads(project.pulumi("stack", "output", "--json", "--show-secrets").stdout)
    assert outputs == {"passwordLength": 24, "token": "not-a-real-token", "stack": "test"}
    state = json.loads(project.pulumi("stack", "export").stdout)
    types = [r["type"] for r in state["deployment"]["resources"]]
    assert "random:index/randomPassword:RandomPassword" in types

    preview = project.pulumi("preview", "--expect-no-changes")
    assert "2 unchanged" in preview.stdout, preview.stdout

    project.pulumi("destroy", "--yes")
    state = json.loads(project.pulumi("stack", "export").stdout)
    assert state["deployment"].get("resources") in (None, [])


@pytest.mark.engine
def test_cli_shows_a_throwing_program_error_once(project: Project) -> None:
    project.pulumi("config", "set", "mode", "throw")
    result = project.pulumi("preview", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count("deliberate failure from the test program") == 1, output
    # Exit code 32 means the SDK reported the error itself: the host adds nothing.
    assert "non-zero exit code" not in output


@pytest.mark.engine
def test_cli_reports_a_program_exit_code(project: Project) -> None:
    project.pulumi("config", "set", "mode", "exit")
    result = project.pulumi("preview", check=False)
    assert result.returncode != 0
    assert "program exited with non-zero exit code: 3" in result.stdout + result.stderr


def test_generate_package_without_sdkgen_names_the_fix(
    fake_engine: tuple[str, grpc.Server], tmp_path: Path
) -> None:
    absent = str(tmp_path / "absent")
    started = start_host(HOST_MODULE, fake_engine[0], {"SUPAQUEUE_PULUMI_SDKGEN": absent})
    try:
        req = language_pb2.GeneratePackageRequest(directory=str(tmp_path), schema="{}")
        with pytest.raises(grpc.RpcError) as caught:
            started.stub.GeneratePackage(req)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"SUPAQUEUE_PULUMI_SDKGEN is set to {absent!r}" in caught.value.details()
    finally:
        assert started.stop()[0] == 0
