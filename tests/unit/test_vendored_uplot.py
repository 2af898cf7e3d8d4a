"""The dashboard's vendored chart library is the version toolchain/vendor-uplot.sh pins. (What the
console may import: tests/unit/test_layering.py.)"""

from __future__ import annotations

import re

from harness.toolchain import REPO


def test_vendored_uplot_is_the_pinned_version() -> None:
    script = (REPO / "toolchain" / "vendor-uplot.sh").read_text()
    pinned = re.search(r"^UPLOT_VERSION=(\S+)$", script, re.MULTILINE)
    assert pinned is not None
    static = REPO / "supaqueue" / "console" / "dashboard" / "static"
    vendored = static / "vendor" / "uPlot.iife.min.js"
    assert f"(v{pinned.group(1)})" in vendored.read_text()[:200]
    assert (vendored.parent / "uPlot.LICENSE").read_text().startswith("The MIT License")
