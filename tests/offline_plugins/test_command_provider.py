"""The offline command plugin over real gRPC: scripts really run (or, in previews, do not)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, provider_pb2

from offline_plugins.common.properties import UNKNOWN, is_secret, reveal, secret
from tests.offline_plugins.provider_client import PluginProcess

COMMAND = "command:local:Command"


@pytest.fixture(scope="module")
def plugin() -> Iterator[PluginProcess]:
    env = {**os.environ, "OFFLINE_PLUGIN_TEST_MARK": "from-the-plugin-environment"}
    with PluginProcess("offline_plugins.command_provider", "--logflow", env=env) as proc:
        yield proc
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr


def run(plugin: PluginProcess, name: str = "cmd", **news: object) -> tuple[str, dict[str, Any]]:
    inputs = plugin.checked(COMMAND, name, dict(news))
    return plugin.create(COMMAND, name, inputs)


def test_reports_the_version_the_wheel_requests(plugin: PluginProcess) -> None:
    assert plugin.plugin_version() == "1.2.1"
    configured = plugin.rpc.Configure(provider_pb2.ConfigureRequest(acceptSecrets=True))
    assert configured.acceptSecrets and configured.supportsPreview


def test_create_captures_stdout_and_stderr(plugin: PluginProcess) -> None:
    resource_id, outs = run(plugin, "hello", create="echo hello; echo warn >&2")
    assert resource_id.startswith("hello") and len(resource_id) == len("hello") + 8
    assert outs["stdout"] == "hello" and outs["stderr"] == "warn"
    assert outs["create"] == "echo hello; echo warn >&2"
    assert outs["addPreviousOutputInEnv"] is True


def test_only_one_trailing_newline_is_dropped(plugin: PluginProcess) -> None:
    _, outs = run(plugin, create="printf 'a\\n\\n'")
    assert outs["stdout"] == "a\n"


def test_no_create_script_is_fine(plugin: PluginProcess) -> None:
    _, outs = run(plugin, delete="true")
    assert outs["stdout"] == "" and outs["stderr"] == ""


def test_failing_command_fails_with_its_output(plugin: PluginProcess) -> None:
    inputs = plugin.checked(
        COMMAND, "bad", {"create": "echo partial; echo 'no such table: jobs' >&2; exit 3"}
    )
    with pytest.raises(grpc.RpcError) as caught:
        plugin.create(COMMAND, "bad", inputs)
    details = caught.value.details()
    assert "exit status 3" in details
    assert "no such table: jobs" in details
    assert "partial" in details
    assert "Traceback" not in details


def test_missing_interpreter_is_a_clear_error(plugin: PluginProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        run(plugin, create="x", interpreter=["/no/such/shell", "-c"])
    assert "/no/such/shell" in caught.value.details()


def test_environment_is_added_to_the_plugins_own(plugin: PluginProcess) -> None:
    _, outs = run(
        plugin,
        create='echo "$GREETING/$OFFLINE_PLUGIN_TEST_MARK"',
        environment={"GREETING": "hi there"},
    )
    assert outs["stdout"] == "hi there/from-the-plugin-environment"


def test_dir_and_missing_dir(plugin: PluginProcess, tmp_path: Path) -> None:
    _, outs = run(plugin, create="pwd; ls", dir=str(tmp_path))
    (tmp_path / "marker.txt").write_text("x")
    _, outs = run(plugin, create="pwd; ls", dir=str(tmp_path))
    assert outs["stdout"] == f"{tmp_path}\nmarker.txt"
    with pytest.raises(grpc.RpcError) as caught:
        run(plugin, create="pwd", dir=str(tmp_path / "absent"))
    assert "does not exist" in caught.value.details()


def test_stdin_and_interpreter(plugin: PluginProcess) -> None:
    _, outs = run(plugin, create="tr a-z A-Z", stdin="piped text")
    assert outs["stdout"] == "PIPED TEXT"
    _, outs = run(plugin, create="print(6 * 7)", interpreter=[sys.executable, "-c"])
    assert outs["stdout"] == "42"
    # Without stdin the script reads end-of-file at once instead of hanging.
    _, outs = run(plugin, create="cat; echo done")
    assert outs["stdout"] == "done"


def test_triggers_replace_other_changes_update(plugin: PluginProcess) -> None:
    inputs = plugin.checked(COMMAND, "c", {"create": "echo 1", "triggers": ["a", 1]})
    _, outs = plugin.create(COMMAND, "c", inputs)
    same = plugin.diff(COMMAND, "c", outs, inputs)
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE

    retrigger = plugin.diff(COMMAND, "c", outs, {**inputs, "triggers": ["a", 2]})
    assert list(retrigger.replaces) == ["triggers"]
    assert retrigger.detailedDiff["triggers"].kind == provider_pb2.PropertyDiff.UPDATE_REPLACE

    unknown = plugin.diff(COMMAND, "c", outs, {**inputs, "triggers": UNKNOWN})
    assert list(unknown.replaces) == ["triggers"]

    edited = plugin.diff(COMMAND, "c", outs, {**inputs, "create": "echo 2"})
    assert edited.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(edited.replaces) == []
    assert edited.detailedDiff["create"].kind == provider_pb2.PropertyDiff.UPDATE


def test_update_reruns_create_without_an_update_script(plugin: PluginProcess) -> None:
    resource_id, outs = run(plugin, create="echo first")
    news = plugin.checked(COMMAND, "cmd", {"create": 'echo "second after $PULUMI_COMMAND_STDOUT"'})
    updated = plugin.update(COMMAND, "cmd", resource_id, outs, news)
    assert updated["stdout"] == "second after first"


def test_update_script_sees_previous_output_unless_disabled(plugin: PluginProcess) -> None:
    resource_id, outs = run(plugin, create="echo v1; echo e1 >&2")
    script = 'echo "update:${PULUMI_COMMAND_STDOUT:-none}:${PULUMI_COMMAND_STDERR:-none}"'
    news = plugin.checked(COMMAND, "cmd", {"create": "echo v1; echo e1 >&2", "update": script})
    assert plugin.update(COMMAND, "cmd", resource_id, outs, news)["stdout"] == "update:v1:e1"
    news = plugin.checked(
        COMMAND,
        "cmd",
        {"create": "echo v1", "update": script, "addPreviousOutputInEnv": False},
    )
    assert plugin.update(COMMAND, "cmd", resource_id, outs, news)["stdout"] == "update:none:none"


def test_delete_runs_with_the_last_output(plugin: PluginProcess, tmp_path: Path) -> None:
    target = tmp_path / "deleted.txt"
    resource_id, outs = run(
        plugin, create="echo created-value", delete=f'echo "$PULUMI_COMMAND_STDOUT" > {target}'
    )
    assert not target.exists()
    plugin.delete(COMMAND, "cmd", resource_id, outs)
    assert target.read_text() == "created-value\n"


def test_failing_delete_fails(plugin: PluginProcess) -> None:
    resource_id, outs = run(plugin, delete="echo cannot-remove >&2; exit 1")
    with pytest.raises(grpc.RpcError) as caught:
        plugin.delete(COMMAND, "cmd", resource_id, outs)
    assert "cannot-remove" in caught.value.details()


def test_preview_runs_nothing(plugin: PluginProcess, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    inputs = plugin.checked(
        COMMAND, "p", {"create": f"touch {marker}", "update": f"touch {marker}"}
    )
    _, outs = plugin.create(COMMAND, "p", inputs, preview=True)
    assert outs["stdout"] == UNKNOWN and outs["stderr"] == UNKNOWN
    updated = plugin.update(
        COMMAND, "p", "p1", {**inputs, "stdout": "", "stderr": ""}, inputs, True
    )
    assert updated["stdout"] == UNKNOWN
    time.sleep(0.2)
    assert not marker.exists()
    # Unknown inputs (values from resources not created yet) pass Check in a preview.
    _, failures = plugin.check(COMMAND, "p", {"create": UNKNOWN, "environment": {"A": UNKNOWN}})
    assert failures == []


def test_secret_inputs_make_outputs_secret_and_stay_out_of_errors(plugin: PluginProcess) -> None:
    _, outs = run(plugin, create='echo "len=${#TOKEN}"', environment={"TOKEN": secret("s3cr3t")})
    assert is_secret(outs["environment"]["TOKEN"])
    assert is_secret(outs["stdout"]) and reveal(outs["stdout"]) == "len=6"
    with pytest.raises(grpc.RpcError) as caught:
        run(plugin, create='echo "bad $TOKEN" >&2; exit 1', environment={"TOKEN": secret("s3cr3t")})
    assert "s3cr3t" not in caught.value.details()
    assert "bad [secret]" in caught.value.details()


@pytest.mark.parametrize(
    ("news", "prop", "words"),
    [
        ({"create": 5}, "create", "must be a string"),
        ({"create": "x", "interpreter": "/bin/sh"}, "interpreter", "list of strings"),
        ({"create": "x", "environment": {"A": 1}}, "environment", "map of strings"),
        ({"create": "x", "logging": "loud"}, "logging", "must be one of"),
        ({"create": "x", "assetPaths": ["*.txt"]}, "assetPaths", "official pulumi-command"),
        ({"craete": "x"}, "craete", "unknown property"),
    ],
)
def test_bad_inputs_fail_check_clearly(
    plugin: PluginProcess, news: dict[str, object], prop: str, words: str
) -> None:
    _, failures = plugin.check(COMMAND, "cmd", news)
    assert failures and failures[0][0] == prop and words in failures[0][1]


def test_custom_timeout_stops_the_script(plugin: PluginProcess, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    inputs = plugin.checked(COMMAND, "slow", {"create": f"echo $$ > {pid_file}; exec sleep 300"})
    with pytest.raises(grpc.RpcError) as caught:
        plugin.create(COMMAND, "slow", inputs, timeout=1)
    assert "timed out after 1s" in caught.value.details()
    # the script was ended, not left running (nor waited for: it sleeps 300 s)
    script_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while _alive(script_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(script_pid), "the timed-out script is still running"


def test_remote_commands_are_refused_naming_the_official_plugin(plugin: PluginProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        plugin.check("command:remote:Command", "r", {"create": "true"})
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "official pulumi-command 1.2.1 plugin" in caught.value.details()


def test_stopping_the_plugin_kills_running_scripts(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with PluginProcess("offline_plugins.command_provider") as proc:
        inputs = proc.checked(COMMAND, "long", {"create": f"echo $$ > {pid_file}; sleep 60"})
        errors: list[grpc.RpcError] = []

        def create() -> None:
            try:
                proc.create(COMMAND, "long", inputs)
            except grpc.RpcError as exc:
                errors.append(exc)

        worker = threading.Thread(target=create)
        worker.start()
        # The shell creates the file before `echo` writes it: wait for the whole line (CI once
        # read it empty).
        deadline = time.monotonic() + 30
        written = ""
        while not written.endswith("\n") and time.monotonic() < deadline:
            time.sleep(0.05)
            written = pid_file.read_text() if pid_file.exists() else ""
        assert written.endswith("\n"), f"the script did not start within 30 s ({written!r})"
        script_pid = int(written)
        assert proc.stop() == 0
        worker.join(timeout=20)
    assert errors, "the create call should fail when the plugin stops"
    deadline = time.monotonic() + 30
    while _alive(script_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(script_pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its parent counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


class RecordingEngine(engine_pb2_grpc.EngineServicer):
    """The engine end of the plugin's Log calls, on a real gRPC server, keeping what it gets."""

    def __init__(self) -> None:
        self.logs: list[engine_pb2.LogRequest] = []

    def Log(self, request: engine_pb2.LogRequest, context: grpc.ServicerContext) -> Any:
        self.logs.append(request)
        return empty_pb2.Empty()


