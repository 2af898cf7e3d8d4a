"""The package's own data folders (the migrations, the dispatcher's source), found with
importlib.resources: the installed package's files, never a path of a checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def folder(name: str) -> Path:
    """`supaqueue/<name>` as installed. pip installs a package as files, so it is a real folder
    (the SQL runner and the Edge Function deploy read it as one)."""
    found = resources.files("supaqueue").joinpath(name)
    if not isinstance(found, Path) or not found.is_dir():
        raise RuntimeError(
            f"supaqueue's {name}/ is not a folder ({found}): install supaqueue with pip, unzipped"
        )
    return found
