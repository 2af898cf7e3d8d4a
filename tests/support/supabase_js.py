"""The real `@supabase/supabase-js` from npm, at the version `supabase_js/package.json` pins,
installed once into the cache, and a way to run ES module scripts against it with the machine's
node (the recipes and the `/rest/v1` contract tests)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness.toolchain import REPO
from supaqueue.local_stack.toolchain import cache_dir

EXAMPLES = REPO / "examples"
PACKAGE = json.loads((Path(__file__).with_name("supabase_js") / "package.json").read_text())
VERSION: str = PACKAGE["dependencies"]["@supabase/supabase-js"]


class NodeUnavailable(RuntimeError):
    pass


def node_modules() -> Path:
    """`node_modules` holding supabase-js VERSION (npm install into the cache on first use)."""
    home = cache_dir() / "npm" / f"supabase-js-{VERSION}"
    home.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers may ask at once on a new machine: one npm install at a time
    with (home.parent / f".supabase-js-{VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install(home)


def _install(home: Path) -> Path:
    target = home / "node_modules"
    marker = target / "@supabase" / "supabase-js" / "package.json"
    if marker.exists() and json.loads(marker.read_text())["version"] == VERSION:
        return target
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise NodeUnavailable("node and npm are needed for the supabase-js tests (NOT TESTED HERE)")
    (home / "package.json").write_text(json.dumps(PACKAGE, indent=2) + "\n")
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent"],
        cwd=home, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not marker.exists():
        raise NodeUnavailable(f"npm install of supabase-js {VERSION} failed: {done.stderr[-2000:]}")
    return target


def run_module(work: Path, files: dict[str, str], main: str, env: dict[str, str]) -> Any:
    """Write `files` into `work` (beside a node_modules link), run `node <main>`, return the JSON
    its last stdout line holds."""
    work.mkdir(parents=True, exist_ok=True)
    link = work / "node_modules"
    if not link.exists():
        link.symlink_to(node_modules(), target_is_directory=True)
    (work / "package.json").write_text(json.dumps({"type": "module"}) + "\n")
    for name, text in files.items():
        (work / name).write_text(text)
    done = subprocess.run(
        ["node", main], cwd=work, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **env},
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"node {main} failed ({done.returncode}): {done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        raise AssertionError(f"node {main} printed nothing; stderr: {done.stderr[-2000:]}")
    return json.loads(lines[-1])
