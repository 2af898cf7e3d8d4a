# ruff: noqa: F811  (the fixtures imported from test_dashboard / test_cli are parameters here)
"""`--stack NAME` through the real Pulumi CLI: a stack that does not exist is named (and not
created), what the stack resolves to is remembered encrypted and forgotten when the stack's config
changes or the remembered URL stops connecting. (Its speed: benchmarks/stack_target_bench.py.)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from supaqueue.console.target import StackCache
from tests.console.conftest import Jobs, supaqueue
from tests.console.test_cli import ok, one_line_error, pulumi_project  # noqa: F401 (fixture)


@pytest.fixture
def stack_env(pulumi_project: Path) -> dict[str, str]:
    return {
        "SUPAQUEUE_ROOT": str(pulumi_project),
        "PULUMI_BACKEND_URL": f"file://{pulumi_project.parent / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "test-only-passphrase",
        "SUPAQUEUE_STACK_CACHE_DIR": str(pulumi_project.parent / "stack-cache"),
    }


def pulumi(env: dict[str, str], *args: str) -> str:
    script = str(Path(env["SUPAQUEUE_ROOT"]) / "scripts" / "pulumi-stack.sh")
    result = subprocess.run(
        [script, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_stack_that_does_not_exist_is_named_not_created(
    jobs: Jobs, stack_env: dict[str, str]
) -> None:
    pulumi(stack_env, "optest", "config", "set", "supaqueue:target", "supabase")
    missing = supaqueue("status", "--stack", "nope", env=stack_env)
    line = one_line_error(missing, 1)
    assert "there is no Pulumi stack 'nope'" in line and "(stacks: optest)" in line
    assert "secrets manager" not in line
    stacks = json.loads(pulumi(stack_env, "optest", "stack", "ls", "--json"))
    assert [s["name"] for s in stacks] == ["optest"]  # nothing created by the typo


def test_the_stack_is_remembered_encrypted_and_forgotten_when_it_changes(
    jobs: Jobs, stack_env: dict[str, str], pulumi_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pulumi(stack_env, "optest", "config", "set", "supaqueue:target", "supabase")
    pulumi(stack_env, "optest", "config", "set", "--secret", "supaqueue:dbUrl", jobs.dsn)
    assert {
        r["name"] for r in json.loads(ok("status", "--stack", "optest", "--json", env=stack_env))
    } == {
        "emails",
        "reports",
    }
    cache_dir = Path(stack_env["SUPAQUEUE_STACK_CACHE_DIR"])
    entries = list(cache_dir.glob("*.fernet"))
    assert len(entries) == 1
    password = jobs.dsn.split(":")[2].split("@")[0]
    for path in cache_dir.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path  # this user only
            assert (
                password.encode() not in path.read_bytes()
                and b"postgresql" not in path.read_bytes()
            )

    # remembered: the next command does not need the Pulumi CLI at all
    real_scripts = pulumi_project / "scripts"
    real_scripts.unlink()
    broken = pulumi_project / "scripts"
    broken.mkdir()
    (broken / "pulumi-stack.sh").write_text("#!/bin/sh\necho 'pulumi was asked' >&2\nexit 1\n")
    (broken / "pulumi-stack.sh").chmod(0o755)
    ok("status", "--stack", "optest", "--json", env=stack_env)
    # a changed config is a different key: Pulumi is asked again (and here fails, saying so)
    stack_file = pulumi_project / "Pulumi.optest.yaml"
    stack_file.write_text(stack_file.read_text() + "\n")
    asked = supaqueue("status", "--stack", "optest", env=stack_env)
    assert "cannot read the config" in one_line_error(asked, 1)

    # a remembered URL that no longer connects is forgotten and the stack asked again
    (broken / "pulumi-stack.sh").unlink()
    broken.rmdir()
    real_scripts.symlink_to(Path(os.readlink(pulumi_project / "toolchain")).parent / "scripts")
    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)
    cache = StackCache.of("optest")
    assert cache is not None
    cache.put("postgresql://postgres:stale@127.0.0.1:1/postgres")
    ok("status", "--stack", "optest", "--json", env=stack_env)
    assert cache.get() == jobs.dsn