@pytest.fixture
def engine() -> Iterator[tuple[str, RecordingEngine]]:
    recorder = RecordingEngine()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    engine_pb2_grpc.add_EngineServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", recorder
    server.stop(grace=None)


def test_output_lines_are_shown_as_status_with_secrets_masked(
    engine: tuple[str, RecordingEngine],
) -> None:
    address, recorder = engine
    with PluginProcess("offline_plugins.command_provider", "-v=3", address) as proc:
        script = 'echo one; echo "two $TOKEN" >&2; printf three'
        env = {"TOKEN": secret("hunter2")}
        _, outs = run(proc, "talk", create=script, environment=env)
        assert reveal(outs["stdout"]) == "one\nthree"
        logged = sorted(r.message for r in recorder.logs)
        assert logged == ["one", "three", "two [secret]"]
        assert all(r.ephemeral and r.urn.endswith("::talk") for r in recorder.logs)
        assert all(r.severity == engine_pb2.INFO for r in recorder.logs)

        recorder.logs.clear()
        run(proc, "quiet", create="echo hidden", logging="none")
        run(proc, "errors-only", create="echo out; echo err >&2", logging="stderr")
        assert [r.message for r in recorder.logs] == ["err"]


def test_schema_describes_the_local_command(plugin: PluginProcess) -> None:
    schema = json.loads(plugin.rpc.GetSchema(provider_pb2.GetSchemaRequest(version=0)).schema)
    assert (schema["name"], schema["version"]) == ("command", "1.2.1")
    assert list(schema["resources"]) == [COMMAND]
    assert {"create", "update", "delete", "triggers"} <= set(
        schema["resources"][COMMAND]["inputProperties"]
    )


def test_background_child_holding_the_pipes_does_not_block(plugin: PluginProcess) -> None:
    _, outs = run(plugin, create="sleep 300 & echo $!")
    background = int(outs["stdout"])
    try:
        # create returned while the child holding its pipes still runs: it did not wait for it
        assert _alive(background)
    finally:
        os.kill(background, signal.SIGKILL)
