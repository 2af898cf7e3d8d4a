"""The files of an Edge Function folder, as deployed, and their content hash.

The hash is what the edge-function resource diffs on, and the trigger of the Deno type check:
any change to a deployed file redeploys, nothing else does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from supaqueue import package_data
from supaqueue.errors import ConfigError

# The dispatcher's source as this package ships it (package data).
PACKAGED_DISPATCHER = package_data.folder("edge")

# Tests and editor/tool droppings are not part of the deployed bundle.
_SKIPPED_DIRS = {"node_modules", "tests", "__pycache__"}
_SKIPPED_SUFFIXES = ("_test.ts", ".test.ts", "_test.js", ".test.js")


def source_files(folder: Path) -> list[tuple[str, bytes]]:
    """(relative posix path, bytes) of every deployable file, sorted by path."""
    if not folder.is_dir():
        raise ConfigError(f"Edge Function folder {folder} does not exist")
    files: list[tuple[str, bytes]] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if _SKIPPED_DIRS.intersection(rel.parts[:-1]) or rel.name.endswith(_SKIPPED_SUFFIXES):
            continue
        files.append((rel.as_posix(), path.read_bytes()))
    if not any(name == "index.ts" for name, _ in files):
        raise ConfigError(f"Edge Function folder {folder} has no index.ts entrypoint")
    return files


def content_hash(files: list[tuple[str, bytes]]) -> str:
    """sha256 over paths and contents (length-prefixed, so no two file sets collide)."""
    digest = hashlib.sha256()
    for name, content in files:
        encoded = name.encode()
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
        digest.update(len(content).to_bytes(8, "big") + content)
    return digest.hexdigest()


def folder_hash(folder: Path) -> str:
    return content_hash(source_files(folder))
