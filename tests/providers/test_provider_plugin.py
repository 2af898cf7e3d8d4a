"""The provider plugin `pulumi-resource-supaqueue` for real: the console script pip installed in
the project's venv, started as the engine starts it (flags, then the engine's address last),
spoken to over gRPC with the SDK's own stubs, against the session's local stack."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime import proto, rpc
from pulumi.runtime.proto import provider_pb2_grpc

from harness.toolchain import VENV
from supaqueue.provider.registry import DYNAMIC_TYPES, PROVIDERS
from supaqueue.provider.schema import kinds, secret_properties, token
from supaqueue.provider.version import semver
from supaqueue.providers.base import is_unknown
from tests.providers.conftest import QUEUE_OWNER

PLUGIN = VENV / "bin" / "pulumi-resource-supaqueue"
START_TIMEOUT_SECONDS = 60
CALL_TIMEOUT_SECONDS = 120
# No engine answers here: a warning the plugin sends is dropped (diagnostics.warn says False).
ENGINE = "127.0.0.1:9"
SECRET = {rpc._special_sig_key: rpc._special_secret_sig}


def urn(kind: str, name: str) -> str:
    return f"urn:pulumi:test::supaqueue::{token(kind)}::{name}"


def struct(props: dict[str, Any]) -> struct_pb2.Struct:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(rpc.serialize_properties(props, {}))
    finally:
        loop.close()


def plain(value: struct_pb2.Struct) -> dict[str, Any]:
    return dict(rpc.deserialize_properties(value, True))


class Plugin:
    def __init__(self) -> None:
        if not PLUGIN.exists():
            raise RuntimeError(f"{PLUGIN} is missing: run `bash toolchain/bootstrap.sh`")
        self.log = tempfile.TemporaryFile("w+")  # the plugin's stderr, shown if it fails
        self.process = subprocess.Popen(
            [str(PLUGIN), "--logtostderr", "-v=3", ENGINE],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.process.stdout is not None
        port = self.process.stdout.readline().strip()
        if not port.isdigit():
            self.process.kill()
            self.log.seek(0)
            raise AssertionError(f"no port from the plugin: {port!r} {self.log.read()}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(self.channel).result(timeout=START_TIMEOUT_SECONDS)
        self.stub = provider_pb2_grpc.ResourceProviderStub(self.channel)

    def call(self, method: str, request: Any) -> Any:
        return getattr(self.stub, method)(request, timeout=CALL_TIMEOUT_SECONDS)

    def stop(self) -> int:
        self.channel.close()
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(30)
        finally:
            self.process.kill()
            self.log.close()


@pytest.fixture
def plugin() -> Iterator[Plugin]:
    started = Plugin()
    yield started
    started.stop()


def queue_news(db_url: Any, **settings: Any) -> dict[str, Any]:
    return {
        "name": "plugin-q",
        "edge_function_name": "demo-target",
        "headers": {"Authorization": "Bearer x"},
        "db_url": db_url,
        "owner": QUEUE_OWNER,
        "queue_id": None,
        **settings,
    }


def test_the_plugin_reports_the_package_version_and_serves_the_package_schema(
    plugin: Plugin,
) -> None:
    info = plugin.call("GetPluginInfo", empty_pb2.Empty())
    assert info.version == semver(metadata.version("supaqueue"))
    served = json.loads(plugin.call("GetSchema", proto.GetSchemaRequest()).schema)
    assert served["name"] == "supaqueue"
    assert served["version"] == info.version
    assert (
        set(served["resources"]) - {token("Supaqueue")}
        == {token(kind) for kind in PROVIDERS}
        == set(DYNAMIC_TYPES.values())
    )
    assert served["resources"][token("Queue")]["inputProperties"]["db_url"]["secret"] is True
    assert kinds() == sorted(PROVIDERS)
    # The component, constructed by the plugin, with its argument types (schema.served).
    assert served["resources"][token("Supaqueue")]["isComponent"] is True
    queue_spec = served["types"][token("QueueSpec")]["properties"]
    assert "keep_finished_forever" in queue_spec and "db_url" not in queue_spec


def test_configure_takes_secrets_and_a_config_change_never_replaces(plugin: Plugin) -> None:
    configured = plugin.call("Configure", proto.ConfigureRequest())
    # The engine constructs components only with a plugin that takes secrets; the plugin then
    # marks outputs secret whose inputs were (test_outputs_of_secret_inputs_are_secret).
    assert (configured.acceptSecrets, configured.supportsPreview) == (True, False)
    # The stack config keys `supaqueue:*` reach the default provider: a change of them must not
    # replace it (that would replace every resource), nor may a move from the dynamic provider.
    diff = plugin.call(
        "DiffConfig",
        proto.DiffRequest(
            olds=struct({"queues": "[]"}), news=struct({"queues": '[{"name": "q"}]'})
        ),
    )
    assert diff.changes == proto.DiffResponse.DIFF_NONE
    assert list(diff.replaces) == []


def test_check_names_the_field_and_previews_unknowns_without_a_database(plugin: Plugin) -> None:
    bad = plugin.call(
        "Check",
        proto.CheckRequest(urn=urn("Queue", "q"), olds=struct({}), news=struct(
            queue_news(rpc.UNKNOWN, workers=0))),
    )  # fmt: skip
    assert [(f.property, "workers" in f.reason or "1" in f.reason) for f in bad.failures] == [
        ("workers", True)
    ]
    # The database URL unknown (a preview of a new stack): no failure, the URL stays unknown.
    good = plugin.call(
        "Check",
        proto.CheckRequest(urn=urn("Queue", "q"), olds=struct({}), news=struct(
            queue_news(rpc.UNKNOWN))),
    )  # fmt: skip
    assert list(good.failures) == []
    inputs = plain(good.inputs)
    assert is_unknown(inputs["db_url"])
    assert inputs["workers"] == 1  # the defaults are filled in, as before


def test_a_queue_through_the_plugin_create_read_update_delete(
    plugin: Plugin, installed: dict[str, Any], db_url: str
) -> None:
    target = urn("Queue", "plugin-q")
    # Secrets reach check wrapped (the engine sends them so): the plugin reads them.
    checked = plugin.call(
        "Check",
        proto.CheckRequest(urn=target, olds=struct({}), news=struct(
            queue_news({**SECRET, "value": db_url}))),
    )  # fmt: skip
    assert list(checked.failures) == []
    created = plugin.call("Create", proto.CreateRequest(urn=target, properties=checked.inputs))
    outs = plain(created.properties)
    assert outs["queue_id"] == created.id
    # Secret in, secret out (what the engine did for a plugin that took no secrets).
    assert rpc.is_rpc_secret(plain(checked.inputs)["db_url"])
    assert rpc.is_rpc_secret(outs["db_url"]) and not rpc.is_rpc_secret(outs["workers"])
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select name from supaqueue.queue where id = %s", (created.id,))
        assert row.fetchone() == ("plugin-q",)
    read = plugin.call(
        "Read", proto.ReadRequest(urn=target, id=created.id, properties=created.properties)
    )
    assert read.id == created.id and plain(read.properties)["workers"] == 1
    news = plain(checked.inputs) | {"workers": 3}
    diff = plugin.call(
        "Diff",
        proto.DiffRequest(urn=target, id=created.id, olds=created.properties, news=struct(news)),
    )
    assert diff.changes == proto.DiffResponse.DIFF_SOME and list(diff.replaces) == []
    renamed = plugin.call(
        "Diff",
        proto.DiffRequest(urn=target, id=created.id, olds=created.properties,
                          news=struct(news | {"name": "plugin-q2"})),
    )  # fmt: skip
    assert list(renamed.replaces) == ["name"]
    updated = plugin.call(
        "Update",
        proto.UpdateRequest(urn=target, id=created.id, olds=created.properties, news=struct(news)),
    )
    assert plain(updated.properties)["workers"] == 3
    plugin.call(
        "Delete", proto.DeleteRequest(urn=target, id=created.id, properties=updated.properties)
    )
    with psycopg.connect(db_url) as conn:
        gone = conn.execute("select count(*) from supaqueue.queue where id = %s", (created.id,))
        assert gone.fetchone() == (0,)


def test_an_unknown_secret_is_unknown_to_check(plugin: Plugin) -> None:
    """A preview's generated password is a secret not known yet: check leaves it to create
    (the SDK's deserialization made it a secret None, which failed the check)."""
    checked = plugin.call(
        "Check",
        proto.CheckRequest(urn=urn("VaultSecret", "v"), olds=struct({}), news=struct({
            "db_url": "postgresql://u:p@127.0.0.1:1/db", "name": "supaqueue_secret",
            "secret": {**SECRET, "value": rpc.UNKNOWN},
        })),
    )  # fmt: skip
    assert list(checked.failures) == []
    assert is_unknown(plain(checked.inputs)["secret"])


def test_a_refusal_reaches_the_engine_as_one_line_without_a_traceback(
    plugin: Plugin, installed: dict[str, Any], db_url: str
) -> None:
    target = urn("Queue", "plugin-q")
    checked = plugin.call(
        "Check", proto.CheckRequest(urn=target, olds=struct({}), news=struct(queue_news(db_url)))
    )
    created = plugin.call("Create", proto.CreateRequest(urn=target, properties=checked.inputs))
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into supaqueue.job (queue, payload) values (%s, '{}')", (created.id,))
    with pytest.raises(grpc.RpcError) as refused:
        plugin.call(
            "Delete", proto.DeleteRequest(urn=target, id=created.id, properties=created.properties)
        )
    details = refused.value.details()
    assert details.startswith("QueueNotEmptyError: cannot remove queue 'plugin-q'"), details
    assert "Traceback" not in details and 'File "' not in details
    assert db_url not in details


def test_an_unknown_type_is_named_with_what_the_plugin_serves(plugin: Plugin) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        plugin.call(
            "Check",
            proto.CheckRequest(urn="urn:pulumi:t::p::supaqueue:index:Nope::n", olds=struct({}),
                               news=struct({})),
        )  # fmt: skip
    details = failed.value.details()
    assert "no resource type 'supaqueue:index:Nope'" in details
    assert "supaqueue:index:Queue" in details


def test_secret_properties_are_the_ones_the_resources_keep_secret() -> None:
    assert secret_properties("Queue") == ["db_url", "headers"]
    assert secret_properties("FunctionSecret") == ["access_token", "value"]
    assert secret_properties("VaultSecret") == ["db_url", "secret"]
    assert secret_properties("OwnershipGate") == ["db_url", "secret"]
    assert secret_properties("Preflight") == ["access_token", "db_url"]


def test_the_plugin_exits_quietly_on_sigint_and_when_its_cli_is_gone() -> None:
    started = Plugin()
    assert started.stop() == 0
    # A parent that dies without a word (a SIGKILLed CLI): the plugin notices and exits.
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHANING_PARENT, str(PLUGIN), ENGINE],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert parent.wait(60) == 0
    deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
    while alive(child):
        assert time.monotonic() < deadline, f"the plugin {child} outlived its parent"
        time.sleep(0.2)


# Starts the plugin, waits for its port, prints its pid and exits (no signal to the plugin).
ORPHANING_PARENT = """
import subprocess, sys
plugin = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
plugin.stdout.readline()
print(plugin.pid, flush=True)
"""
ORPHAN_WAIT_SECONDS = 30


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
