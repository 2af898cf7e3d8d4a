"""The console's layout rules: `console/` (operator CLI + dashboard) imports none of the dev
tooling (the same check as the library's, tests/unit/test_layering.py); the library never imports
the console or the root command; the vendored chart library is the version
toolchain/vendor-uplot.sh pins."""

from __future__ import annotations

import re

from tests.support.toolchain import REPO
from tests.unit.test_layering import _imported_modules, _violations


def test_console_imports_nothing_of_the_dev_tooling() -> None:
    assert list((REPO / "console").rglob("*.py")), "no console sources found"
    assert _violations(REPO / "console") == []


def test_library_never_imports_the_console_or_the_root_command() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in sorted((REPO / "components").rglob("*.py"))
        for line, module in _imported_modules(path)
        if module.split(".")[0] in ("console", "cli")
    ]
    assert found == []


def test_vendored_uplot_is_the_pinned_version() -> None:
    script = (REPO / "toolchain" / "vendor-uplot.sh").read_text()
    pinned = re.search(r"^UPLOT_VERSION=(\S+)$", script, re.MULTILINE)
    assert pinned is not None
    vendored = REPO / "console" / "dashboard" / "static" / "vendor" / "uPlot.iife.min.js"
    assert f"(v{pinned.group(1)})" in vendored.read_text()[:200]
    assert (vendored.parent / "uPlot.LICENSE").read_text().startswith("The MIT License")
