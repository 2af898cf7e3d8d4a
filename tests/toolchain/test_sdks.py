"""The committed TypeScript and Go SDKs (`sdk/`): what the provider's schema generates today
(`scripts/sdks.py`, `make sdks`), and each compiles against the Pulumi SDK programs use."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

from harness.toolchain import PULUMI, REPO, pulumi_env
from tests.support.language_hosts import announce_host, toolchain_host
from tests.support.pulumi_nodejs import program_node_modules

SDK = REPO / "sdk"


def sdks_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sdks", REPO / "scripts" / "sdks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_sdks_are_what_the_schema_generates(tmp_path: Path) -> None:
    for language in ("nodejs", "go"):
        announce_host(language, *toolchain_host(language))
    script = sdks_script()
    fresh = tmp_path / "sdk"
    script.generate(fresh, pulumi=str(PULUMI), env=pulumi_env(tmp_path / "state"))
    assert script.differences(fresh) == [], "sdk/ is stale: run `make sdks` and commit"
    # The SDKs ask for the plugin of this version, and carry the schema's descriptions as docs.
    queue_ts = (SDK / "nodejs" / "queue.ts").read_text()
    assert "export class Queue extends pulumi.CustomResource" in queue_ts
    assert "Delete refuses while unfinished jobs exist" in queue_ts
    assert '"version": "0.1.0"' in (SDK / "go" / "supaqueue" / "pulumi-plugin.json").read_text()


def test_committed_sdks_check_names_a_stale_file(tmp_path: Path) -> None:
    script = sdks_script()
    fresh = tmp_path / "sdk"
    shutil.copytree(SDK / "nodejs", fresh / "nodejs")
    shutil.copytree(SDK / "go" / "supaqueue", fresh / "go" / "supaqueue")
    (fresh / "nodejs" / "queue.ts").write_text("// changed\n")
    (fresh / "go" / "supaqueue" / "extra.go").write_text("package supaqueue\n")
    assert script.differences(fresh) == ["go/supaqueue/extra.go", "nodejs/queue.ts"]


def test_typescript_sdk_type_checks(tmp_path: Path) -> None:
    """tsc against @pulumi/pulumi from npm (the version Node.js program tests use)."""
    folder = tmp_path / "nodejs"
    shutil.copytree(SDK / "nodejs", folder)
    (folder / "node_modules").symlink_to(program_node_modules(), target_is_directory=True)
    tsc = folder / "node_modules" / "typescript" / "bin" / "tsc"
    done = subprocess.run(
        ["node", str(tsc), "--noEmit", "-p", "."],
        cwd=folder, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_go_sdk_builds() -> None:
    """`go build` of the committed module (sdk/go.mod; the first build compiles pulumi/sdk/v3,
    then Go's cache answers)."""
    go = shutil.which("go")
    assert go is not None, "go is needed for the Go SDK test (make toolchain installs it)"
    done = subprocess.run(
        [go, "build", "./..."],
        cwd=SDK, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    vet = subprocess.run(
        [go, "vet", "./..."], cwd=SDK, capture_output=True, text=True, timeout=600, check=False
    )
    assert vet.returncode == 0, vet.stdout + vet.stderr
