"""What gets deployed from a function folder, and the content hash the diff compares."""

from __future__ import annotations

from pathlib import Path

import pytest

from supaqueue.edge_source import folder_hash, source_files
from supaqueue.errors import ConfigError


@pytest.fixture
def function(tmp_path: Path) -> Path:
    (tmp_path / "lib").mkdir()
    (tmp_path / "index.ts").write_text("export {};\n")
    (tmp_path / "deno.json").write_text("{}\n")
    (tmp_path / "lib" / "util.ts").write_text("export const x = 1;\n")
    return tmp_path


def test_deployed_files_are_relative_sorted_and_skip_tests(function: Path) -> None:
    (function / "index_test.ts").write_text("test")
    (function / ".env").write_text("SECRET=1")
    (function / "node_modules").mkdir()
    (function / "node_modules" / "x.js").write_text("x")
    names = [name for name, _ in source_files(function)]
    assert names == ["deno.json", "index.ts", "lib/util.ts"]


def test_hash_follows_content_and_names_only(function: Path) -> None:
    first = folder_hash(function)
    assert folder_hash(function) == first
    (function / "index_test.ts").write_text("not deployed")
    assert folder_hash(function) == first
    (function / "lib" / "util.ts").write_text("export const x = 2;\n")
    second = folder_hash(function)
    assert second != first
    (function / "lib" / "util.ts").rename(function / "lib" / "other.ts")
    assert folder_hash(function) not in (first, second)


def test_no_entrypoint_or_no_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no index\.ts entrypoint"):
        source_files(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        source_files(tmp_path / "missing")
