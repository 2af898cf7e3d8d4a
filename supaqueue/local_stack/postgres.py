"""The local PostgreSQL 15 + pg_cron cluster: init, start, stop, bootstrap like Supabase."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from supaqueue.local_stack.extensions import ExtensionPlan
from supaqueue.local_stack.extensions import detect as detect_extensions
from supaqueue.local_stack.standins import install_standins, standin_sql

PG_BIN = Path(os.environ.get("SUPAQUEUE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"
# The role model of hosted Supabase (docs/architecture/roles.md, "Roles"): the cluster's
# superuser is ADMIN_ROLE, which sets everything up; `postgres`, the role users and supaqueue
# connect as, is not a superuser. Roles and grants are in local_stack/sql/roles.sql and
# hosted_grants.sql.
ADMIN_ROLE = "supabase_admin"
USER_ROLE = "postgres"
LOG_TAIL_LINES = 30


class ClusterError(RuntimeError):
    """A cluster operation failed; the message says what and includes the server log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something listens on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Postgres does: connections of a previous run lingering in TIME_WAIT don't count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def _as_root() -> bool:
    return os.geteuid() == 0


def _chown_to_pg(path: Path) -> None:
    """Give `path` to the postgres OS user when we are root (initdb and postgres refuse root)."""
    if _as_root():
        pw = pwd.getpwnam(PG_OS_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


@dataclass
class Cluster:
    """One PostgreSQL cluster listening on 127.0.0.1:`port` only.

    `vault_key_file` holds the Vault stand-in's encryption key. It lives outside `data_dir` (by
    default next to it, in the stack's state dir); only its path reaches the server, as the custom
    setting `vault.key_file` in `supaqueue.conf`, so neither the data dir nor a dump holds the key.
    `fast=True` turns fsync off: for throwaway test clusters only, never the user's stack.

    `admin_user` (default `supabase_admin`) is the superuser initdb creates, with `admin_password`
    (generated when not given); `password` is the non-superuser `postgres` role's. A stack made
    before the hosted role model passes `admin_user="postgres"`: then `postgres` stays superuser.
    """

    data_dir: Path
    port: int
    password: str
    log_file: Path | None = None
    socket_dir: Path | None = None
    vault_key_file: Path | None = None
    fast: bool = False
    start_timeout: float = 30.0
    admin_password: str = ""
    admin_user: str = ADMIN_ROLE
    # Which real extensions to preload and use (default: what this machine has installed).
    extensions: ExtensionPlan | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if self.admin_user == USER_ROLE:
            self.admin_password = self.password
        elif not self.admin_password:
            self.admin_password = generate_password()
        if self.log_file is None:
            self.log_file = self.data_dir.parent / "logs" / "postgres.log"
        if self.vault_key_file is None:
            self.vault_key_file = self.data_dir.parent / "vault.key"
        if self.extensions is None:
            self.extensions = detect_extensions(PG_BIN)

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, prefix: str = "supaqueue-pg-", fast: bool = True) -> Iterator[Cluster]:
        """A throwaway cluster (fsync off unless `fast=False`) in a new temp dir, its `postgres`
        database bootstrapped; stopped and deleted on exit. For tests and tooling only."""
        # mkdtemp under /tmp (not pytest's 0700 basetemp), 0755: the postgres OS user must reach it.
        root = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(root, 0o755)
        cluster = cls(
            data_dir=root / "pgdata", port=free_port(), password=generate_password(), fast=fast
        )
        try:
            cluster.init()
            cluster.start()
            cluster.bootstrap("postgres")
            yield cluster
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)

    # ---- paths and helpers -------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        assert self.log_file is not None
        return Path(self.log_file)

    @property
    def key_path(self) -> Path:
        assert self.vault_key_file is not None
        return Path(self.vault_key_file)

    @property
    def getkey_script(self) -> Path:
        """For the real supabase_vault: prints the key file (64 hex characters), next to it."""
        return self.key_path.with_name("vault-getkey")

    @property
    def plan(self) -> ExtensionPlan:
        assert self.extensions is not None
        return self.extensions

    @property
    def hosted_roles(self) -> bool:
        """True when `postgres` is demoted as on hosted Supabase (False: a pre-role-model stack)."""
        return self.admin_user != USER_ROLE

    def dsn(self, dbname: str = "postgres", user: str = USER_ROLE) -> str:
        """A DSN as `user`: `postgres` (default) or the admin role (setup only)."""
        if user not in (USER_ROLE, self.admin_user):
            raise ValueError(f"no password known for role {user}")
        secret = self.admin_password if user == self.admin_user else self.password
        # Quoted so a chosen password with @ / : still parses; generated ones need no quoting.
        pw = quote(secret, safe="")
        return f"postgresql://{quote(user, safe='')}:{pw}@127.0.0.1:{self.port}/{quote(dbname)}"

    def connect(
        self, dbname: str = "postgres", autocommit: bool = True, user: str = USER_ROLE
    ) -> psycopg.Connection:
        return psycopg.connect(self.dsn(dbname, user), autocommit=autocommit, connect_timeout=10)

    def admin_connect(self, dbname: str = "postgres") -> psycopg.Connection:
        """The superuser's connection: for setting the cluster up, never for what users do."""
        return self.connect(dbname, user=self.admin_user)

    def _run_pg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Postgres binary as the postgres OS user when we are root."""
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        pw = pwd.getpwnam(PG_OS_USER) if _as_root() else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=env,
                cwd="/",
                check=False,
                timeout=self.start_timeout + 30,
                user=pw.pw_uid if pw else None,
                group=pw.pw_gid if pw else None,
                extra_groups=[] if pw else None,
            )
        except FileNotFoundError as exc:
            raise ClusterError(f"{cmd[0]} not found: install PostgreSQL 15 ({exc})") from exc
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(
                f"{args[0]} did not finish within {exc.timeout:.0f} s" + self._log_tail_text()
            ) from exc
        if check and proc.returncode != 0:
            raise ClusterError(
                f"{args[0]} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
                + self._log_tail_text()
            )
        return proc

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _log_tail_text(self) -> str:
        tail = self.log_tail()
        return f"\n--- server log tail ({self.log_path}) ---\n{tail}" if tail else ""

    # ---- lifecycle ---------------------------------------------------------------------------

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb if the data dir is empty; write our settings and the Vault key (once)."""
        self._ensure_key_file()
        if not self.is_initialized():
            self._initdb()
        self._write_conf()

    def _ensure_key_file(self) -> None:
        key = self.key_path
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        # The server reads it with pg_read_file as the postgres OS user.
        _chown_to_pg(key)
        os.chmod(key, 0o600)
        self._check_reachable(key, "-r")
        if "supabase_vault" in self.plan.installed:
            script = self.getkey_script
            script.write_text(f"#!/bin/sh\nexec cat {shlex.quote(str(key))}\n")
            _chown_to_pg(script)
            os.chmod(script, 0o700)

    def _initdb(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ClusterError(f"{self.data_dir} exists, is not empty and holds no cluster")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        _chown_to_pg(self.data_dir)
        self._check_reachable(self.data_dir)
        fd, pwfile_name = tempfile.mkstemp(prefix="supaqueue-pw-")
        pwfile = Path(pwfile_name)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.admin_password + "\n")
            _chown_to_pg(pwfile)
            self._run_pg(
                "initdb",
                "-D", str(self.data_dir),
                "-U", self.admin_user,
                "--pwfile", str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                *(["--no-sync"] if self.fast else []),
            )  # fmt: skip
        except ClusterError:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        self._write_hba()
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as f:
            f.write("\n# supaqueue local stack settings\ninclude_if_exists = 'supaqueue.conf'\n")

    def _check_reachable(self, path: Path, test_flag: str = "-w") -> None:
        """Fail clearly when the postgres OS user cannot reach `path` (e.g. a 0700 parent)."""
        if not _as_root():
            return
        pw = pwd.getpwnam(PG_OS_USER)
        probe = subprocess.run(
            ["test", test_flag, str(path)],
            user=pw.pw_uid,
            group=pw.pw_gid,
            extra_groups=[],
            check=False,
        )
        if probe.returncode != 0:
            raise ClusterError(
                f"the {PG_OS_USER} OS user cannot reach {path}: make every parent directory"
                " traversable (chmod o+x) or choose another state folder"
            )

    def _write_hba(self) -> None:
        # Password auth on 127.0.0.1 only: no ::1, no trust, no peer.
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# supaqueue local stack: scram on 127.0.0.1 only\n"
            "local   all  all                scram-sha-256\n"
            "host    all  all  127.0.0.1/32  scram-sha-256\n"
        )
        _chown_to_pg(hba)
        os.chmod(hba, 0o600)

    def _write_conf(self) -> None:
        sockets = str(self.socket_dir) if self.socket_dir else ""
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = {_conf_str(sockets)}",
            *(
                f"{name} = {_conf_str(value)}"
                for name, value in self.plan.settings(self.getkey_script).items()
            ),
            "cron.database_name = 'postgres'",
            "cron.use_background_workers = on",
            # pg_cron takes one worker per running job (default cap 32) plus its launcher.
            "max_worker_processes = 48",
            "cron.max_running_jobs = 16",
            "max_connections = 200",
            "password_encryption = 'scram-sha-256'",
            "timezone = 'UTC'",
            "log_timezone = 'UTC'",
            # The path only: the key itself stays outside the data dir (see vault.sql).
            f"vault.key_file = {_conf_str(str(self.key_path))}",
        ]
        if self.fast:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        path = self.data_dir / "supaqueue.conf"
        path.write_text("\n".join(lines) + "\n")
        _chown_to_pg(path)
        if self.socket_dir:
            Path(self.socket_dir).mkdir(parents=True, exist_ok=True)
            _chown_to_pg(Path(self.socket_dir))

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        proc = self._run_pg("pg_ctl", "status", "-D", str(self.data_dir), check=False)
        return proc.returncode == 0

    def start(self) -> None:
        """Start and wait until it accepts connections; on failure leave nothing running."""
        if not self.is_initialized():
            raise ClusterError(f"no cluster in {self.data_dir}: call init() first")
        if self.is_running():
            return
        if port_in_use(self.port):
            raise ClusterError(
                f"cannot start Postgres: port {self.port} on 127.0.0.1 is already in use"
            )
        self._write_conf()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        _chown_to_pg(self.log_path)
        proc = self._run_pg(
            "pg_ctl", "start", "-w",
            "-t", str(int(self.start_timeout)),
            "-D", str(self.data_dir),
            "-l", str(self.log_path),
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            self._kill_leftover()
            raise ClusterError(
                f"Postgres failed to start on 127.0.0.1:{self.port}: "
                f"{(proc.stderr or proc.stdout).strip()}" + self._log_tail_text()
            )
        self._wait_connectable()

    def _wait_connectable(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with self.admin_connect() as conn:
                    conn.execute("select 1")
                return
            except psycopg.Error as exc:
                last = exc
                time.sleep(0.1)
        self._kill_leftover()
        raise ClusterError(
            f"Postgres started but refused connections: {last}" + self._log_tail_text()
        )

    def _kill_leftover(self) -> None:
        """After a failed start, stop whatever half-started postmaster remains."""
        if self._postmaster_pid() is not None:
            self._run_pg("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w",
                         check=False)  # fmt: skip

    def stop(self) -> None:
        """Stop the server (fast shutdown) and wait until its processes are gone."""
        if not self.is_initialized():
            return
        pid = self._postmaster_pid()
        if pid is None and not self.is_running():
            return
        proc = self._run_pg("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w",
                            check=False)  # fmt: skip
        if proc.returncode != 0 and self.is_running():
            self._run_pg("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w",
                         check=False)  # fmt: skip
        if pid is not None:
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                raise ClusterError(f"Postgres (pid {pid}) did not stop" + self._log_tail_text())

    def destroy(self) -> None:
        """Stop and delete the data dir (the key file stays: it belongs to the state dir)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # ---- bootstrap ---------------------------------------------------------------------------

    def bootstrap(self, dbname: str = "postgres") -> None:
        """Make `dbname` look like a Supabase database, as the admin role. Idempotent.

        Roles are cluster-wide; pg_cron can only live in `cron.database_name` (postgres), so other
        databases (e.g. test templates) get pgcrypto and the stand-ins but no `cron` schema.
        """
        with self.admin_connect(dbname) as conn:
            ensure_roles(conn, self.password if self.hosted_roles else None)
            conn.execute("create schema if not exists extensions")
            conn.execute("create extension if not exists pgcrypto with schema extensions")
            if dbname == "postgres":
                conn.execute("create extension if not exists pg_cron")
            install_standins(conn)
            if self.hosted_roles:
                conn.execute(standin_sql("hosted_grants.sql"))  # type: ignore[arg-type]


def ensure_roles(conn: psycopg.Connection, user_password: str | None) -> None:
    """The API roles; with `user_password`, also `postgres` as hosted Supabase has it (not a
    superuser). Run as the admin role. The password is sent as a SCRAM verifier, never in clear."""
    conn.execute(standin_sql("roles.sql"))  # type: ignore[arg-type]
    if user_password is not None:
        conn.execute(standin_sql("hosted_roles.sql"))  # type: ignore[arg-type]
        verifier = conn.pgconn.encrypt_password(
            user_password.encode(), USER_ROLE.encode(), b"scram-sha-256"
        )
        conn.execute(
            sql.SQL("alter role {} password {}").format(
                sql.Identifier(USER_ROLE), sql.Literal(verifier.decode())
            )
        )
    conn.execute('alter role postgres set search_path = "$user", public, extensions')


def _conf_str(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True
