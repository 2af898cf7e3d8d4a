"""The offline Go language host, spoken to over gRPC and driven by the real Pulumi CLI.

The contract part builds small stdlib-only Go programs (or runs a recording script through the
`binary` option), so the exact environment the Go SDK reads is seen; the CLI part builds and runs
a Go program against the real github.com/pulumi/pulumi/sdk/v3 with the offline random plugin.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import language_pb2

from harness.toolchain import REPO, pulumi_env
from offline_plugins.go_host import VERSION
from offline_plugins.go_host.modules import normalize_version
from tests.support.language_hosts import (
    Host,
    announce_host,
    install_output,
    program_info,
    start_host,
)
from tests.support.language_hosts import fake_engine as fake_engine_server
from tests.support.plugins import launcher_env, write_launcher

HOST_MODULE = "offline_plugins.go_host"
GO_PROGRAM = REPO / "tests" / "support" / "pulumi_go"
# A stdlib-only program: records the environment the Go SDK would read, exits as told.
RECORDING_PROGRAM = """package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
)

func main() {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PULUMI_") || strings.HasPrefix(kv, "PYTHONPATH=") {
			parts := strings.SplitN(kv, "=", 2)
			env[parts[0]] = parts[1]
		}
	}
	cwd, _ := os.Getwd()
	data, _ := json.Marshal(map[string]any{"env": env, "cwd": cwd, "args": os.Args[1:]})
	_ = os.WriteFile(os.Getenv("RECORD_TO"), data, 0o644)
	code, _ := strconv.Atoi(strings.TrimSpace(readFile("exit-code")))
	os.Exit(code)
}

func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}
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


def go_module(folder: Path, module: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "go.mod").write_text(f"module {module}\n\ngo 1.21\n{extra}")
    return folder


# --- the host on its own -------------------------------------------------------------------


def test_port_first_and_plugin_info(host: Host) -> None:
    assert 0 < host.port < 65536
    assert host.stub.GetPluginInfo(empty_pb2.Empty()).version == VERSION


@pytest.fixture
def module_tree(tmp_path: Path) -> Path:
    """A program module requiring provider SDK modules replaced by local folders."""
    fake = go_module(tmp_path / "fake", "example.com/pulumi-fake/sdk")
    (fake / "pulumi-plugin.json").write_text(
        json.dumps({"resource": True, "name": "fake", "version": "1.2.3", "server": "s://x"})
    )
    widget = go_module(tmp_path / "widget", "example.com/acme/pulumi-widget/sdk")
    (widget / "go").mkdir()
    (widget / "go" / "pulumi-plugin.json").write_text(json.dumps({"resource": True}))
    plain = go_module(tmp_path / "plain", "example.com/plain")
    (plain / "pulumi-plugin.json").write_text(json.dumps({"resource": False}))
    return go_module(
        tmp_path / "prog",
        "example.com/prog",
        "\nrequire (\n"
        "\texample.com/pulumi-fake/sdk v1.0.0\n"
        "\texample.com/acme/pulumi-widget/sdk v0.4.1-0.20240101000000-abcdefabcdef\n"
        "\texample.com/plain v1.0.0 // indirect\n"
        ")\n\n"
        "replace example.com/pulumi-fake/sdk => ../fake\n"
        "replace example.com/acme/pulumi-widget/sdk => ../widget\n"
        "replace example.com/plain => ../plain\n",
    )


def test_required_packages_come_from_pulumi_plugin_json(host: Host, module_tree: Path) -> None:
    resp = host.stub.GetRequiredPackages(
        language_pb2.GetRequiredPackagesRequest(info=program_info(module_tree)), timeout=120
    )
    found = {(p.name, p.kind, p.version, p.server) for p in resp.packages}
    # The widget's pseudo-version stands for the tag before it (patch - 1).
    assert found == {("fake", "resource", "1.2.3", "s://x"), ("widget", "resource", "v0.4.0", "")}
    plugins = host.stub.GetRequiredPlugins(
        language_pb2.GetRequiredPluginsRequest(info=program_info(module_tree)), timeout=120
    )
    assert {(p.name, p.version) for p in plugins.plugins} == {
        ("fake", "1.2.3"),
        ("widget", "v0.4.0"),
    }


def test_a_program_outside_a_module_needs_no_plugins(host: Host, tmp_path: Path) -> None:
    resp = host.stub.GetRequiredPackages(
        language_pb2.GetRequiredPackagesRequest(info=program_info(tmp_path)), timeout=120
    )
    assert list(resp.packages) == []


