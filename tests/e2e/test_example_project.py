"""A user's own Pulumi project (examples/python/) outside this repository: the README's steps
(`up.sh`) make its virtualenv from the wheel built from this checkout, start its own local stack
from the project's folder (`supaqueue dev up`, state in `<project>/.local-stack/`) and run
`pulumi up`; then a clean preview, jobs through both queues (the trigger's, a direct enqueue,
the schedule run now) succeed, and `pulumi destroy` removes supaqueue from the database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness.pulumi_project import require_toolchain
from harness.toolchain import REPO, pulumi_env
from tests.conftest import LocalStack
from tests.support.wheel import build_wheel, offline_pip_env

EXAMPLE = REPO / "examples" / "python"
WAIT_SECONDS = 90
# The example's queues call these functions of the user's project: one that answers every job.
HANDLER = """Deno.serve(async (req) => {
  const payload = await req.json();
  return Response.json({ handled: payload, job: req.headers.get("supaqueue-job-id") });
});
"""


class Project:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.dir = root / "project"
        self.env = env

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        done = subprocess.run(
            list(args),
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def supaqueue(self, *args: str, check: bool = True) -> str:
        return self.run(str(self.dir / "venv" / "bin" / "supaqueue"), *args, check=check)

    def pulumi(self, *args: str, check: bool = True) -> str:
        """pulumi on the dev stack, with the local stack's settings exported (as up.sh does)."""
        command = ["pulumi", "--non-interactive", *args, "--stack", "dev"]
        if not (self.dir / ".local-stack" / "stack.json").exists():
            return self.run(*command, check=check)
        saved = self.env
        self.env = {**saved, **self.stack_env()}
        try:
            return self.run(*command, check=check)
        finally:
            self.env = saved

    def stack_env(self) -> dict[str, str]:
        out = self.run(str(self.dir / "venv" / "bin" / "supaqueue"), "dev", "status", "-o", "env")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture
def project() -> Iterator[Project]:
    # Not under pytest's 0700 basetemp: the postgres OS user must reach the project's stack.
    root = Path(tempfile.mkdtemp(prefix="supaqueue-example-"))
    os.chmod(root, 0o755)
    wheel = build_wheel(root / "wheel")
    shutil.copytree(EXAMPLE, root / "project")
    # A user's machine: this checkout's toolchain on PATH (pulumi, deno), none of its settings.
    env = {k: v for k, v in pulumi_env(root / "state").items() if not k.startswith("PIP_")}
    env.pop("SUPAQUEUE_ROOT", None)
    env.pop("SUPAQUEUE_LOCAL_STACK_DIR", None)
    env.update(offline_pip_env(wheel), SUPAQUEUE_WHEEL=str(wheel))
    require_toolchain(env)
    made = Project(root, env)
    try:
        yield made
    finally:
        made.pulumi("destroy", "--yes", "--skip-preview", check=False)
        if (made.dir / "venv" / "bin" / "supaqueue").exists():
            made.supaqueue("dev", "destroy", check=False)
        shutil.rmtree(root, ignore_errors=True)


