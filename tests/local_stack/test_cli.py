"""`supaqueue dev` end to end: the real CLI, real Postgres, the real daemon, each test in its
own state folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest

from harness import procs
from supaqueue.local_stack.postgres import port_in_use
from tests.conftest import LocalStack, supaqueue_dev

ENV_KEYS = ["API_URL", "DB_URL", "ANON_KEY", "SERVICE_ROLE_KEY", "JWT_SECRET", "PROJECT_REF",
            "MANAGEMENT_API_URL", "ACCESS_TOKEN", "FUNCTIONS_URL", "REST_URL"]  # fmt: skip


@pytest.fixture
def state_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="supaqueue-test-cli-"))
    os.chmod(root, 0o755)  # the postgres OS user must reach pgdata inside it
    try:
        yield root / "stack"
    finally:
        supaqueue_dev("destroy", "--dir", str(root / "stack"))
        shutil.rmtree(root, ignore_errors=True)


def ok(*args: str) -> str:
    result = supaqueue_dev(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def status_env(state_dir: Path) -> dict[str, str]:
    out = ok("status", "-o", "env", "--dir", str(state_dir))
    return dict(line.split("=", 1) for line in out.splitlines())


def stack_pids(state_dir: Path) -> list[int]:
    """Every process whose command line or cwd mentions this state folder."""
    return procs.mentioning(state_dir)


def one_clear_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_up_status_down(state_dir: Path) -> None:
    assert "started" in ok("up", "--dir", str(state_dir))
    env = status_env(state_dir)
    assert list(env) == ENV_KEYS
    api = env["API_URL"]
    assert api.startswith("http://127.0.0.1:") and env["MANAGEMENT_API_URL"] == api
    assert env["FUNCTIONS_URL"] == f"{api}/functions/v1"
    assert env["REST_URL"] == f"{api}/rest/v1"
    assert env["DB_URL"].startswith("postgresql://postgres:") and "@127.0.0.1:" in env["DB_URL"]
    assert len(env["PROJECT_REF"]) == 20 and env["PROJECT_REF"].isalpha()
    assert env["PROJECT_REF"].islower()
    assert env["ACCESS_TOKEN"].startswith("sbp_") and len(env["ACCESS_TOKEN"]) == 44
    for key, role in (("ANON_KEY", "anon"), ("SERVICE_ROLE_KEY", "service_role")):
        claims = jwt.decode(env[key], env["JWT_SECRET"], algorithms=["HS256"])
        assert claims["role"] == role and claims["iss"] == "supabase-demo"
        assert claims["exp"] > time.time() + 5 * 365 * 24 * 3600
    stack_file = state_dir / "stack.json"
    assert stat.S_IMODE(stack_file.stat().st_mode) == 0o600
    saved = json.loads(stack_file.read_text())
    assert saved["secret_key"].startswith("sb_secret_")
    assert saved["publishable_key"].startswith("sb_publishable_")

    assert httpx.get(f"{api}/_local/health").json()["status"] == "ok"
    with psycopg.connect(env["DB_URL"]) as conn:
        roles = {r[0] for r in conn.execute("select rolname from pg_roles").fetchall()}
    assert {"postgres", "service_role", "anon", "authenticated"} <= roles
    assert "running" in ok("status", "--dir", str(state_dir))
    assert stack_pids(state_dir), "no process found for a running stack"

    assert "stopped" in ok("down", "--dir", str(state_dir))
    assert stack_pids(state_dir) == []
    ports = [
        int(env["API_URL"].rsplit(":", 1)[1]),
        int(env["DB_URL"].rsplit(":", 1)[1].split("/")[0]),
    ]
    assert not any(port_in_use(p) for p in ports)
    stopped = supaqueue_dev("status", "--dir", str(state_dir))
    assert stopped.returncode == 1 and "not running" in one_clear_line(stopped.stderr)


def test_up_twice_is_harmless_and_warm_up_reuses_the_cluster(state_dir: Path) -> None:
    ok("up", "--dir", str(state_dir))
    first = status_env(state_dir)
    pid = (state_dir / "daemon.pid").read_text()
    assert "already running" in ok("up", "--dir", str(state_dir))
    assert status_env(state_dir) == first
    assert (state_dir / "daemon.pid").read_text() == pid

    ok("down", "--dir", str(state_dir))
    assert "not running" in ok("down", "--dir", str(state_dir))
    cluster_made = _identity(state_dir / "pgdata" / "PG_VERSION")
    ok("up", "--dir", str(state_dir))
    # warm: the cluster is reused, not made again (how fast: benchmarks/dev_up_bench.py)
    assert _identity(state_dir / "pgdata" / "PG_VERSION") == cluster_made
    assert status_env(state_dir) == first, "ports or credentials changed across down/up"


def _identity(path: Path) -> tuple[int, int]:
    """Which file this is and when it was written: initdb again would change both."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_functions_and_secrets_come_back_after_down_up(state_dir: Path) -> None:
    ok("up", "--dir", str(state_dir))
    stack = LocalStack(state_dir, status_env(state_dir))
    code = "Deno.serve(() => new Response(Deno.env.get('KEPT') ?? 'none'));\n"
    stack.deploy("kept", {"index.ts": code}, verify_jwt=False)
    secrets_url = f"{stack.env['API_URL']}/v1/projects/{stack.env['PROJECT_REF']}/secrets"
    auth = {"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"}
    assert (
        httpx.post(secrets_url, json=[{"name": "KEPT", "value": "yes"}], headers=auth).status_code
        == 201
    )
    assert httpx.get(f"{stack.env['FUNCTIONS_URL']}/kept").text == "yes"
    ok("down", "--dir", str(state_dir))
    ok("up", "--dir", str(state_dir))
    assert httpx.get(f"{stack.env['FUNCTIONS_URL']}/kept", timeout=30).text == "yes"


