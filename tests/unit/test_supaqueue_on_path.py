"""After `make up`, the documented one line puts `supaqueue` on PATH: `. toolchain/env.sh` finds
this checkout's command in a shell that had none, and README and `make up` both say so."""

from __future__ import annotations

import os
import subprocess

from harness.toolchain import REPO

LINE = ". toolchain/env.sh"


def test_the_documented_line_puts_supaqueue_on_path() -> None:
    bare_path = ":".join(
        p for p in os.environ["PATH"].split(":") if not p.startswith(str(REPO)) and ".venv" not in p
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SUPAQUEUE_ROOT", "VIRTUAL_ENV")} | {
        "PATH": bare_path
    }
    before = subprocess.run(
        ["bash", "-c", "command -v supaqueue"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert before.returncode != 0, before.stdout  # the reported `command not found`
    after = subprocess.run(
        ["bash", "-c", f"{LINE} && command -v supaqueue && supaqueue --help"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines()[0] == str(REPO / ".venv" / "bin" / "supaqueue")
    assert "status" in after.stdout
    assert f"`{LINE}`" in (REPO / "README.md").read_text()
    assert LINE in (REPO / "Makefile").read_text().split("\nup:", 1)[1].split("\n\n", 1)[0]
