"""The console's layout rules: `supaqueue/console/` (operator CLI + dashboard) imports none of the
dev tooling nor the local stack or the root command (the same check as the library's,
tests/unit/test_layering.py, which also keeps the library from importing the console); the
vendored chart library is the version toolchain/vendor-uplot.sh pins."""

from __future__ import annotations

import re

from harness.toolchain import REPO
from tests.unit.test_layering import FORBIDDEN, _violations


def test_console_imports_nothing_of_the_dev_tooling() -> None:
    assert list((REPO / "supaqueue" / "console").rglob("*.py")), "no console sources found"
    not_for_the_console = tuple(bad for bad in FORBIDDEN if bad != "supaqueue.console")
    assert _violations(REPO / "supaqueue" / "console", not_for_the_console, skip=()) == []


def test_vendored_uplot_is_the_pinned_version() -> None:
    script = (REPO / "toolchain" / "vendor-uplot.sh").read_text()
    pinned = re.search(r"^UPLOT_VERSION=(\S+)$", script, re.MULTILINE)
    assert pinned is not None
    static = REPO / "supaqueue" / "console" / "dashboard" / "static"
    vendored = static / "vendor" / "uPlot.iife.min.js"
    assert f"(v{pinned.group(1)})" in vendored.read_text()[:200]
    assert (vendored.parent / "uPlot.LICENSE").read_text().startswith("The MIT License")
