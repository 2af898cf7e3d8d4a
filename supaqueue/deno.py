"""Which Deno the library type-checks Edge Function sources with: `$SUPAQUEUE_DENO`, else `deno`
on PATH. (The repo's dev toolchain puts its Deno on PATH; supaqueue.local_stack.toolchain knows
the toolchain's own places.)"""

from __future__ import annotations

import os
import shutil


def find_deno() -> str | None:
    """`$SUPAQUEUE_DENO` when set, else `deno` on PATH; None when there is none."""
    explicit = os.environ.get("SUPAQUEUE_DENO")
    if explicit:
        return explicit if os.path.exists(explicit) else None
    return shutil.which("deno")
