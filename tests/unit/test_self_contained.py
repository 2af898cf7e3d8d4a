"""The repository explains and tests itself: no file of it points at material outside it (a clone
has nothing beside it), and the reference documents the tests compare against are inside it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Folders that are not the project's own files (tool output, caches, state of local runs).
NOT_OURS = {
    ".git",
    ".venv",
    ".toolchain",
    ".local-stack",
    ".pulumi-state",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    "__pycache__",
    "node_modules",
}
# Assembled from parts so this file does not match itself. `../_shared/` (Supabase's folder for
# code shared between functions) is a different thing and does not match.
SHARED = "sha" + "red"
OUTSIDE = re.compile(
    rf"\.\./{SHARED}\b|/work/{SHARED}\b|\b{SHARED}/(reference|design\.md|style\.md|seed)\b"
    rf"""|\b{SHARED}["']\s*/\s*["'](reference|design)"""
)


def project_files() -> list[Path]:
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if tracked.returncode == 0:
        names = [n for n in tracked.stdout.decode().split("\0") if n]
        return [REPO / n for n in names if (REPO / n).is_file()]
    # Not a git checkout (e.g. an unpacked archive): every file outside the tool folders.
    return [
        p
        for p in REPO.rglob("*")
        if p.is_file() and not NOT_OURS.intersection(p.relative_to(REPO).parts)
    ]


def test_no_file_refers_to_material_outside_the_repository() -> None:
    offenders = []
    files = project_files()
    assert len(files) > 50, "found too few project files: is REPO right?"
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        # The whole text, not line by line: a path may be built over several lines.
        for found in OUTSIDE.finditer(text):
            number = text.count("\n", 0, found.start()) + 1
            offenders.append(f"{path.relative_to(REPO)}:{number}: {found.group(0)!r}")
    assert not offenders, "files that point outside the repository:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_must_and_only_that() -> None:
    assert OUTSIDE.search(f"Read with ../{SHARED}/design.md")
    assert OUTSIDE.search(f"Path('/work/{SHARED}/reference/x.json')")
    assert OUTSIDE.search(f"the document in {SHARED}/reference")
    assert OUTSIDE.search(f'root\n    / "{SHARED}"\n    / "reference"')
    assert not OUTSIDE.search('import { shout } from "../_shared/shout.ts";')
    assert not OUTSIDE.search("shared_preload_libraries = 'pg_cron'")


def test_the_reference_documents_are_in_the_repository() -> None:
    reference = REPO / "docs" / "reference"
    document = json.loads((reference / "supabase-management-api.openapi.json").read_text())
    assert document["info"]["title"] == "Supabase API (v1)"
    assert "/v1/projects/{ref}/functions/deploy" in document["paths"]
    assert "source" in (reference / "README.md").read_text().lower()
    for doc in ("design.md", "reference/supabase-platform.md", "architecture.md"):
        assert (REPO / "docs" / doc).is_file(), doc
