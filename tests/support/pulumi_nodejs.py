"""The real `@pulumi/pulumi` (and `@pulumi/random`) from npm at the versions
`pulumi_nodejs/package.json` pins, installed once into the cache for Node.js program tests.

3.276.0 is the newest @pulumi/pulumi 3.x npm serves here (the CLI is 3.274.1); @pulumi/random
4.21.2 is the newest 4.21.x, one patch behind the offline random plugin (4.21.4).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

from harness.toolchain import CACHE

PACKAGE_JSON = Path(__file__).with_name("pulumi_nodejs") / "package.json"
INSTALL_TIMEOUT_SECONDS = 600


def program_node_modules() -> Path:
    """`node_modules` for the pinned packages, beside a copy of the package.json it came from.

    Installed by npm on first use (under a file lock: pytest-xdist workers may ask at once).
    Missing node/npm fails the test loudly; it never skips.
    """
    text = PACKAGE_JSON.read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    home = CACHE / "npm" / f"pulumi-nodejs-{digest}"
    home.mkdir(parents=True, exist_ok=True)
    with (home.parent / f".pulumi-nodejs-{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = home / ".installed"
        if not done.exists():
            npm = shutil.which("npm")
            if npm is None or shutil.which("node") is None:
                raise RuntimeError("node and npm are needed for the Node.js program tests")
            (home / "package.json").write_text(text)
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=home, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS,
                check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(f"npm install of {PACKAGE_JSON} failed: {result.stderr[-2000:]}")
            done.write_text(digest)
    return home / "node_modules"
