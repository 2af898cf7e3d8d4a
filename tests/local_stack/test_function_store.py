"""The function store's slug rule is a full match: a slug with a trailing newline (which `re.match`
with `$` accepts) is not a function the stand-in will store or find."""

from __future__ import annotations

from pathlib import Path

import pytest

from supaqueue.local_stack.function_store import DeployError, FunctionStore


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


def test_a_record_reads_fresh_after_every_change_and_callers_cannot_alter_it(
    tmp_path: Path,
) -> None:
    """get() parses function.json again only when it changed (the gateway calls it per
    request); a change through another store on the same folder shows at once."""
    store = FunctionStore(tmp_path)
    other = FunctionStore(tmp_path)
    first = store.deploy("f", {"entrypoint_path": "index.ts", "verify_jwt": True},
                         {"index.ts": b"x"})  # fmt: skip
    assert store.get("f") == first
    got = store.get("f")
    assert got is not None
    got.verify_jwt = False
    got.static_patterns.append("changed")
    again = store.get("f")
    assert again is not None and again.verify_jwt is True and again.static_patterns == []
    other.activate("f", first.version, {"verify_jwt": False})
    changed = store.get("f")
    assert changed is not None and changed.verify_jwt is False
    other.delete("f")
    assert store.get("f") is None
