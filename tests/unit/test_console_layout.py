"""The console's layout rules: `console/` (operator CLI + dashboard) never imports
`local_stack/`; the library never imports the console; the vendored chart library is the
version toolchain/vendor-uplot.sh pins."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_modules(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = names
    return found


def offenders(package: str, forbidden: str) -> list[str]:
    return [
        f"{path}: {name}"
        for path, names in imported_modules(package).items()
        for name in names
        if name == forbidden or name.startswith(forbidden + ".")
    ]


def test_console_never_imports_the_local_stack() -> None:
    assert imported_modules("console"), "no console sources found"
    assert offenders("console", "local_stack") == []


def test_library_never_imports_the_console_or_the_root_command() -> None:
    assert offenders("components", "console") == []
    assert offenders("components", "cli") == []


def test_vendored_uplot_is_the_pinned_version() -> None:
    script = (REPO / "toolchain" / "vendor-uplot.sh").read_text()
    pinned = re.search(r"^UPLOT_VERSION=(\S+)$", script, re.MULTILINE)
    assert pinned is not None
    vendored = REPO / "console" / "dashboard" / "static" / "vendor" / "uPlot.iife.min.js"
    assert f"(v{pinned.group(1)})" in vendored.read_text()[:200]
    assert (vendored.parent / "uPlot.LICENSE").read_text().startswith("The MIT License")
