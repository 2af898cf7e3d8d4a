"""Who may import whom.

- The shipped package `supaqueue/` imports none of the dev tooling (`tests/`, `benchmarks/`,
  `harness/`, `offline_plugins/`, `scripts/`, `toolchain/`).
- Its core, the Pulumi library, imports neither the package's local stack, console nor CLI (those
  may import the core); the console imports neither the local stack nor the CLI.
- `harness/` (what tests and benchmarks drive the real parts with) imports nothing of `tests/` or
  `benchmarks/`; benchmarks never import tests: what both need lives in `harness/`."""

from __future__ import annotations

import ast
from pathlib import Path

from harness.toolchain import REPO

DEV_TOOLING = ("tests", "benchmarks", "harness", "offline_plugins", "scripts", "toolchain")
PACKAGE_PARTS = ("supaqueue.local_stack", "supaqueue.console", "supaqueue.cli")
# What the core may not import.
FORBIDDEN = PACKAGE_PARTS + DEV_TOOLING
# Parts of the package outside the core: the core's check skips them.
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


def _benchmark_modules() -> tuple[str, ...]:
    """A benchmark imports its siblings by their bare names (`from proc_cpu import ...`)."""
    return tuple(sorted(path.stem for path in (REPO / "benchmarks").glob("*.py")))


def test_the_core_imports_nothing_of_the_dev_tooling() -> None:
    assert _violations(REPO / "supaqueue") == []


def test_the_shipped_package_imports_nothing_of_the_dev_tooling() -> None:
    assert _violations(REPO / "supaqueue", DEV_TOOLING, skip=()) == []


def test_the_console_imports_neither_the_local_stack_nor_the_cli() -> None:
    console = REPO / "supaqueue" / "console"
    assert list(console.rglob("*.py")), "no console sources found"
    not_for_the_console = tuple(bad for bad in FORBIDDEN if bad != "supaqueue.console")
    assert _violations(console, not_for_the_console, skip=()) == []


def test_benchmarks_import_nothing_of_the_tests() -> None:
    found = _violations(REPO / "benchmarks", ("tests",), skip=())
    assert found == [], "move what benchmarks and tests share into harness/:\n" + "\n".join(found)


def test_the_harness_imports_neither_tests_nor_benchmarks() -> None:
    assert "proc_cpu" in _benchmark_modules()
    forbidden = ("tests", "benchmarks", *_benchmark_modules())
    assert _violations(REPO / "harness", forbidden, skip=()) == []


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
