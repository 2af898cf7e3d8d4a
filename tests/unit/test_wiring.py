"""Component wiring under Pulumi mocks: which resources, their parents, dependencies and secrets.

The mock monitor records every RegisterResource request as the engine would receive it, so the
assertions are on what the program really asks for (types, names, parents, secret inputs,
additional secret outputs), not on our own objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
from google.protobuf import struct_pb2
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from supaqueue.config import parse_stack_config
from supaqueue.errors import ConfigError
from supaqueue.installation import Supaqueue, args_from_config
from supaqueue.providers.queue import Queue

TYPE_PREFIX = "supaqueue:index:"
SECRET_SIG = rpc._special_sig_key  # "4dabf18193072939515e22adb298388d"
DB_URL = "postgresql://postgres:hunter2hunter2@127.0.0.1:54322/postgres"
TOKEN = "sbp_" + "c" * 40
ENV = {
    "API_URL": "http://127.0.0.1:54321",
    "DB_URL": DB_URL,
    "PROJECT_REF": "abcdefghijklmnopqrst",
    "MANAGEMENT_API_URL": "http://127.0.0.1:54321",
    "ACCESS_TOKEN": TOKEN,
}
QUEUES = [
    {
        "name": "emails",
        "edge_function_name": "send-email",
        "workers": 3,
        "headers": {"Authorization": "Bearer target-token"},
    },
    {"name": "thumbs", "edge_function_name": "thumb", "rate_limit_per_second": 5},
]


@dataclass
class Registration:
    type: str
    name: str
    parent: str
    urn: str
    dependencies: list[str]
    additional_secret_outputs: list[str]
    alias_urns: list[str]
    raw: struct_pb2.Struct

    def is_secret(self, key: str) -> bool:
        value = self.raw.fields[key]
        return value.HasField("struct_value") and SECRET_SIG in value.struct_value.fields


@dataclass
class Recorder(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outs = dict(args.inputs)
        if args.typ == TYPE_PREFIX + "Queue":
            outs["queue_id"] = f"id-of-{args.inputs['name']}"
        if args.typ == TYPE_PREFIX + "Migrations":
            outs["schema_version"] = 6
        if args.typ.startswith("random:"):
            outs["result"] = "r" * 48
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


@dataclass
class RecordingMonitor(pulumi_mocks.MockMonitor):
    registrations: list[Registration] = field(default_factory=list)

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        self.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                parent=request.parent,
                urn=response.urn,
                dependencies=list(request.dependencies),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                alias_urns=[a.urn for a in request.aliases if a.urn] + list(request.aliasURNs),
                raw=request.object,
            )
        )
        return response


@pytest.fixture
def monitor() -> RecordingMonitor:
    recorder = RecordingMonitor(Recorder())
    pulumi.runtime.set_mocks(Recorder(), preview=False, monitor=recorder)
    return recorder


@pytest.fixture
def edge_dir(tmp_path: Path) -> Path:
    for slug in ("supaqueue", "demo-target"):
        (tmp_path / slug).mkdir()
        (tmp_path / slug / "index.ts").write_text(f"// {slug}\nDeno.serve(() => new Response());\n")
        (tmp_path / slug / "deno.json").write_text("{}")
    return tmp_path


def install(edge_dir: Path, demo: bool = True, extra: dict[str, Any] | None = None) -> Supaqueue:
    config = parse_stack_config(
        {"target": "local", "demo": demo, "queues": QUEUES, "secretVersion": 2, **(extra or {})},
        ENV,
    )
    args = args_from_config(config)
    args["edge_dir"] = str(edge_dir)
    args["dispatcher_dir"] = str(edge_dir / "supaqueue")
    return Supaqueue("sq", args)


def by_name(monitor: RecordingMonitor) -> dict[str, Registration]:
    return {r.name: r for r in monitor.registrations if r.type != "pulumi:pulumi:Stack"}


def deploy(
    monitor: RecordingMonitor,
    edge_dir: Path,
    demo: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the component under mocks to completion; returns its resolved outputs."""
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        sq = install(edge_dir, demo, extra)
        outputs = pulumi.Output.all(sq.function_url, sq.queue_ids, sq.schema_version)
        return outputs.apply(
            lambda v: resolved.update(function_url=v[0], queue_ids=v[1], schema_version=v[2])
        )

    program()
    return resolved


