"""The function store's slug rule is a full match: a slug with a trailing newline (which `re.match`
with `$` accepts) is not a function the stand-in will store or find."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_stack.function_store import DeployError, FunctionStore


def test_a_slug_with_a_trailing_newline_is_neither_found_nor_deployed(tmp_path: Path) -> None:
    store = FunctionStore(tmp_path)
    assert store.get("demo\n") is None
    with pytest.raises(DeployError, match="must match"):
        store.deploy(
            "demo\n",
            {"entrypoint_path": "index.ts"},
            {"index.ts": b"Deno.serve(() => new Response('x'))"},
        )
    assert not (tmp_path / "demo\n").exists()