def test_program_dependencies_from_go_mod(host: Host, module_tree: Path) -> None:
    def deps(transitive: bool) -> list[tuple[str, str]]:
        req = language_pb2.GetProgramDependenciesRequest(
            info=program_info(module_tree), transitiveDependencies=transitive
        )
        resp = host.stub.GetProgramDependencies(req, timeout=120)
        return [(d.name, d.version) for d in resp.dependencies]

    # Replaced modules have no version of their own any more.
    assert deps(False) == [
        ("example.com/pulumi-fake/sdk", ""),
        ("example.com/acme/pulumi-widget/sdk", ""),
    ]
    assert ("example.com/plain", "") in deps(True)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v4.21.4", "v4.21.4"),
        ("4.21.4", "4.21.4"),
        ("v1.29.1-0.20200403140640-efb5e2a48a86", "v1.29.0"),
        ("v2.0.0-20200403140640-efb5e2a48a86", "v2.0.0"),
        ("v0.0.0-20200403140640-efb5e2a48a86", None),
        ("not-a-version", None),
    ],
)
def test_plugin_version_from_module_version(version: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            normalize_version(version)
    else:
        assert normalize_version(version) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"binary": 3}, "binary option must be a string"),
        ({"binary": "a", "buildTarget": "b"}, "binary and buildTarget cannot both be specified"),
    ],
)
def test_bad_options_are_refused_by_name(
    host: Host, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        host.stub.Run(language_pb2.RunRequest(info=program_info(tmp_path, **options)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


def test_install_dependencies_runs_go_mod_tidy(host: Host, tmp_path: Path) -> None:
    prog = go_module(tmp_path / "prog", "example.com/prog")
    (prog / "main.go").write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println() }\n')
    out, _ = install_output(host, program_info(prog))
    assert "Installing dependencies..." in out and "Finished installing dependencies" in out
    (prog / "main.go").write_text('package main\n\nimport "example.com/absent/pkg"\n')
    with pytest.raises(grpc.RpcError) as caught:
        install_output(host, program_info(prog))
    assert "`go mod tidy` failed to install dependencies" in caught.value.details()


def test_about_names_go(host: Host, tmp_path: Path) -> None:
    resp = host.stub.About(language_pb2.AboutRequest(info=program_info(tmp_path)))
    assert resp.executable == shutil.which("go")
    assert resp.version.startswith("go version go1.")


def test_code_generation_answers_unimplemented(host: Host) -> None:
    for call, request in (
        (host.stub.Pack, language_pb2.PackRequest()),
        (host.stub.GenerateProject, language_pb2.GenerateProjectRequest()),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(request)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "offline Go language host" in caught.value.details()


# --- Run: go build, then the program with the SDK's environment -----------------------------


@dataclass
class Recorder:
    host: Host
    record: Path
    program: Path

    def run(self, exit_code: int = 0, **options: Any) -> language_pb2.RunResponse:
        (self.program / "exit-code").write_text(str(exit_code))
        req = language_pb2.RunRequest(
            project="proj",
            stack="dev",
            organization="org",
            monitor_address="127.0.0.1:1",
            pwd=str(self.program),
            dryRun=True,
            parallel=4,
            config={"proj:greeting": "hi"},
            configSecretKeys=["proj:greeting"],
            info=program_info(self.program, **options),
        )
        return self.host.stub.Run(req, timeout=300)

    def seen(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.record.read_text())
        return data


@pytest.fixture
def recorder(fake_engine: tuple[str, grpc.Server], tmp_path: Path) -> Iterator[Recorder]:
    program = go_module(tmp_path / "program", "example.com/recorder")
    (program / "main.go").write_text(RECORDING_PROGRAM)
    record = tmp_path / "record.json"
    started = start_host(HOST_MODULE, fake_engine[0], {"RECORD_TO": str(record)})
    yield Recorder(started, record, program)
    if started.proc.poll() is None:
        assert started.stop()[0] == 0


def test_run_builds_and_passes_the_sdk_environment(
    recorder: Recorder, fake_engine: tuple[str, grpc.Server]
) -> None:
    assert recorder.run() == language_pb2.RunResponse()
    seen = recorder.seen()
    env = seen["env"]
    prog = str(recorder.program)
    expected = {
        "PULUMI_ORGANIZATION": "org",
        "PULUMI_PROJECT": "proj",
        "PULUMI_ROOT_DIRECTORY": prog,
        "PULUMI_STACK": "dev",
        "PULUMI_CONFIG_SECRET_KEYS": '["proj:greeting"]',
        "PULUMI_DRY_RUN": "true",
        "PULUMI_PARALLEL": "4",
        "PULUMI_MONITOR": "127.0.0.1:1",
        "PULUMI_ENGINE": fake_engine[0],
    }
    assert {k: env.get(k) for k in expected} == expected
    # The Go SDK reads config keys in the form the engine sends them.
    assert json.loads(env["PULUMI_CONFIG"]) == {"proj:greeting": "hi"}
    assert "offline_plugins" not in env.get("PYTHONPATH", "")
    assert seen["cwd"] == prog and seen["args"] == []


def test_exit_codes_bail_or_are_reported(recorder: Recorder) -> None:
    assert recorder.run(exit_code=32) == language_pb2.RunResponse(bail=True)
    resp = recorder.run(exit_code=3)
    assert resp.error == "program exited with non-zero exit code: 3" and not resp.bail


def test_build_target_keeps_the_binary(recorder: Recorder) -> None:
    assert recorder.run(buildTarget="out/program") == language_pb2.RunResponse()
    assert (recorder.program / "out" / "program").is_file()


def test_binary_option_runs_a_prebuilt_program(recorder: Recorder, tmp_path: Path) -> None:
    script = tmp_path / "prebuilt.sh"
    script.write_text(
        f'#!/bin/sh\nprintf \'{{"env": {{}}, "cwd": "%s"}}\' "$PWD" > {recorder.record}\n'
    )
    script.chmod(0o755)
    assert recorder.run(binary=str(script)) == language_pb2.RunResponse()
    assert recorder.seen()["cwd"] == str(recorder.program)
    with pytest.raises(grpc.RpcError) as caught:
        recorder.run(binary="no-such-binary-anywhere")
    assert "unable to find 'no-such-binary-anywhere' executable" in caught.value.details()


def test_compile_errors_are_shown(recorder: Recorder) -> None:
    (recorder.program / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    with pytest.raises(grpc.RpcError) as caught:
        recorder.run()
    assert "error in compiling Go" in caught.value.details()
    _, err = recorder.host.stop()
    assert "undefined: undefined" in err  # go build's own message reached the engine's output


def test_no_go_files_is_a_clear_error(recorder: Recorder) -> None:
    (recorder.program / "main.go").unlink()
    with pytest.raises(grpc.RpcError) as caught:
        recorder.run()
    assert "Failed to find go files for 'go build'" in caught.value.details()


def test_cancel_refuses_further_runs(host: Host, tmp_path: Path) -> None:
    assert host.stub.Cancel(empty_pb2.Empty()) == empty_pb2.Empty()
    with pytest.raises(grpc.RpcError) as caught:
        host.stub.Run(language_pb2.RunRequest(info=program_info(tmp_path)))
    assert "cancelled" in caught.value.details()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_the_host_quietly(fake_engine: tuple[str, grpc.Server], sig: int) -> None:
    started = start_host(HOST_MODULE, fake_engine[0])
    assert started.stub.GetPluginInfo(empty_pb2.Empty()).version == VERSION
    code, err = started.stop(sig, timeout=60)  # a guard against a host that never stops
    assert code == 0, "it ended by itself, quietly, not killed"
    assert err == ""


# --- with the real Pulumi CLI and the real Go SDK -------------------------------------------


@pytest.mark.engine
def test_cli_go_program_up_preview_destroy(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("go.mod", "go.sum", "main.go"):
        shutil.copy(GO_PROGRAM / name, folder / name)
    (folder / "Pulumi.yaml").write_text("name: go-host-test\nruntime: go\n")
    bin_dir = tmp_path / "bin"
    write_launcher(bin_dir, "pulumi-language-go", HOST_MODULE)
    announce_host("go", "offline", bin_dir / "pulumi-language-go")
    env = launcher_env(bin_dir, pulumi_env(tmp_path / "state", passphrase="test"))

    def pulumi(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)}: {done.stdout}\n{done.stderr}")
        return done

    pulumi("stack", "init", "test")
    try:
        pulumi("config", "set", "length", "16")
        pulumi("config", "set", "--secret", "token", "not-a-real-token")
        up = pulumi("up", "--yes", "--skip-preview")
        assert f"using pulumi-language-go from $PATH at {bin_dir}" in up.stdout + up.stderr
        assert "hello from the Go program" in up.stdout
        outputs = json.loads(pulumi("stack", "output", "--json", "--show-secrets").stdout)
        assert outputs == {"passwordLength": 16, "token": "not-a-real-token"}
        preview = pulumi("preview", "--expect-no-changes")
        assert "2 unchanged" in preview.stdout, preview.stdout
        pulumi("destroy", "--yes")
    finally:
        subprocess.run(
            ["pulumi", "stack", "rm", "--yes", "--force", "--non-interactive"],
            cwd=folder, env=env, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
