"""`--stack NAME` of a stack with `target: local` and no dbUrl takes the local stack's database
(`supaqueue dev status -o env`, run as the package's own CLI module)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.toolchain import REPO
from tests.conftest import LocalStack
from tests.console.conftest import supaqueue


def test_a_local_target_stack_resolves_to_the_running_local_stack(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", project / "Pulumi.yaml")
    for name in ("scripts", "toolchain", ".toolchain", ".venv"):
        (project / name).symlink_to(REPO / name)
    env = {
        "SUPAQUEUE_ROOT": str(project),
        "SUPAQUEUE_LOCAL_STACK_DIR": str(local_stack.dir),
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "test-only-passphrase",
        "SUPAQUEUE_STACK_CACHE": "0",
    }
    (tmp_path / "state").mkdir()
    script = str(project / "scripts" / "pulumi-stack.sh")
    done = subprocess.run(
        [script, "optest", "config", "set", "supaqueue:target", "local"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = supaqueue("status", "--stack", "optest", env=env)
    # The database was found (the local stack's): supaqueue is not installed in that one.
    assert result.returncode == 1
    assert result.stderr.strip() == "supaqueue: supaqueue is not installed in this database"
