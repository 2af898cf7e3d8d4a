"""The edge-function diff compares what is deployed, not where this checkout keeps the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supaqueue.edge_source import folder_hash
from supaqueue.providers.edge_function import EdgeFunctionProvider


def props(folder: Path) -> dict[str, Any]:
    return {
        # Nothing answers here: a redeploy attempt would fail the test.
        "management_api_url": "http://127.0.0.1:9",
        "project_ref": "abcdefghijklmnopqrst",
        "access_token": "sbp_test",
        "slug": "supaqueue",
        "source_dir": str(folder),
        "content_hash": folder_hash(folder),
        "verify_jwt": False,
        "entrypoint_path": "index.ts",
        "import_map_path": None,
    }


def write(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "index.ts").write_text(body)
    return folder


def test_another_checkout_of_the_same_files_is_no_change(tmp_path: Path) -> None:
    """State kept in a shared backend, `up` run from a CI runner or a colleague's clone: the
    absolute path differs, the files do not. No diff, and no redeploy."""
    provider = EdgeFunctionProvider()
    code = "Deno.serve(() => new Response('ok'));\n"
    olds = {**props(write(tmp_path / "laptop" / "supaqueue", code)), "version": 3}
    news = props(write(tmp_path / "ci" / "supaqueue", code))
    assert news["content_hash"] == olds["content_hash"]
    assert provider.diff("supaqueue", olds, news).changes is False
    updated = provider.update("supaqueue", olds, news).outs or {}
    assert updated["version"] == 3 and updated["source_dir"] == news["source_dir"]


def test_changed_files_still_redeploy(tmp_path: Path) -> None:
    provider = EdgeFunctionProvider()
    olds = props(write(tmp_path / "a" / "supaqueue", "Deno.serve(() => new Response('a'));\n"))
    news = props(write(tmp_path / "b" / "supaqueue", "Deno.serve(() => new Response('b'));\n"))
    diff = provider.diff("supaqueue", olds, news)
    assert diff.changes is True and diff.replaces == []
