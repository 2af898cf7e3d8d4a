"""Which database the operator commands talk to: `--db-url`, else `--stack NAME`, else `DB_URL`.

`--stack` reads the `supaqueue:dbUrl` secret the stack already holds, through the Pulumi CLI
(scripts/pulumi-stack.sh in read-only mode: one `pulumi config` call, never creating a stack),
so nobody pastes a password. A stack with `target: local` and no dbUrl takes its database from
the local stack, as the Pulumi program does (`supaqueue dev status -o env`).

What that resolves to is remembered (`StackCache`), because asking the Pulumi CLI takes seconds:
- keyed by everything the answer depends on: the stack's name, the project folder, the bytes of
  `Pulumi.yaml` and `Pulumi.<stack>.yaml` (a `config set` changes the key), the backend URL and a
  hash of the passphrase; a stack whose config is not all in its file (`environment:` imports) is
  never remembered;
- the URL is never written in plain text: each entry is encrypted (Fernet: AES + HMAC) with a key
  kept apart from the entries, in `$XDG_RUNTIME_DIR` (memory, this login only) where there is one,
  both readable by this user only; entries expire after `CACHE_TTL_SECONDS`;
- a remembered URL that no longer connects (the local stack was recreated, the password rotated
  outside Pulumi) is forgotten and resolved again, once.
`SUPAQUEUE_STACK_CACHE=0` turns it off (so does a missing `console` extra);
`rm -r ~/.cache/supaqueue/stack-targets` empties it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from supaqueue.console.api import BadInputError, ConsoleError, connect
from supaqueue.extras import absent

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

PULUMI_TIMEOUT_SECONDS = 120
CACHE_TTL_SECONDS = 12 * 3600


def project_root() -> Path:
    return Path(os.environ.get("SUPAQUEUE_ROOT") or Path(__file__).resolve().parents[2])


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no output"


def _pulumi(stack: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = project_root() / "scripts" / "pulumi-stack.sh"
    if not script.is_file():
        raise ConsoleError(
            f"--stack needs the supaqueue project checkout ({script} is missing); use --db-url"
        )
    try:
        return subprocess.run(
            [str(script), stack, *args],
            capture_output=True,
            text=True,
            timeout=PULUMI_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "SUPAQUEUE_STACK_READ_ONLY": "1"},
        )
    except subprocess.TimeoutExpired:
        raise ConsoleError(f"pulumi did not answer within {PULUMI_TIMEOUT_SECONDS} s") from None


def _stack_names() -> list[str]:
    listed = _pulumi("", "stack", "ls", "--json")
    try:
        return sorted(str(s["name"]) for s in json.loads(listed.stdout or "[]"))
    except (ValueError, TypeError, KeyError):
        return []


def _stack_config(stack: str) -> dict[str, str]:
    """Every config value of the stack (secrets decrypted in memory only), in one pulumi call."""
    result = _pulumi(stack, "config", "--json", "--show-secrets")
    if result.returncode != 0:
        problem = _first_line(result.stderr or result.stdout)
        if "no stack named" in problem:
            known = ", ".join(_stack_names()) or "none"
            raise ConsoleError(
                f"there is no Pulumi stack {stack!r} in this project (stacks: {known}); "
                "check --stack, or PULUMI_BACKEND_URL if the stacks live elsewhere"
            )
        # never echo a value: only pulumi's own first line, which names the key or the problem
        raise ConsoleError(f"cannot read the config of stack {stack!r}: {problem}")
    try:
        values = json.loads(result.stdout)
        return {str(k): str(v.get("value", "")) for k, v in values.items() if isinstance(v, dict)}
    except (ValueError, AttributeError):
        raise ConsoleError(f"pulumi printed no config for stack {stack!r}") from None


def _resolve_stack(stack: str) -> str:
    config = _stack_config(stack)
    db_url = config.get("supaqueue:dbUrl")
    if db_url:
        return db_url
    if config.get("supaqueue:target") == "local":
        return _local_stack_db_url()
    raise ConsoleError(
        f"stack {stack!r} has no supaqueue:dbUrl: set it with "
        f"`scripts/pulumi-stack.sh {stack} config set --secret supaqueue:dbUrl <URL>`"
    )


def _local_stack_db_url() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "supaqueue.cli", "dev", "status", "-o", "env"],
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


def _cache_dir() -> Path:
    if os.environ.get("SUPAQUEUE_STACK_CACHE_DIR"):  # tests: a folder of their own
        return Path(os.environ["SUPAQUEUE_STACK_CACHE_DIR"])
    # the same folder as toolchain/env.sh's SUPAQUEUE_CACHE when it is not set
    base = os.environ.get("SUPAQUEUE_CACHE") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "supaqueue"
    )
    return Path(base) / "stack-targets"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


@dataclass
class StackCache:
    """One stack's remembered database URL (see the module's doc)."""

    entry: Path
    key_file: Path

    @classmethod
    def of(cls, stack: str) -> StackCache | None:
        import yaml  # here, not at the top: `--db-url` commands start faster without it

        if os.environ.get("SUPAQUEUE_STACK_CACHE", "1") == "0":
            return None
        if absent("cryptography"):  # the `console` extra is not installed: ask Pulumi each time
            return None
        root = project_root().resolve()
        stack_file = root / f"Pulumi.{stack}.yaml"
        project_file = root / "Pulumi.yaml"
        if not stack_file.is_file() or not project_file.is_file():
            return None  # config held elsewhere: always ask Pulumi
        try:
            stack_bytes = stack_file.read_bytes()
            loaded = yaml.safe_load(stack_bytes) or {}
        except (OSError, yaml.YAMLError):
            return None
        if not isinstance(loaded, dict) or "environment" in loaded:
            return None  # imports an environment: its values can change without this file
        digest = hashlib.sha256()
        for part in (
            stack.encode(),
            str(root).encode(),
            project_file.read_bytes(),
            stack_bytes,
            os.environ.get("PULUMI_BACKEND_URL", "").encode(),
            hashlib.sha256(os.environ.get("PULUMI_CONFIG_PASSPHRASE", "").encode()).digest(),
            os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE", "").encode(),
        ):
            digest.update(hashlib.sha256(part).digest())
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        key_dir = (
            Path(runtime) / "supaqueue"
            if runtime
            and Path(runtime).is_dir()
            and not os.environ.get("SUPAQUEUE_STACK_CACHE_DIR")
            else _cache_dir() / "key"
        )
        return cls(_cache_dir() / f"{digest.hexdigest()[:40]}.fernet", key_dir / "stack-cache.key")

    def _fernet(self, create: bool) -> Fernet | None:
        from cryptography.fernet import Fernet

        try:
            return Fernet(self.key_file.read_bytes())
        except (OSError, ValueError):
            if not create:
                return None
        key = Fernet.generate_key()
        _write_private(_private_dir(self.key_file.parent) / self.key_file.name, key)
        return Fernet(key)

    def get(self) -> str | None:
        from cryptography.fernet import InvalidToken

        fernet = self._fernet(create=False)
        if fernet is None or not self.entry.is_file():
            return None
        try:
            return fernet.decrypt(self.entry.read_bytes(), ttl=CACHE_TTL_SECONDS).decode()
        except (InvalidToken, OSError, UnicodeDecodeError):
            self.forget()
            return None

    def put(self, db_url: str) -> None:
        try:
            fernet = self._fernet(create=True)
            assert fernet is not None
            _write_private(
                _private_dir(self.entry.parent) / self.entry.name, fernet.encrypt(db_url.encode())
            )
        except OSError:
            pass  # remembering is an optimisation only

    def forget(self) -> None:
        try:
            self.entry.unlink(missing_ok=True)
        except OSError:
            pass


def stack_db_url(stack: str, use_cache: bool = True) -> str:
    cache = StackCache.of(stack) if use_cache else None
    if cache is not None:
        remembered = cache.get()
        if remembered:
            return remembered
    db_url = _resolve_stack(stack)
    cache = cache or StackCache.of(stack)
    if cache is not None:
        cache.put(db_url)
    return db_url


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


def connect_target(db_url: str | None, stack: str | None) -> psycopg.Connection:
    """A connection to the chosen database; a remembered `--stack` URL that no longer connects
    is forgotten and the stack asked again (once)."""
    url = resolve_db_url(db_url, stack)
    try:
        return connect(url)
    except ConsoleError:
        if not stack or db_url:
            raise
        cache = StackCache.of(stack)
        if cache is None:
            raise
        cache.forget()
        fresh = stack_db_url(stack, use_cache=False)
        if fresh == url:
            raise
        return connect(fresh)


def verified_db_url(db_url: str | None, stack: str | None) -> str:
    """As `resolve_db_url`, checked by connecting (for the long-running `ui` and `metrics`)."""
    if stack and not db_url:
        connect_target(db_url, stack).close()
    return resolve_db_url(db_url, stack)
