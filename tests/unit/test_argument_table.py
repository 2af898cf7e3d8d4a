"""supaqueue/README.md's argument tables are what scripts/argument_table.py makes of the one
place each fact is defined (argument classes, spec modules): a changed default, limit or
argument fails here until the README is regenerated."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from harness.toolchain import REPO


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "argument_table", REPO / "scripts" / "argument_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_tables_are_generated_from_the_specs() -> None:
    tables = generator()
    text = tables.README.read_text()
    assert tables.refreshed(text) == text, "run: python scripts/argument_table.py"


def test_every_argument_is_in_the_tables() -> None:
    from supaqueue.installation import SupaqueueArgs
    from supaqueue.providers.queue.spec import FIELDS

    text = generator().tables()
    for name in [*SupaqueueArgs.__annotations__, *FIELDS]:
        assert f"| `{name}` |" in text, name
    # e.g. a limit from the spec (held to the SQL by tests/engine/test_queue_limits.py)
    assert "| `timeout_ms` | `int` | `30000` | 1..390000 |" in text