def _hold(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


@pytest.mark.parametrize("which", ["api_port", "postgres_port"])
def test_a_taken_port_is_a_clear_error_and_nothing_stays_up(state_dir: Path, which: str) -> None:
    ok("up", "--dir", str(state_dir))
    ok("down", "--dir", str(state_dir))
    port = json.loads((state_dir / "stack.json").read_text())[which]
    holder = _hold(port)
    try:
        failed = supaqueue_dev("up", "--dir", str(state_dir))
        assert failed.returncode == 1
        line = one_clear_line(failed.stderr)
        assert f"port {port}" in line and "already in use" in line
        assert stack_pids(state_dir) == [], "a failed `up` left processes behind"
    finally:
        holder.close()
    assert "started" in ok("up", "--dir", str(state_dir))


def test_bad_state_file_is_a_clear_error(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    (state_dir / "stack.json").write_text("{not json")
    for command in ("up", "down", "status"):
        failed = supaqueue_dev(command, "--dir", str(state_dir))
        assert failed.returncode == 1
        assert "stack.json" in one_clear_line(failed.stderr)


def test_destroy_removes_the_data_and_refuses_foreign_folders(state_dir: Path) -> None:
    ok("up", "--dir", str(state_dir))
    assert "removed" in ok("destroy", "--dir", str(state_dir))
    assert not state_dir.exists()
    assert stack_pids(state_dir) == []
    foreign = state_dir.parent / "not-a-stack"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    failed = supaqueue_dev("destroy", "--dir", str(foreign))
    assert failed.returncode == 1 and "not removing" in one_clear_line(failed.stderr)
    assert (foreign / "precious.txt").exists()


def test_down_lets_wait_until_work_finish(state_dir: Path) -> None:
    """`down` stops functions gracefully: background work already accepted still completes."""
    ok("up", "--dir", str(state_dir))
    stack = LocalStack(state_dir, status_env(state_dir))
    marker = state_dir.parent / "finished"
    code = f"""
Deno.serve(() => {{
  EdgeRuntime.waitUntil(new Promise((resolve) => setTimeout(resolve, 1500))
    .then(() => Deno.writeTextFile({json.dumps(str(marker))}, "done")));
  return new Response("accepted", {{ status: 202 }});
}});
"""
    stack.deploy("slow-bg", {"index.ts": code}, verify_jwt=False)
    assert httpx.get(f"{stack.env['FUNCTIONS_URL']}/slow-bg", timeout=30).status_code == 202
    assert not marker.exists()
    ok("down", "--dir", str(state_dir))
    assert marker.read_text() == "done"
    assert stack_pids(state_dir) == []


def test_a_folder_postgres_cannot_enter_is_a_clear_error(state_dir: Path) -> None:
    os.chmod(state_dir.parent, 0o700)
    try:
        failed = supaqueue_dev("up", "--dir", str(state_dir))
    finally:
        os.chmod(state_dir.parent, 0o755)
    assert failed.returncode == 1
    assert "postgres OS user cannot enter" in one_clear_line(failed.stderr)
    assert stack_pids(state_dir) == []


def test_down_after_a_killed_daemon_leaves_nothing_behind(state_dir: Path) -> None:
    ok("up", "--dir", str(state_dir))
    stack = LocalStack(state_dir, status_env(state_dir))
    stack.deploy("orphan", {"index.ts": "Deno.serve(() => new Response('x'));\n"}, verify_jwt=False)
    assert httpx.get(f"{stack.env['FUNCTIONS_URL']}/orphan", timeout=30).text == "x"
    os.kill(int((state_dir / "daemon.pid").read_text()), signal.SIGKILL)
    time.sleep(0.2)
    assert stack_pids(state_dir), "the function process should have outlived its daemon"
    ok("down", "--dir", str(state_dir))
    deadline = time.monotonic() + 5
    while stack_pids(state_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack_pids(state_dir) == []


@pytest.mark.parametrize("args", [("status", "-o", "yaml"), ("launch",), ("up", "--bogus")])
def test_bad_usage_is_one_line_and_exit_1(args: tuple[str, ...]) -> None:
    failed = supaqueue_dev(*args)
    assert failed.returncode == 1
    one_clear_line(failed.stderr)


def test_a_failed_bootstrap_is_one_line_and_stops_what_up_started(state_dir: Path) -> None:
    """Any failure of `up` (here: the database refuses the stand-ins' setup) is one line, and
    the Postgres that this `up` started is stopped again."""
    ok("up", "--dir", str(state_dir))
    saved = json.loads((state_dir / "stack.json").read_text())
    admin = (
        f"postgresql://supabase_admin:{saved['admin_password']}"
        f"@127.0.0.1:{saved['postgres_port']}/postgres"
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        # pgcrypto moved out of `extensions`: the vault stand-in cannot be set up any more.
        conn.execute("drop extension pgcrypto cascade")
        conn.execute("create extension pgcrypto with schema public")
    ok("down", "--dir", str(state_dir))
    failed = supaqueue_dev("up", "--dir", str(state_dir))
    assert failed.returncode == 1
    line = one_clear_line(failed.stderr)
    assert line.startswith("supaqueue dev up: ") and "pgcrypto" in line, line
    assert stack_pids(state_dir) == []
    assert not port_in_use(saved["postgres_port"]) and not port_in_use(saved["api_port"])


def test_health_says_what_provides_net_and_vault(local_stack: LocalStack) -> None:
    from supaqueue.local_stack.extensions import detect
    from supaqueue.local_stack.postgres import PG_BIN

    health = httpx.get(f"{local_stack.env['API_URL']}/_local/health").json()
    plan = detect(PG_BIN)
    assert health["net"] == plan.provider("pg_net")
    assert health["vault"] == plan.provider("supabase_vault")
    assert health["net_sender"] == ("running" if plan.standin_sender else "not needed")
    with psycopg.connect(local_stack.env["DB_URL"]) as conn:
        row = conn.execute("show shared_preload_libraries").fetchone()
    assert row == (",".join(plan.preload),)
