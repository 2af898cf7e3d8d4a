"""The offline host's GenerateProgram: the PCL `pulumi import` sends, as Python that runs.

The PCL texts are what the real CLI v3.274.1 sent for imported resources (captured from a
`pulumi import` through this host); the e2e import test (tests/e2e/test_import.py) runs the whole
path with the CLI and the supaqueue provider.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import grpc
import pytest

from offline_plugins.language_host.codegen import PclError, generate, generate_program, py_name

# As the CLI sent it for `pulumi import toy:index:Thing imp3 z` (a provider answering odd values).
CAPTURED = (
    'package toy {\n    baseProviderName = "toy"\n\n}\n\nresource imp3 "toy:index:Thing" {\n'
    '    big = 2147483647\n    count = 3\n    doc ={\n\n        "n" = null,\n\n'
    '        "properties" ={\n"a" ={\n"type" =[\n                    "string",\n'
    '                    "null"]}},\n\n        "type" = "object"\n    }\n    emptyList =[]\n'
    "    emptyMap ={}\n    flag = false\n    items =[\n        400,\n        401]\n"
    '    label = "he said \\"hi\\"\\nnew $${x} %%{y} \\\\ \u00e9 \\t end"\n    ratio = 0.1\n'
    '    tags ={\n\n        "Authorization-x" = "b",\n\n        "a b" = "c\\"d"\n    }\n'
    "options {\nprotect =true\n\n}\n\n}\n"
)
EXPECTED = {
    "big": 2147483647,
    "count": 3,
    "doc": {"n": None, "properties": {"a": {"type": ["string", "null"]}}, "type": "object"},
    "empty_list": [],
    "empty_map": {},
    "flag": False,
    "items": [400, 401],
    "label": 'he said "hi"\nnew ${x} %{y} \\ \u00e9 \t end',
    "ratio": 0.1,
    "tags": {"Authorization-x": "b", "a b": 'c"d'},
}


def no_schema(_name: str, _version: str | None) -> dict[str, Any] | None:
    return None


def run(code: str, module: str) -> list[tuple[str, dict[str, Any]]]:
    """Execute generated code against a stand-in package module; return (name, kwargs) made."""
    made: list[tuple[str, dict[str, Any]]] = []

    class Resource:
        def __init__(self, resource_name: str, **kwargs: Any) -> None:
            made.append((resource_name, kwargs))

    fake = types.ModuleType(module)
    fake.Thing = Resource  # type: ignore[attr-defined]
    fake.Queue = Resource  # type: ignore[attr-defined]
    saved = sys.modules.get(module)
    sys.modules[module] = fake
    try:
        exec(compile(code, "__main__.py", "exec"), {"__name__": "__main__"})
    finally:
        if saved is None:
            del sys.modules[module]
        else:
            sys.modules[module] = saved
    return made


def test_captured_import_runs_with_the_values_read() -> None:
    code = generate(CAPTURED, no_schema)
    assert code.startswith("import pulumi\nimport pulumi_toy as toy\n"), code
    [(name, kwargs)] = run(code, "pulumi_toy")
    opts = kwargs.pop("opts")
    assert name == "imp3"
    assert kwargs == EXPECTED
    assert opts.protect is True


def test_package_name_from_the_schema_and_logical_names() -> None:
    pcl = (
        'package supaqueue {\n baseProviderName = "supaqueue"\n baseProviderVersion = "0.1.0"\n}\n'
        'resource legacyQueue "supaqueue:index:Queue" {\n __logicalName = "legacy-queue"\n'
        ' name = "legacy"\n edgeFunctionName = "send-email"\n rateLimitPerSecond = 2.5\n'
        ' headers = secret({"Authorization" = "x"})\n'
        " options {\n parent = supaqueue\n protect = true\n retainOnDelete = true\n }\n}\n"
    )
    asked: list[tuple[str, str | None]] = []

    def schema(name: str, version: str | None) -> dict[str, Any]:
        asked.append((name, version))
        return {"name": name, "language": {"python": {"packageName": "supaqueue"}}}

    code = generate(pcl, schema)
    assert asked == [("supaqueue", "0.1.0")]
    assert "import supaqueue\n" in code and "as supaqueue" not in code
    assert 'legacy_queue = supaqueue.Queue(\n    "legacy-queue",\n' in code
    assert "edge_function_name=" in code and "rate_limit_per_second=2.5" in code
    assert "headers=pulumi.Output.secret(" in code
    assert (
        "opts=pulumi.ResourceOptions(parent=supaqueue, protect=True, retain_on_delete=True)" in code
    )
    compile(code, "__main__.py", "exec")


@pytest.mark.parametrize(
    ("name", "python"),
    [
        ("edgeFunctionName", "edge_function_name"),
        ("edge_function_name", "edge_function_name"),
        ("rateLimitPerSecond", "rate_limit_per_second"),
        ("HTTPHeaders", "http_headers"),
        ("queueId", "queue_id"),
        ("name", "name"),
    ],
)
def test_names_in_snake_case(name: str, python: str) -> None:
    assert py_name(name) == python


def test_reserved_parameter_names_get_an_underscore() -> None:
    pcl = 'resource r "toy:index:Thing" {\n opts = "a"\n resourceName = "b"\n}\n'
    code = generate(pcl, no_schema)
    assert 'opts_="a"' in code and 'resource_name_="b"' in code


@pytest.mark.parametrize(
    ("pcl", "named"),
    [
        ('resource r "toy:index:Thing" {\n label = "${x}"\n}\n', "string interpolation"),
        ('resource r "toy:index:Thing" {\n label = upper("x")\n}\n', "function upper()"),
        ("output o {\n value = 1\n}\n", "block 'output'"),
        ('resource r "toy:index:Thing" {\n options {\n range = 2\n }\n}\n', "option 'range'"),
        ('resource r "toy:index:Thing" {\n label = "x\n}\n', "unterminated string"),
    ],
)
def test_what_it_cannot_convert_is_refused_by_name(pcl: str, named: str) -> None:
    with pytest.raises(PclError) as caught:
        generate(pcl, no_schema)
    assert named in str(caught.value)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_unreachable_loader_falls_back_to_the_default_module() -> None:
    pcl = 'resource r "toy:index:Thing" {\n label = "x"\n}\n'
    files = generate_program({"anonymous.pp": pcl}, "")
    assert list(files) == ["__main__.py"]
    assert b"import pulumi_toy as toy" in files["__main__.py"]
