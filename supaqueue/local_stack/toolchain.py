"""Where `make toolchain` puts the tools: the one place that knows (the local stack and the tests
ask here; the Pulumi library only looks at $SUPAQUEUE_DENO and PATH, supaqueue/deno.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLBIN = REPO / ".toolchain" / "bin"


def cache_dir() -> Path:
    """`$SUPAQUEUE_CACHE`, default `${XDG_CACHE_HOME:-$HOME/.cache}/supaqueue`."""
    explicit = os.environ.get("SUPAQUEUE_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "supaqueue"


def find_deno() -> str | None:
    """`$SUPAQUEUE_DENO`, the checkout's toolchain, the cache, then PATH; None when none exists."""
    explicit = os.environ.get("SUPAQUEUE_DENO")
    candidates = [Path(explicit)] if explicit else []
    candidates += [TOOLBIN / "deno", cache_dir() / "deno" / "node_modules" / ".bin" / "deno"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    return shutil.which("deno")
