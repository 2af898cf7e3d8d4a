"""The wheel built from this checkout, and fresh virtualenvs that install it as a user would.

The wheel is built from a copy of the checkout's own files (`git ls-files`: no `.venv`, and no
`build/` of an earlier build, whose stale modules would end up in it) with the repo venv's
setuptools (`--no-build-isolation`: nothing is fetched). A fresh venv gets the wheel and its
dependencies at the repo's exact pins (`constraints.txt`) from a wheelhouse in the cache, filled
from the package index the first time (`pip download`), so later runs install offline.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.toolchain import CACHE, REPO

CONSTRAINTS = REPO / "constraints.txt"
PIP_TIMEOUT_SECONDS = 900
# Every extra, so one wheelhouse serves any venv of the tests.
ALL_EXTRAS = "console,local-stack"


def run(
    args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_SECONDS,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done


def checkout_files() -> list[str]:
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], REPO)
    return [name for name in listed.stdout.split("\0") if name and (REPO / name).is_file()]


def build_wheel(work: Path) -> Path:
    """`pip wheel . --no-deps` of a clean copy of the checkout; the wheel's path."""
    source = work / "source"
    for name in checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    dist = work / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    run([*pip_wheel, "-q", "-w", str(dist), str(source)])
    (wheel,) = dist.glob("supaqueue-*.whl")
    return wheel


def wheelhouse(wheel: Path) -> Path:
    """A folder of wheels holding every dependency of `wheel` (all extras) at the pinned
    versions: `pip install --no-index --find-links <it>` installs offline."""
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:16]
    house = CACHE / "wheelhouse" / digest
    house.mkdir(parents=True, exist_ok=True)
    download = [sys.executable, "-m", "pip", "download", "-q", "-c", str(CONSTRAINTS)]
    download += ["-d", str(house), f"{wheel}[{ALL_EXTRAS}]"]
    # pytest-xdist workers may fill it at once: one download at a time
    with (house.parent / f".{house.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:  # complete already? (resolves from the folder alone)
            run([*download, "--no-index", "--find-links", str(house)])
        except AssertionError:  # a new machine or new pins: fill it from the index, once
            run(download)
        for copy in house.glob("supaqueue-*"):  # the wheel itself is always given by its path
            copy.unlink()
    return house


def offline_pip_env(wheel: Path) -> dict[str, str]:
    """pip's settings (environment variables) that install `wheel`'s dependencies offline, at
    the pinned versions."""
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse(wheel)),
        "PIP_CONSTRAINT": str(CONSTRAINTS),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def fresh_venv(venv: Path, wheel: Path, extras: str = "") -> Path:
    """A new venv at `venv` holding `wheel` (with `extras`) and its pinned dependencies only;
    its python."""
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    requirement = f"{wheel}[{extras}]" if extras else str(wheel)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    run(
        [str(python), "-m", "pip", "install", "-q", requirement],
        env={**env, **offline_pip_env(wheel)},
    )
    return python