def test_resources_names_and_parents(monitor: RecordingMonitor, edge_dir: Path) -> None:
    deploy(monitor, edge_dir)
    regs = by_name(monitor)
    expected = {
        "sq": "supaqueue:index:Supaqueue",
        "sq-stack-id": TYPE_PREFIX + "StackIdentity",
        "sq-preflight": TYPE_PREFIX + "Preflight",
        "sq-ownership-gate": TYPE_PREFIX + "OwnershipGate",
        "sq-secret": "random:index/randomPassword:RandomPassword",
        "sq-deno-check": "command:local:Command",
        "sq-demo-deno-check": "command:local:Command",
        "sq-schema": TYPE_PREFIX + "Migrations",
        "sq-settings": TYPE_PREFIX + "Settings",
        "sq-vault-secret": TYPE_PREFIX + "VaultSecret",
        "sq-function-secret": TYPE_PREFIX + "FunctionSecret",
        "sq-function": TYPE_PREFIX + "EdgeFunction",
        "sq-demo-function": TYPE_PREFIX + "EdgeFunction",
        # A queue is one resource: no component around it.
        "sq-queue-emails": TYPE_PREFIX + "Queue",
        "sq-queue-thumbs": TYPE_PREFIX + "Queue",
        "sq-destroy-guard": TYPE_PREFIX + "DestroyGuard",
    }
    assert {name: r.type for name, r in regs.items()} == expected
    component = regs["sq"].urn
    for name, reg in regs.items():
        if name != "sq":
            assert reg.parent == component, name


