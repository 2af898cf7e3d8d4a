"""Where the toolchain lives and the offline environment every Pulumi invocation in tests uses."""

from __future__ import annotations

import os
from pathlib import Path

from supaqueue.local_stack.toolchain import cache_dir, find_deno

# The checkout these tests belong to (the package knows no checkout: it may be installed).
REPO = Path(__file__).resolve().parents[1]
TOOLBIN = REPO / ".toolchain" / "bin"
CACHE = cache_dir()
PULUMI = TOOLBIN / "pulumi"
VENV = REPO / ".venv"


def require(path: Path) -> Path:
    """Fail loudly (never skip) when the toolchain is missing: `make toolchain` installs it."""
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make toolchain` first")
    return path


def pulumi_env(backend_dir: Path, passphrase: str = "test-only-passphrase") -> dict[str, str]:
    """The offline Pulumi environment with a file backend in `backend_dir`."""
    require(PULUMI)
    backend_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        PATH=f"{TOOLBIN}:{VENV / 'bin'}:{env.get('PATH', '')}",
        PULUMI_HOME=str(CACHE / "pulumi-home"),
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
        PULUMI_BACKEND_URL=f"file://{backend_dir}",
        PULUMI_CONFIG_PASSPHRASE=passphrase,
        PULUMI_SKIP_CONFIRMATIONS="true",
        DENO_DIR=str(CACHE / "deno-dir"),
    )
    return env


def deno() -> str:
    """The Deno binary `make toolchain` installed; missing Deno fails the test (never a skip)."""
    found = find_deno()
    if not found:
        raise RuntimeError("deno is missing: run `make toolchain` first")
    return found
