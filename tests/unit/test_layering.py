"""The Pulumi library stands alone: the core of the `supaqueue` package imports neither the dev
tooling nor the package's own local stack, console or CLI (those may import the core)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.toolchain import REPO

FORBIDDEN = (
    "supaqueue.local_stack",
    "supaqueue.console",
    "supaqueue.cli",
    "offline_plugins",
    "benchmarks",
    "tests",
)
# Parts of the package outside the core: the checks below skip them.
NOT_CORE = ("local_stack", "console", "cli")


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            # importlib.import_module("local_stack.x") is an import too
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value))
    return found


def _violations(
    root: Path, forbidden: tuple[str, ...] = FORBIDDEN, skip: tuple[str, ...] = NOT_CORE
) -> list[str]:
    return [
        f"{path.relative_to(root)}:{line} imports {module}"
        for path in sorted(root.rglob("*.py"))
        if path.relative_to(root).parts[0] not in skip
        for line, module in _imported_modules(path)
        if any(module == bad or module.startswith(bad + ".") for bad in forbidden)
    ]


def test_the_core_imports_nothing_of_the_dev_tooling() -> None:
    assert _violations(REPO / "supaqueue") == []


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "probe.py").write_text(
        "import supaqueue.local_stack.postgres\n"
        "from supaqueue.local_stack import standins\n"
        "def f():\n"
        "    from offline_plugins.common import serve\n"
        "    import importlib\n"
        "    return importlib.import_module('supaqueue.local_stack.cli')\n"
    )
    found = _violations(tmp_path)
    assert [v.split(" imports ")[1] for v in found] == [
        "supaqueue.local_stack.postgres",
        "supaqueue.local_stack",
        "offline_plugins.common",
        "supaqueue.local_stack.cli",
    ]