def test_queues_keep_their_state_from_when_they_were_components(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    """Queues used to be `<name>-queue` inside a `supaqueue:index:Queue` component: the alias
    lets an existing stack's queues carry on (no create, no delete) after an upgrade."""
    deploy(monitor, edge_dir)
    regs = by_name(monitor)
    # The URN of a child: its parent's type chain, `$`, its own type, `::`, its name.
    chain = regs["sq"].urn.rsplit("::", 1)[0]
    assert chain.endswith("supaqueue:index:Supaqueue")
    for queue in ("emails", "thumbs"):
        legacy = (
            f"{chain}$supaqueue:index:Queue"
            f"$pulumi-python:dynamic/supaqueue:Queue::sq-queue-{queue}-queue"
        )
        assert regs[f"sq-queue-{queue}"].alias_urns == [legacy]


def test_a_queue_from_the_python_api_is_one_resource(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        sq = install(edge_dir, demo=False)
        queue = Queue("reports", {"name": "reports", "edge_function_name": "f"}, installation=sq)
        return queue.queue_id.apply(lambda value: resolved.update(queue_id=value))

    program()
    regs = by_name(monitor)
    reports = regs["reports"]
    assert reports.type == TYPE_PREFIX + "Queue"
    # The resource itself, no component wrapping it (as queues were before).
    assert [r.name for r in monitor.registrations if r.name.startswith("reports")] == ["reports"]
    assert resolved["queue_id"] == "id-of-reports"
    assert reports.is_secret("headers") and reports.is_secret("db_url")
    assert regs["sq-function"].urn in reports.dependencies
    legacy = (
        "urn:pulumi:stack::project::supaqueue:index:Queue"
        "$pulumi-python:dynamic/supaqueue:Queue::reports-queue"
    )
    assert reports.alias_urns == [legacy]


def test_dependencies_put_the_type_check_first(monitor: RecordingMonitor, edge_dir: Path) -> None:
    deploy(monitor, edge_dir)
    regs = by_name(monitor)
    urn = {name: r.urn for name, r in regs.items()}
    assert urn["sq-deno-check"] in regs["sq-schema"].dependencies
    # upgrades: the new function (which claims, and still runs whole-job dispatches) goes first
    assert urn["sq-function"] in regs["sq-schema"].dependencies
    assert urn["sq-deno-check"] in regs["sq-function"].dependencies
    assert urn["sq-function-secret"] in regs["sq-function"].dependencies
    assert urn["sq-deno-check"] in regs["sq-function-secret"].dependencies
    assert urn["sq-schema"] in regs["sq-settings"].dependencies
    # the Vault entry before the schema: a destroy the schema refuses keeps it (issue 22)
    assert urn["sq-vault-secret"] in regs["sq-schema"].dependencies
    assert urn["sq-demo-deno-check"] in regs["sq-demo-function"].dependencies
    for queue in ("sq-queue-emails", "sq-queue-thumbs"):
        deps = regs[queue].dependencies
        for needed in ("sq-schema", "sq-settings", "sq-vault-secret", "sq-function"):
            assert urn[needed] in deps, (queue, needed)


def test_the_gate_comes_before_every_change_and_the_guard_is_deleted_first(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    """The gate's check refuses another stack's installation: everything that changes the
    project depends on it (directly, or through the schema), so nothing runs before it. A
    destroy deletes dependents first: the guard depends on everything, so its refusal stops the
    destroy before any delete."""
    deploy(monitor, edge_dir)
    regs = by_name(monitor)
    urn = {name: r.urn for name, r in regs.items()}
    for name in ("sq-function-secret", "sq-function", "sq-demo-function", "sq-schema"):
        assert urn["sq-ownership-gate"] in regs[name].dependencies, name
    after_schema = ("sq-settings", "sq-queue-emails", "sq-queue-thumbs")
    for name in after_schema:
        assert urn["sq-schema"] in regs[name].dependencies, name
    assert urn["sq-ownership-gate"] in regs["sq-vault-secret"].dependencies
    assert urn["sq-stack-id"] in regs["sq-ownership-gate"].dependencies
    guard = regs["sq-destroy-guard"].dependencies
    for name in (
        "sq-schema",
        "sq-function-secret",
        "sq-function",
        "sq-demo-function",
        *after_schema,
    ):
        assert urn[name] in guard, name


def test_the_preflight_comes_before_every_other_child(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    """Its check refuses a plan that would stop half-way (issue 22): every child but the stack
    id depends on it, directly or through another child, so none changes before its check."""
    deploy(monitor, edge_dir)
    regs = by_name(monitor)
    urn_of = {r.urn: name for name, r in regs.items()}

    def reaches(name: str, seen: set[str]) -> bool:
        deps = {urn_of[dep] for dep in regs[name].dependencies if dep in urn_of}
        if "sq-preflight" in deps:
            return True
        return any(reaches(dep, seen | {name}) for dep in deps - seen)

    assert urn_of[regs["sq-preflight"].dependencies[0]] == "sq-stack-id"
    for name in regs:
        if name not in ("sq", "sq-stack-id", "sq-preflight"):
            assert reaches(name, set()), name


def test_an_external_installation_declares_only_queues(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    @pulumi.runtime.test
    def program() -> Any:
        config = parse_stack_config(
            {"target": "local", "installation": "external", "queues": QUEUES}, ENV
        )
        args = args_from_config(config)
        args["edge_dir"] = str(edge_dir)
        return Supaqueue("sq", args).queue_ids

    program()
    regs = by_name(monitor)
    assert {name: r.type for name, r in regs.items()} == {
        "sq": "supaqueue:index:Supaqueue",
        "sq-stack-id": TYPE_PREFIX + "StackIdentity",
        "sq-preflight": TYPE_PREFIX + "Preflight",
        "sq-external": TYPE_PREFIX + "ExternalInstallation",
        "sq-queue-emails": TYPE_PREFIX + "Queue",
        "sq-queue-thumbs": TYPE_PREFIX + "Queue",
    }
    for queue in ("sq-queue-emails", "sq-queue-thumbs"):
        assert regs["sq-external"].urn in regs[queue].dependencies


def test_secrets_stay_secret(monitor: RecordingMonitor, edge_dir: Path) -> None:
    deploy(monitor, edge_dir)
    regs = by_name(monitor)
    for name in ("sq-schema", "sq-settings", "sq-vault-secret", "sq-queue-emails"):
        assert regs[name].is_secret("db_url"), name
        assert "db_url" in regs[name].additional_secret_outputs, name
    for name in ("sq-function", "sq-function-secret", "sq-demo-function"):
        assert regs[name].is_secret("access_token"), name
        assert "access_token" in regs[name].additional_secret_outputs, name
    assert regs["sq-vault-secret"].is_secret("secret")
    assert "secret" in regs["sq-vault-secret"].additional_secret_outputs
    assert regs["sq-function-secret"].is_secret("value")
    assert "value" in regs["sq-function-secret"].additional_secret_outputs
    assert regs["sq-queue-emails"].is_secret("headers")
    assert "headers" in regs["sq-queue-emails"].additional_secret_outputs
    # No provider code in the inputs any more (a dynamic provider pickled itself there).
    assert all("__provider" not in reg.raw.fields for reg in monitor.registrations)
    # Nothing plain anywhere in what the engine receives.
    for reg in monitor.registrations:
        for key, value in reg.raw.fields.items():
            if reg.is_secret(key):
                continue
            text = str(value)
            assert "hunter2" not in text and TOKEN not in text, (reg.name, key)


def test_inputs_and_outputs(monitor: RecordingMonitor, edge_dir: Path) -> None:
    outputs = deploy(monitor, edge_dir)
    assert outputs["function_url"] == "http://127.0.0.1:54321/functions/v1/supaqueue"
    assert outputs["queue_ids"] == {"emails": "id-of-emails", "thumbs": "id-of-thumbs"}
    assert outputs["schema_version"] == 6
    regs = by_name(monitor)
    settings = regs["sq-settings"].raw.fields["values"].struct_value.fields
    assert settings["functions_url"].string_value == "http://127.0.0.1:54321/functions/v1"
    assert settings["dispatcher_slug"].string_value == "supaqueue"
    # The chain budget is not set here: no row of it is the program's (SQL's default holds).
    assert set(settings) == {"functions_url", "dispatcher_slug"}
    function = regs["sq-function"].raw.fields
    assert function["slug"].string_value == "supaqueue"
    assert function["verify_jwt"].bool_value is False
    assert len(function["content_hash"].string_value) == 64
    keepers = regs["sq-secret"].raw.fields["keepers"].struct_value.fields
    assert keepers["version"].string_value == "2"
    check_cmd = regs["sq-deno-check"].raw.fields
    assert "check" in check_cmd["create"].string_value
    assert check_cmd["dir"].string_value == str(edge_dir / "supaqueue")
    triggers = check_cmd["triggers"].list_value.values
    assert [t.string_value for t in triggers] == [function["content_hash"].string_value]
    emails = regs["sq-queue-emails"].raw.fields
    assert emails["workers"].number_value == 3
    assert emails["edge_function_name"].string_value == "send-email"
    thumbs = regs["sq-queue-thumbs"].raw.fields
    assert thumbs["rate_limit_per_second"].number_value == 5


def test_no_demo_no_demo_function(monitor: RecordingMonitor, edge_dir: Path) -> None:
    deploy(monitor, edge_dir, demo=False)
    names = set(by_name(monitor))
    assert "sq-demo-function" not in names and "sq-demo-deno-check" not in names


def test_a_bad_queue_in_the_python_api_is_a_clear_error(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    sq = install(edge_dir, demo=False)
    with pytest.raises(ConfigError) as caught:
        Queue("bad", {"name": "bad", "edge_function_name": "fn", "workers": 0}, installation=sq)
    assert "queue 'bad'.workers: must be at least 1, got 0" in str(caught.value)


def test_edge_folder_without_entrypoint_is_a_clear_error(
    monitor: RecordingMonitor, tmp_path: Path
) -> None:
    (tmp_path / "supaqueue").mkdir()
    with pytest.raises(ConfigError) as caught:
        install(tmp_path, demo=False)
    assert "has no index.ts entrypoint" in str(caught.value)


def declared_children(monitor: RecordingMonitor) -> list[str]:
    return [
        r.name
        for r in monitor.registrations
        if r.type not in ("pulumi:pulumi:Stack", "supaqueue:index:Supaqueue")
    ]


def test_a_bad_demo_folder_fails_before_any_child_is_declared(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    """A child declared before the error would still be created or updated (the program waits
    for its registrations): the schema, Vault entry, function... would change on bad input."""
    (edge_dir / "demo-target" / "index.ts").unlink()

    @pulumi.runtime.test
    def program() -> None:
        with pytest.raises(ConfigError, match=r"has no index\.ts entrypoint"):
            install(edge_dir, demo=True)

    program()
    assert declared_children(monitor) == []


def test_a_bad_queue_of_the_component_fails_before_any_child_is_declared(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    config = parse_stack_config({"target": "local", "queues": QUEUES}, ENV)
    args = args_from_config(config)
    args["edge_dir"] = str(edge_dir)
    args["queues"] = [*args["queues"], {"name": "bad", "edge_function_name": "fn", "workers": 0}]

    @pulumi.runtime.test
    def program() -> None:
        with pytest.raises(ConfigError, match=r"queue 'bad'.workers: must be at least 1"):
            Supaqueue("sq", args)

    program()
    assert declared_children(monitor) == []


def test_queue_ids_is_a_map_even_without_queues(monitor: RecordingMonitor, edge_dir: Path) -> None:
    resolved: dict[str, Any] = {}
    args = args_from_config(parse_stack_config({"target": "local"}, ENV))
    args["edge_dir"] = str(edge_dir)

    @pulumi.runtime.test
    def program() -> Any:
        return Supaqueue("sq", args).queue_ids.apply(lambda ids: resolved.update(ids=ids))

    program()
    assert resolved["ids"] == {}


def test_the_chain_budget_becomes_settings_rows(monitor: RecordingMonitor, edge_dir: Path) -> None:
    deploy(monitor, edge_dir, extra={"chainMaxJobs": "100", "chainMaxSeconds": 30})
    settings = by_name(monitor)["sq-settings"].raw.fields["values"].struct_value.fields
    assert {key: value.string_value for key, value in settings.items()} == {
        "functions_url": "http://127.0.0.1:54321/functions/v1",
        "dispatcher_slug": "supaqueue",
        "chain_max_jobs": "100",
        "chain_max_seconds": "30",
    }


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"chain_max_jobs": 1001}, "chain_max_jobs: must be a whole number from 0 to 1000"),
        ({"chain_max_seconds": 0}, "chain_max_seconds: must be a whole number from 1 to 120"),
        ({"chain_max_jobs": True}, "chain_max_jobs: must be a whole number"),
        ({"chain_max_jobs": 10, "installation": "external"}, "chain_max_jobs: the chain budget"),
    ],
)
def test_the_python_api_names_a_bad_chain_budget_before_any_resource(
    monitor: RecordingMonitor, edge_dir: Path, extra: dict[str, Any], expected: str
) -> None:
    args = args_from_config(parse_stack_config({"target": "local", "queues": QUEUES}, ENV))
    args.update(extra)  # type: ignore[typeddict-item]
    args["edge_dir"] = str(edge_dir)
    with pytest.raises(ConfigError, match=expected):
        Supaqueue("sq", args)
    assert [r.name for r in monitor.registrations if r.type != "pulumi:pulumi:Stack"] == []


def test_data_api_declares_the_exposure_after_the_schema(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    deploy(monitor, edge_dir, extra={"dataApi": True})
    regs = by_name(monitor)
    exposure = regs["sq-data-api"]
    assert exposure.type == TYPE_PREFIX + "DataApiSchema"
    assert regs["sq-schema"].urn in exposure.dependencies
    assert exposure.is_secret("access_token")
    # a destroy deletes the guard first: it refuses before the schema is hidden
    assert exposure.urn in regs["sq-destroy-guard"].dependencies


def test_no_data_api_unless_asked(monitor: RecordingMonitor, edge_dir: Path) -> None:
    deploy(monitor, edge_dir)
    assert "sq-data-api" not in by_name(monitor)