def scalar(db_url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def wait_for_success(db_url: str, queue: str, expected: int) -> None:
    query = (
        "select count(*) from supaqueue.job j join supaqueue.queue q on q.id = j.queue"
        " where q.name = %s and j.status = 'success'"
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while (got := scalar(db_url, query, queue)) < expected:
        if time.monotonic() > deadline:
            states = scalar(
                db_url,
                "select jsonb_object_agg(status, n) from (select status::text, count(*) n"
                " from supaqueue.job group by 1) x",
            )
            raise AssertionError(f"{queue}: {got} of {expected} jobs succeeded; {states}")
        time.sleep(0.5)


def summary(output: str) -> str:
    """The CLI's closing lines (resources and duration), for the test's printed evidence."""
    keep = [line.strip() for line in output.splitlines() if line.strip()]
    at = max((i for i, line in enumerate(keep) if line.startswith("Resources:")), default=0)
    return " | ".join(keep[at : at + 4])


def test_a_users_project_installs_the_wheel_and_runs_on_its_own_local_stack(
    project: Project,
) -> None:
    # The README's steps, as written (the wheel and pip's offline settings in the environment).
    out = project.run("bash", "-euo", "pipefail", "up.sh", timeout=1200)
    print(f"up: {summary(out)}")
    assert "Resources:" in out and "created" in out, out[-4000:]
    # The stack is the project's own, in its folder, not this checkout's.
    state = project.dir / ".local-stack"
    assert (state / "stack.json").is_file() and (state / ".gitignore").read_text().endswith("*\n")
    import supaqueue  # the checkout's, only to compare: the program ran the venv's

    site = project.run("venv/bin/python", "-c", "import supaqueue; print(supaqueue.__file__)")
    assert str(project.dir / "venv") in site and str(Path(supaqueue.__file__).parent) not in site

    env = project.stack_env()
    db_url = env["DB_URL"]
    # The project's functions (deployed by its developers, e.g. with the Supabase CLI).
    stack = LocalStack(state, env)
    for slug in ("send-email", "make-thumbnail"):
        stack.deploy(slug, {"index.ts": HANDLER})

    # Served by supaqueue's resource plugin from the project's venv: no dynamic provider.
    exported = project.pulumi("stack", "export")
    assert "pulumi-python:dynamic" not in exported
    assert '"type": "supaqueue:index:Queue"' in exported
    # A second preview plans no change.
    preview = json.loads(project.pulumi("preview", "--json", "--show-sames"))
    ops = {step["urn"].split("::")[-1]: step["op"] for step in preview["steps"]}
    assert set(ops.values()) == {"same"}, {k: v for k, v in ops.items() if v != "same"}
    print(f"preview: {len(ops)} resources, all 'same'")

    # Jobs through each queue: the trigger's, enqueued by name, and the schedule's (run now).
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into public.signups (email) values ('ada@example.com'), ('bob@x.io')")
        conn.execute("select supaqueue.enqueue('emails', '{\"to\": \"eve@example.com\"}')")
        conn.execute("select supaqueue.enqueue('thumbnails', '{\"image\": \"cat.png\"}')")
    project.supaqueue("run-schedule", "nightly-thumbnails", "--yes", "--db-url", db_url)
    wait_for_success(db_url, "emails", 3)
    wait_for_success(db_url, "thumbnails", 2)
    failed = scalar(db_url, "select count(*) from supaqueue.job where status <> 'success'")
    assert failed == 0
    next_run = "select to_char(next_run_at at time zone 'UTC', 'HH24:MI') from supaqueue.schedule"
    assert scalar(db_url, next_run) == "03:00"

    # A queue made in SQL before the stack knew it, adopted by name with `pulumi import`: the
    # printed code, added to the program, previews clean.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "insert into supaqueue.queue (name, edge_function_name)"
            " values ('reports', 'send-email')"
        )
        conn.execute(
            "select supaqueue.set_worker_count(id, 1) from supaqueue.queue where name = 'reports'"
        )
    parent = "installation=urn:pulumi:dev::my-infra::supaqueue:index:Supaqueue::supaqueue"
    out = project.pulumi(
        "import",
        "supaqueue:index:Queue",
        "supaqueue-queue-reports",
        "reports",
        "--parent",
        parent,
        "--yes",
    )
    code = out[out.index("import pulumi\n") :]
    assert 'supaqueue.Queue(\n    "supaqueue-queue-reports",' in code, code
    program = project.dir / "__main__.py"
    plain = program.read_text()
    program.write_text(plain + "\n" + code.replace("protect=True", "protect=False"))
    project.pulumi("preview", "--expect-no-changes")
    print(f"import: {summary(out)}; the printed code previews clean")
    project.pulumi("up", "--yes", "--skip-preview")  # records protect=False: destroy may delete it

    out = project.pulumi("destroy", "--yes", "--skip-preview")
    print(f"destroy: {summary(out)}")
    assert "- 18 deleted" in out, out[-3000:]
    assert scalar(db_url, "select count(*) from pg_namespace where nspname = 'supaqueue'") == 0
    assert "removed" in project.supaqueue("dev", "destroy") and not state.exists()
