"""The package schema (supaqueue/provider/schema.json) and the program's resource classes agree:
every resource an installation registers has a schema token, only schema properties as inputs,
and the schema's secret properties marked secret; the plugin serves exactly the schema's kinds."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest

import supaqueue.providers
from supaqueue.provider.registry import DYNAMIC_TYPES, PROVIDERS
from supaqueue.provider.schema import PACKAGE, kinds, resource, schema, secret_properties, token
from supaqueue.provider.version import semver
from supaqueue.providers.custom import SupaqueueResource
from tests.unit.test_wiring import Recorder, RecordingMonitor, deploy

SCHEMA_TYPES = {"string", "integer", "number", "boolean", "array", "object"}


@pytest.fixture(name="monitor")
def recording_monitor() -> RecordingMonitor:
    """As tests/unit/test_wiring.py's `monitor`."""
    recorder = RecordingMonitor(Recorder())
    pulumi.runtime.set_mocks(Recorder(), preview=False, monitor=recorder)
    return recorder


@pytest.fixture(name="edge_dir")
def function_folders(tmp_path: Path) -> Path:
    for slug in ("supaqueue", "demo-target"):
        (tmp_path / slug).mkdir()
        (tmp_path / slug / "index.ts").write_text("Deno.serve(() => new Response());\n")
    return tmp_path


def resource_classes() -> dict[str, type[SupaqueueResource]]:
    for module in pkgutil.walk_packages(supaqueue.providers.__path__, "supaqueue.providers."):
        importlib.import_module(module.name)
    found: dict[str, type[SupaqueueResource]] = {}
    todo = list(SupaqueueResource.__subclasses__())
    while todo:
        cls = todo.pop()
        found[cls.kind] = cls
        todo += cls.__subclasses__()
    return found


def test_every_kind_has_a_resource_class_a_provider_and_a_schema_entry() -> None:
    assert sorted(resource_classes()) == kinds() == sorted(PROVIDERS)
    assert schema()["name"] == PACKAGE
    for kind in kinds():
        assert DYNAMIC_TYPES[f"pulumi-python:dynamic/supaqueue:{kind}"] == token(kind)


def test_every_schema_property_has_a_type_and_a_description() -> None:
    for kind in kinds():
        spec = resource(kind)
        assert spec["description"], kind
        for section in ("inputProperties", "properties"):
            for name, prop in spec[section].items():
                assert prop.get("description"), f"{kind}.{name}"
                assert prop.get("type") in SCHEMA_TYPES or prop.get("$ref"), f"{kind}.{name}"
        assert set(spec["requiredInputs"]) <= set(spec["inputProperties"]), kind
        assert set(spec["inputProperties"]) <= set(spec["properties"]), kind


@pytest.mark.parametrize(
    "extra",
    [{}, {"dataApi": True}, {"installation": "external"}],
    ids=["owner", "data-api", "external"],
)
def test_what_the_program_registers_is_what_the_schema_says(
    monitor: RecordingMonitor, edge_dir: Path, extra: dict[str, Any]
) -> None:
    deploy(monitor, edge_dir, demo=not extra, extra=extra)
    ours = [r for r in monitor.registrations if r.type.startswith(f"{PACKAGE}:index:")]
    seen = set()
    for reg in ours:
        if reg.type == token("Supaqueue"):  # the component: no provider, not in the schema
            continue
        kind = reg.type.rsplit(":", 1)[-1]
        seen.add(kind)
        spec = resource(kind)
        keys = set(reg.raw.fields)
        assert keys <= set(spec["inputProperties"]) | set(spec["properties"]), (kind, keys)
        assert set(spec["requiredInputs"]) <= keys, kind
        secrets = secret_properties(kind)
        assert set(secrets) <= set(reg.additional_secret_outputs), kind
        for name in secrets:
            if name in spec["inputProperties"] and name in keys:
                assert reg.is_secret(name), f"{kind}.{name} is not sent as a secret"
    assert seen, "no supaqueue resource registered"


def test_plugin_versions_are_semver() -> None:
    assert semver("0.1.0") == "0.1.0"
    assert semver("1.2") == "1.2.0"
    assert semver("0.2.0a1") == "0.2.0-alpha.1"
    assert semver("0.2.0rc2.dev3") == "0.2.0-rc.2.dev.3"
    assert semver("1.0.0.post1") == "1.0.0+post.1"
    with pytest.raises(ValueError, match="no semantic-version form"):
        semver("1!2.0")


def test_the_component_and_its_argument_types_are_served() -> None:
    """`Supaqueue` is the one component; its queue/trigger/schedule types are the resources'
    inputs less what the component supplies, and every reference resolves."""
    import json

    from supaqueue.provider.schema import components, served

    assert components() == ["Supaqueue"]
    whole = served()
    refs = re.findall(r'"#/types/([^"]+)"', json.dumps(whole["resources"]))
    assert refs and set(refs) <= set(whole["types"])
    queue = whole["types"][token("QueueSpec")]
    inputs = resource("Queue")["inputProperties"]
    assert set(queue["properties"]) == set(inputs) - {"db_url", "owner"}
    assert queue["required"] == ["edge_function_name"]  # the name may be the map's key
    trigger = whole["types"][token("TriggerSpec")]
    assert "queue" in trigger["required"] and "queue_id" not in trigger["properties"]
    component = resource("Supaqueue")
    from supaqueue.installation import SupaqueueArgs

    assert set(component["inputProperties"]) == set(SupaqueueArgs.__annotations__)
