"""Which database the operator commands talk to: `--db-url`, else `DB_URL`, else `--stack NAME`.

`--stack` reads the `supaqueue:dbUrl` secret the stack already holds, through the Pulumi CLI
(scripts/pulumi-stack.sh, with the project's toolchain settings), so nobody pastes a password.
A stack with `target: local` takes its database from the local stack, as the Pulumi program
does (`supaqueue dev status -o env`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from console.api import BadInputError, ConsoleError

PULUMI_TIMEOUT_SECONDS = 120


def project_root() -> Path:
    return Path(os.environ.get("SUPAQUEUE_ROOT") or Path(__file__).resolve().parent.parent)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no output"


def _stack_config(stack: str, key: str) -> tuple[bool, str]:
    script = project_root() / "scripts" / "pulumi-stack.sh"
    if not script.is_file():
        raise ConsoleError(
            f"--stack needs the supaqueue project checkout ({script} is missing); use --db-url"
        )
    try:
        result = subprocess.run(
            [str(script), stack, "config", "get", key],
            capture_output=True,
            text=True,
            timeout=PULUMI_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ConsoleError(f"pulumi did not answer within {PULUMI_TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        return False, _first_line(result.stderr or result.stdout)
    return True, result.stdout.strip()


def stack_db_url(stack: str) -> str:
    found, value = _stack_config(stack, "supaqueue:dbUrl")
    if found and value:
        return value
    target_found, target = _stack_config(stack, "supaqueue:target")
    if target_found and target == "local":
        return _local_stack_db_url()
    # never echo a value: only pulumi's own first line, which names the key or the problem
    raise ConsoleError(f"cannot read supaqueue:dbUrl of stack {stack!r}: {value}")


def _local_stack_db_url() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "dev", "status", "-o", "env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=project_root(),
        stdin=subprocess.DEVNULL,
    )
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    if result.returncode != 0 or not env.get("DB_URL"):
        raise ConsoleError(
            "the stack targets the local stack, which is not running: "
            f"{_first_line(result.stderr)} (start it with `supaqueue dev up`)"
        )
    return env["DB_URL"]


def resolve_db_url(db_url: str | None, stack: str | None) -> str:
    if db_url and stack:
        raise BadInputError("give either --db-url or --stack, not both")
    if db_url:
        return db_url
    if stack:
        return stack_db_url(stack)
    env_url = os.environ.get("DB_URL")
    if env_url:
        return env_url
    raise ConsoleError(
        "no database given: pass --stack dev|prod (reads the stack's dbUrl secret), "
        "--db-url, or set DB_URL"
    )
