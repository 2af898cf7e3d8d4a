"""scripts/pulumi-stack.sh with a backend of the user's own (README: set PULUMI_BACKEND_URL)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "pulumi-stack.sh"


def run(root: Path, backend: str) -> subprocess.CompletedProcess[str]:
    """The script on stack `prod`, with a stand-in `pulumi` that records its arguments."""
    bin_dir = root / ".toolchain" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "pulumi"
    fake.write_text('#!/bin/sh\necho "$@" >> "$SUPAQUEUE_ROOT/pulumi-calls"\n')
    fake.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root),
        "SUPAQUEUE_ROOT": str(root),
        "SUPAQUEUE_CACHE": str(root / "cache"),
        "PULUMI_BACKEND_URL": backend,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), "prod", "preview"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("backend", ["s3://team-bucket/supaqueue", "https://api.pulumi.com"])
def test_a_remote_backend_makes_no_folder(tmp_path: Path, backend: str) -> None:
    done = run(tmp_path, backend)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pulumi-calls").read_text().splitlines()[-1] == "--stack prod preview"
    scheme = backend.split("://")[0]
    assert not (tmp_path / f"{scheme}:").exists(), sorted(p.name for p in tmp_path.iterdir())


def test_a_file_backend_folder_is_created(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = run(tmp_path, f"file://{state}")
    assert done.returncode == 0, done.stderr
    assert state.is_dir()
