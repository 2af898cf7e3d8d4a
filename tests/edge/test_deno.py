"""Both functions type-check in real Deno, and the supaqueue modules pass their Deno unit tests."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from harness.function_process import DISPATCHER, deno_binary, deno_env, edge_source

HERE = Path(__file__).resolve().parent
IMPORT = re.compile(r'(?:\bfrom|\bimport)\s*\(?\s*"([^"]+)"')


@pytest.mark.parametrize("slug", ["supaqueue", "demo-target"])
def test_function_type_checks(slug: str) -> None:
    folder = edge_source(slug)
    proc = subprocess.run(
        [deno_binary(), "check", "--config", str(folder / "deno.json"), "index.ts"],
        cwd=folder,
        env=deno_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("slug", ["supaqueue", "demo-target"])
def test_function_uses_npm_imports_only(slug: str) -> None:
    """jsr: and https: registries are unreachable from our machines: npm:, node: and the
    function's own files only, so everything deployed resolves the same everywhere."""
    folder = edge_source(slug)
    imports = json.loads((folder / "deno.json").read_text()).get("imports", {})
    assert all(str(target).startswith("npm:") for target in imports.values()), imports
    specifiers = [
        (source.name, spec)
        for source in folder.rglob("*.ts")
        for spec in IMPORT.findall(source.read_text())
    ]
    assert specifiers, "no imports found: the pattern is wrong"
    for name, spec in specifiers:
        assert spec.startswith(("./", "npm:", "node:")) or spec in imports, f"{name}: {spec!r}"
        if spec.startswith("./"):
            assert (folder / spec).resolve().is_relative_to(folder), (
                f"{name}: {spec} leaves {slug}/"
            )


def test_supaqueue_module_unit_tests() -> None:
    folder = DISPATCHER
    proc = subprocess.run(
        [
            deno_binary(),
            "test",
            "--config",
            str(folder / "deno.json"),
            str(HERE / "supaqueue_modules_test.ts"),
        ],
        cwd=folder,
        env=deno_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "0 failed" in output and " passed" in output


@pytest.mark.parametrize("slug", ["supaqueue", "demo-target"])
def test_function_is_lint_and_format_clean(slug: str) -> None:
    folder = edge_source(slug)
    for command in (["lint"], ["fmt", "--check"]):
        proc = subprocess.run(
            [deno_binary(), *command, "--config", str(folder / "deno.json"), "."],
            cwd=folder,
            env=deno_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"deno {' '.join(command)}: {proc.stdout}{proc.stderr}"
