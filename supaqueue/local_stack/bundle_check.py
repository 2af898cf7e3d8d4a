"""The deploy's bundle step, as the hosted Management API does it before a function goes live.

Supabase bundles an uploaded function first and refuses code that does not bundle with HTTP 400
`{"message": "Failed to bundle the function (reason: …)"}` (a syntax error, a module that is not
there); the function never replaces the live one. The stand-in does the same with the real Deno:
`deno info --json` builds the module graph (every module parsed, every import resolved) without
type-checking, as the bundler does, so a function that would only fail when called (503
BOOT_ERROR) is refused at deploy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path

from supaqueue.local_stack.edge_runtime import BootError, config_flag, deno_binary, deno_env

log = logging.getLogger("supaqueue.bundle_check")
CHECK_TIMEOUT_S = 120.0  # a cold DENO_DIR resolves npm: packages first


async def bundle_problem(
    files: dict[str, bytes], entrypoint: str, import_map: str | None, work_dir: Path
) -> str | None:
    """Why the upload does not bundle (the real API's wording), or None when it does. A check
    that cannot run (no Deno, too slow) refuses nothing: the function then fails as before,
    when called."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="bundle-") as tmp:
        source = Path(tmp) / "source"
        for name, data in files.items():
            path = source / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        try:
            cmd = [deno_binary(), "info", "--json", "--no-lock"]
        except BootError as exc:  # no Deno binary
            log.warning("bundle check skipped: %s", exc)
            return None
        cmd += [config_flag(source, entrypoint, import_map), str(source / entrypoint)]
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=source,
            env=deno_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), CHECK_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("bundle check skipped: deno info took over %.0f s", CHECK_TIMEOUT_S)
            return None
        where = source.as_uri()
        if proc.returncode != 0:
            return _reason(err.decode(errors="replace"), where)
        try:
            modules = json.loads(out)["modules"]
        except (ValueError, KeyError, TypeError):
            return None
        for module in modules:
            if isinstance(module, dict) and module.get("error"):
                return _reason(str(module["error"]), where)
    return None


def _reason(text: str, where: str) -> str:
    """`Failed to bundle the function (reason: <first line> at <location>)`, with the
    upload's paths as `file:///source/...` (the temporary folder means nothing to a user)."""
    lines = [line.strip() for line in text.replace(where, "file:///source").splitlines()]
    lines = [line for line in lines if line]
    first = lines[0] if lines else "deno could not build the module graph"
    first = first.removeprefix("error: ")
    at = next((line for line in reversed(lines) if line.startswith("at ")), None)
    reason = f"{first} {at}" if at and at not in first else first
    return f"Failed to bundle the function (reason: {reason})"
