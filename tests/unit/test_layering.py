"""The shipped library stands alone: nothing in `components/` imports the dev tooling."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.toolchain import REPO

FORBIDDEN = ("local_stack", "offline_plugins", "tests")


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


def _violations(root: Path) -> list[str]:
    return [
        f"{path.relative_to(root)}:{line} imports {module}"
        for path in sorted(root.rglob("*.py"))
        for line, module in _imported_modules(path)
        if module.split(".")[0] in FORBIDDEN
    ]


def test_components_import_nothing_of_the_dev_tooling() -> None:
    assert _violations(REPO / "components") == []


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "probe.py").write_text(
        "import local_stack.postgres\n"
        "from local_stack import standins\n"
        "def f():\n"
        "    from offline_plugins.common import serve\n"
        "    import importlib\n"
        "    return importlib.import_module('local_stack.cli')\n"
    )
    found = _violations(tmp_path)
    assert [v.split(" imports ")[1] for v in found] == [
        "local_stack.postgres",
        "local_stack",
        "offline_plugins.common",
        "local_stack.cli",
    ]
