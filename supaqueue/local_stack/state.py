"""The local stack's state folder and its `stack.json` (ports and generated credentials).

Layout of the folder: `stack.json` (0600), `pgdata/` (the cluster), `functions/<slug>/` (deployed
code), `secrets.json` (Edge Function secrets, 0600), `logs/`, `daemon.pid`.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from supaqueue.local_stack import jwt_keys

STACK_FILE = "stack.json"
# The state folder's name inside a Pulumi project (this repository's own: `make up`).
PROJECT_FOLDER = ".local-stack"
DIR_ENV = "SUPAQUEUE_LOCAL_STACK_DIR"


class StateError(Exception):
    """The state folder is unreadable or inconsistent; the message says which file and why."""


def default_dir(cwd: Path | None = None) -> Path:
    """Where `supaqueue dev` keeps the stack when no `--dir` is given: `$SUPAQUEUE_LOCAL_STACK_DIR`;
    else `.local-stack/` in the Pulumi project around `cwd` (the nearest folder from it upwards
    holding a `Pulumi.yaml`), so each project has its own stack; else, outside any project,
    `${XDG_STATE_HOME:-~/.local/state}/supaqueue/local-stack`."""
    explicit = os.environ.get(DIR_ENV)
    if explicit:
        return Path(explicit)
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder / PROJECT_FOLDER
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "supaqueue" / "local-stack"


@dataclass
class StackState:
    """Everything `supaqueue dev` keeps between runs; ports stay fixed once chosen."""

    dir: Path
    project_ref: str
    db_password: str
    jwt_secret: str
    anon_key: str
    service_role_key: str
    access_token: str
    secret_key: str
    publishable_key: str
    postgres_port: int = 0
    api_port: int = 0
    # The cluster superuser's (`supabase_admin`) password. Empty in a stack made before the hosted
    # role model, whose `postgres` is still the superuser (see lifecycle.cluster_for).
    admin_password: str = ""

    # --- derived paths -------------------------------------------------------------------
    @property
    def stack_file(self) -> Path:
        return self.dir / STACK_FILE

    @property
    def pgdata(self) -> Path:
        return self.dir / "pgdata"

    @property
    def functions_dir(self) -> Path:
        return self.dir / "functions"

    @property
    def secrets_file(self) -> Path:
        return self.dir / "secrets.json"

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def pid_file(self) -> Path:
        return self.dir / "daemon.pid"

    # --- derived URLs --------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def db_url(self) -> str:
        return f"postgresql://postgres:{self.db_password}@127.0.0.1:{self.postgres_port}/postgres"

    @property
    def admin_db_url(self) -> str:
        """The cluster superuser's URL: the stack's own processes (the pg_net sender) only."""
        if not self.admin_password:  # a stack made before the hosted role model
            return self.db_url
        return (
            f"postgresql://supabase_admin:{self.admin_password}@127.0.0.1:{self.postgres_port}"
            "/postgres"
        )

    def env(self) -> dict[str, str]:
        """What `supaqueue dev status -o env` prints (Supabase CLI names where they apply)."""
        return {
            "API_URL": self.api_url,
            "DB_URL": self.db_url,
            "ANON_KEY": self.anon_key,
            "SERVICE_ROLE_KEY": self.service_role_key,
            "JWT_SECRET": self.jwt_secret,
            "PROJECT_REF": self.project_ref,
            "MANAGEMENT_API_URL": self.api_url,
            "ACCESS_TOKEN": self.access_token,
            "FUNCTIONS_URL": f"{self.api_url}/functions/v1",
            # The Data API stand-in (RPC only: local_stack/rest_api.py); supabase-js takes API_URL.
            "REST_URL": f"{self.api_url}/rest/v1",
        }

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        ignore = self.dir / ".gitignore"
        if not ignore.exists():  # credentials and a database: never part of the user's repo
            ignore.write_text("# made by supaqueue dev: nothing here belongs in git\n*\n")
        data = {k: v for k, v in asdict(self).items() if k != "dir"}
        write_private(self.stack_file, json.dumps(data, indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically (credentials live in it)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def generate(state_dir: Path) -> StackState:
    """Fresh credentials for a new stack (ports are chosen later, at the first `up`)."""
    ref = jwt_keys.new_project_ref()
    jwt_secret = jwt_keys.new_jwt_secret()
    return StackState(
        dir=state_dir,
        project_ref=ref,
        db_password=secrets.token_hex(16),
        jwt_secret=jwt_secret,
        anon_key=jwt_keys.role_key(jwt_secret, "anon", ref),
        service_role_key=jwt_keys.role_key(jwt_secret, "service_role", ref),
        access_token=jwt_keys.new_access_token(),
        secret_key=jwt_keys.new_secret_key(),
        publishable_key=jwt_keys.new_publishable_key(),
        admin_password=secrets.token_hex(16),
    )


def load(state_dir: Path) -> StackState | None:
    """The saved state, or None when the folder holds no stack yet."""
    path = state_dir / STACK_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        known = {f.name for f in fields(StackState)} - {"dir"}
        return StackState(dir=state_dir, **{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError) as exc:
        raise StateError(f"{path} is not a valid stack file: {exc}") from exc


def load_or_create(state_dir: Path) -> StackState:
    existing = load(state_dir)
    if existing is not None:
        return existing
    fresh = generate(state_dir)
    fresh.save()
    return fresh
