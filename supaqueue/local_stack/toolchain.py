"""What the local stack runs on, and where to find it: the one place that knows (the local stack
and the tests ask here; the Pulumi library only looks at $SUPAQUEUE_DENO and PATH,
supaqueue/deno.py).

The local stack needs PostgreSQL 15 with pg_cron and Deno 2. In this repository `make toolchain`
installs them (Deno into the cache, linked from the checkout's `.toolchain/bin`, which
`toolchain/env.sh` names in `$SUPAQUEUE_ROOT`); anywhere else they are the machine's:
`local_stack_problems()` says what to install when they are missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Where a missing tool comes from (Debian/Ubuntu package names; any Deno 2 will do).
INSTALL_POSTGRES = "as root: apt-get install postgresql-15 postgresql-15-cron"
INSTALL_DENO = (
    "install Deno 2 (e.g. `npm install -g deno`) and put it on PATH, or set SUPAQUEUE_DENO to "
    "the deno binary"
)


def cache_dir() -> Path:
    """`$SUPAQUEUE_CACHE`, default `${XDG_CACHE_HOME:-$HOME/.cache}/supaqueue`."""
    explicit = os.environ.get("SUPAQUEUE_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "supaqueue"


def checkout_toolbin() -> Path | None:
    """`.toolchain/bin` of the supaqueue checkout whose `toolchain/env.sh` is sourced, if any."""
    root = os.environ.get("SUPAQUEUE_ROOT")
    return Path(root) / ".toolchain" / "bin" if root else None


def find_deno() -> str | None:
    """`$SUPAQUEUE_DENO`, the checkout's toolchain, the cache, then PATH; None when none exists."""
    explicit = os.environ.get("SUPAQUEUE_DENO")
    candidates = [Path(explicit)] if explicit else []
    toolbin = checkout_toolbin()
    if toolbin is not None:
        candidates.append(toolbin / "deno")
    candidates.append(cache_dir() / "deno" / "node_modules" / ".bin" / "deno")
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    return shutil.which("deno")


def local_stack_problems() -> list[str]:
    """What `supaqueue dev up` lacks on this machine, each with what to install; [] when none."""
    from supaqueue.local_stack.extensions import server_dirs
    from supaqueue.local_stack.postgres import PG_BIN

    problems = []
    if not (PG_BIN / "postgres").exists():
        problems.append(
            f"PostgreSQL 15 is not installed ({PG_BIN / 'postgres'} is missing; "
            f"SUPAQUEUE_PG_BIN names another bin folder): {INSTALL_POSTGRES}"
        )
    else:
        sharedir, libdir = server_dirs(PG_BIN)
        if (
            not (sharedir / "extension" / "pg_cron.control").is_file()
            or not (libdir / "pg_cron.so").is_file()
        ):
            problems.append(
                f"pg_cron is not installed for the PostgreSQL in {PG_BIN}: {INSTALL_POSTGRES}"
            )
    if find_deno() is None:
        problems.append(f"Deno is not installed: {INSTALL_DENO}")
    return problems
