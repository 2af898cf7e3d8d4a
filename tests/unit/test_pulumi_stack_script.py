"""scripts/pulumi-stack.sh with a backend of the user's own (README: set PULUMI_BACKEND_URL)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.stack_script import RECORD, stand_in_pulumi

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "pulumi-stack.sh"


def run(root: Path, backend: str) -> subprocess.CompletedProcess[str]:
    """The script on stack `prod`, with a stand-in `pulumi` that records its arguments."""
    env = stand_in_pulumi(root, backend)
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


def run_on_missing_stack(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The script on a stack that does not exist: the stand-in `pulumi` fails `stack select`."""
    env = stand_in_pulumi(
        root,
        f"file://{root / 'state'}",
        RECORD
        + 'if [ "$1 $2" = "stack select" ]; then exit 255; fi\n'
        + 'if [ "$1 $2" = "stack ls" ]; then echo "dev"; echo "prod"; fi\n',
    )
    return subprocess.run(
        ["bash", str(SCRIPT), "prdo", *args],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("command", ["destroy", "refresh"])
def test_a_misspelt_stack_is_not_made_by_a_command_that_needs_one(
    tmp_path: Path, command: str
) -> None:
    done = run_on_missing_stack(tmp_path, command, "--yes")
    assert done.returncode == 2
    assert f"No stack 'prdo' in this backend: 'pulumi {command}' needs an existing stack" in (
        done.stderr
    )
    assert "dev\nprod" in done.stderr  # the stacks that do exist
    calls = (tmp_path / "pulumi-calls").read_text().splitlines()
    assert not any(c.startswith("stack init") for c in calls), calls
    assert not any(command in c for c in calls), calls


def test_a_new_stack_starts_with_config_set(tmp_path: Path) -> None:
    done = run_on_missing_stack(tmp_path, "config", "set", "supaqueue:projectRef", "abc")
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "pulumi-calls").read_text().splitlines()
    assert calls[-2:] == ["stack init prdo", "--stack prdo config set supaqueue:projectRef abc"]
