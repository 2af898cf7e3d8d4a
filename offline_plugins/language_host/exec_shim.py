"""Where the SDK's `pulumi-language-python-exec` shim is (it ships with the CLI, not the SDK)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from offline_plugins.language_host.errors import HostError

EXEC_NAME = "pulumi-language-python-exec"
# Set by whoever installs this host when the shim lives somewhere else.
EXEC_ENV = "SUPAQUEUE_PULUMI_EXEC"


def find_exec_shim() -> Path:
    """$SUPAQUEUE_PULUMI_EXEC, else the shim on PATH, else next to the `pulumi` on PATH."""
    configured = os.environ.get(EXEC_ENV)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise HostError(f"{EXEC_ENV} is set to {configured!r}, which is not a file")
        return path
    on_path = shutil.which(EXEC_NAME)
    if on_path:
        return Path(on_path)
    pulumi = shutil.which("pulumi")
    if pulumi:
        # Both the directory on PATH and the one a symlinked `pulumi` really lives in.
        for folder in (Path(pulumi).parent, Path(pulumi).resolve().parent):
            candidate = folder / EXEC_NAME
            if candidate.is_file():
                return candidate
    raise HostError(
        f"could not find {EXEC_NAME}: set {EXEC_ENV}, or put it on PATH or next to `pulumi` "
        "(`make toolchain` installs it)"
    )
