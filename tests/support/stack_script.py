"""A project root for scripts/pulumi-stack.sh with a stand-in `pulumi` on the toolchain's path
that records its arguments (one line per call in `<root>/pulumi-calls`)."""

from __future__ import annotations

import os
from pathlib import Path

RECORD = 'echo "$@" >> "$SUPAQUEUE_ROOT/pulumi-calls"\n'


def stand_in_pulumi(root: Path, backend: str, body: str = RECORD) -> dict[str, str]:
    """Writes `<root>/.toolchain/bin/pulumi` (`#!/bin/sh` and `body`) and answers the environment
    the script then runs in: this machine's PATH, `root` as home, project and cache."""
    bin_dir = root / ".toolchain" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "pulumi"
    fake.write_text("#!/bin/sh\n" + body)
    fake.chmod(0o755)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "SUPAQUEUE_ROOT": str(root),
        "SUPAQUEUE_CACHE": str(root / "cache"),
        "PULUMI_BACKEND_URL": backend,
    }
