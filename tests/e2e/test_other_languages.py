"""examples/yaml/, examples/typescript/ and examples/go/: programs in other Pulumi languages
declaring the whole installation with the `Supaqueue` component (two queues, a trigger and a
schedule), which the provider plugin constructs (Construct) with the Python component (issue 27).

Each program, as written in examples/ (its plugin path and edge folder pointed at this checkout),
runs through its language host against the local stack: up (it installs and owns supaqueue), a
clean preview, a job through each queue (one from the trigger's table, one enqueued in SQL),
destroy, which leaves nothing of supaqueue. TypeScript uses the committed SDK (sdk/nodejs) built
as its package build does (tsc to bin/, package.json beside it); Go the committed module (sdk/,
by a `replace`; Go's build cache keeps pulumi/sdk compiled between runs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from harness.toolchain import PULUMI, REPO, VENV, pulumi_env
from tests.e2e.test_lifecycle import enqueue, scalar
from tests.e2e.test_two_stacks import wait_for
from tests.providers.conftest import uninstall
from tests.support.language_hosts import announce_host, toolchain_host
from tests.support.pulumi_nodejs import program_node_modules

pytestmark = [pytest.mark.engine, pytest.mark.stack, pytest.mark.timeout(1200)]

EXAMPLES = REPO / "examples"
TABLE = "public.signups"


class Program:
    """A copy of an examples/<language>/ project in a temp folder, driven with the real CLI."""

    def __init__(self, example: Path, root: Path, env: dict[str, str]) -> None:
        self.workdir = root / "project"
        shutil.copytree(example, self.workdir)
        settings = yaml.safe_load((example / "Pulumi.yaml").read_text())
        # The examples name the plugin and the demo's folder relative to a checkout's
        # examples/<language>.
        settings["plugins"]["providers"][0]["path"] = str(VENV / "bin")
        (self.workdir / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
        for source in self.workdir.iterdir():
            if source.suffix in (".yaml", ".ts", ".go"):
                text = source.read_text()
                source.write_text(text.replace("../../edge", str(REPO / "edge")))
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(PULUMI), "--non-interactive", *args],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=600,
            check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)}:\n{done.stdout[-6000:]}\n{done.stderr}")
        return done

    def cleanup(self) -> None:
        self.run("destroy", "--yes", "--skip-preview", check=False)
        self.run("stack", "rm", "--yes", "--force", check=False)


@pytest.fixture(scope="module")
def database(
    local_stack: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The local stack without supaqueue, with the application's table; the programs' env."""
    db_url = local_stack.env["DB_URL"]
    uninstall(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"drop table if exists {TABLE}")
        conn.execute(f"create table {TABLE} (id bigint generated always as identity, email text)")
    env = pulumi_env(tmp_path_factory.mktemp("state"))
    env.update(local_stack.env)
    try:
        yield env
    finally:
        uninstall(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"drop table if exists {TABLE}")


def leftovers(db_url: str) -> dict[str, int]:
    """What of supaqueue is in the database: schemas, its Vault entry, its cron jobs."""
    return {
        "schemas": scalar(
            db_url, "select count(*) from pg_namespace where nspname like 'supaqueue%%'"
        ),
        "vault": scalar(
            db_url, "select count(*) from vault.secrets where name = 'supaqueue_secret'"
        ),
        "cron": scalar(db_url, "select count(*) from cron.job where jobname like 'supaqueue%%'"),
    }


def exercise(program: Program, prefix: str, env: dict[str, str]) -> dict[str, str]:
    """up, a clean preview, a job through each queue, destroy leaving nothing; returns each
    step's summary (the report's evidence)."""
    db_url = env["DB_URL"]
    queues = (f"{prefix}-signups", f"{prefix}-reports")
    program.run("stack", "init", "dev")
    summary: dict[str, str] = {}
    try:
        program.run("config", "set", "projectRef", env["PROJECT_REF"])
        program.run("config", "set", "apiUrl", env["API_URL"])
        program.run("config", "set", "managementApiUrl", env["MANAGEMENT_API_URL"])
        program.run("config", "set", "--secret", "dbUrl", db_url)
        program.run("config", "set", "--secret", "accessToken", env["ACCESS_TOKEN"])
        up = program.run("up", "--yes", "--skip-preview").stdout
        assert "supaqueue:index:Supaqueue" in up and " created" in up, up
        summary["up"] = _resources(up)
        outputs = json.loads(program.run("stack", "output", "--json").stdout)
        ids = outputs["queueIds"]
        assert sorted(ids) == sorted(queues)
        assert "03:00" in outputs["nextReportRuns"][0], outputs
        assert outputs["functionUrl"] == f"{env['API_URL']}/functions/v1/supaqueue"
        project = yaml.safe_load((program.workdir / "Pulumi.yaml").read_text())["name"]
        installed_by = "select stack from supaqueue.installation_owner"
        assert scalar(db_url, installed_by) == f"{project}/dev"
        owners = "select owner_stack from supaqueue.queue where id = %s"
        assert {scalar(db_url, owners, ids[q]) for q in queues} == {f"{project}/dev"}
        # Unset retention is the default; keep_finished_forever keeps jobs for ever (null).
        retention = "select retention_seconds from supaqueue.queue where id = %s"
        assert scalar(db_url, retention, ids[f"{prefix}-signups"]) == 604800
        assert scalar(db_url, retention, ids[f"{prefix}-reports"]) is None
        schedule = "select count(*) from supaqueue.schedule where name = %s"
        assert scalar(db_url, schedule, f"{prefix}-nightly-report") == 1
        # No secret in plain text in the state.
        state = program.run("stack", "export").stdout
        assert db_url not in state and env["ACCESS_TOKEN"] not in state

        preview = program.run("preview", "--expect-no-changes").stdout
        assert " unchanged" in preview and "to create" not in preview, preview
        summary["preview"] = _resources(preview)

        # A job through each queue: a row of the trigger's table, and one enqueued in SQL.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"insert into {TABLE} (email) values ('a@example.com')")
        enqueue(db_url, ids[f"{prefix}-reports"], 1)
        succeeded = "select count(*) from supaqueue.job where queue = %s and status = 'success'"
        for queue in queues:
            wait_for(db_url, succeeded, 1, ids[queue])

        destroy = program.run("destroy", "--yes", "--skip-preview").stdout
        summary["destroy"] = _resources(destroy)
        assert leftovers(db_url) == {"schemas": 0, "vault": 0, "cron": 0}
    finally:
        program.cleanup()
        uninstall(db_url)
    print(f"{prefix}: {summary}")  # the evidence, with -s
    return summary


def _resources(output: str) -> str:
    """The `Resources:` summary of a pulumi command's output, on one line."""
    lines = output.split("Resources:", 1)[-1].strip().splitlines()
    return "; ".join(line.strip() for line in lines[:3] if line.strip() and "Duration" not in line)


def test_yaml_program(database: dict[str, str], tmp_path: Path) -> None:
    announce_host("yaml", *toolchain_host("yaml"))
    exercise(Program(EXAMPLES / "yaml", tmp_path, database), "yaml", database)


def built_sdk(node_modules: Path, into: Path) -> None:
    """sdk/nodejs built as its package build does (`tsc` to bin/, package.json beside it)."""
    source = into.parent / "sdk-source"
    shutil.copytree(REPO / "sdk" / "nodejs", source)
    (source / "node_modules").symlink_to(node_modules, target_is_directory=True)
    tsc = node_modules / "typescript" / "bin" / "tsc"
    done = subprocess.run(
        ["node", str(tsc), "-p", "."], cwd=source, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.copytree(source / "bin", into)
    shutil.copy(source / "package.json", into / "package.json")


def test_typescript_program(database: dict[str, str], tmp_path: Path) -> None:
    announce_host("nodejs", *toolchain_host("nodejs"))
    program = Program(EXAMPLES / "typescript", tmp_path, database)
    # node_modules as `npm install` would make it offline: @pulumi/pulumi and TypeScript from
    # npm (the cache the Node.js tests share), @supaqueue/pulumi from the committed SDK.
    cached = program_node_modules()
    modules = program.workdir / "node_modules"
    (modules / "@pulumi").mkdir(parents=True)
    for entry in cached.iterdir():
        if entry.name != "@pulumi":
            (modules / entry.name).symlink_to(entry)
    (modules / "@pulumi" / "pulumi").symlink_to(cached / "@pulumi" / "pulumi")
    built_sdk(cached, modules / "@supaqueue" / "pulumi")
    exercise(program, "ts", database)


def test_go_program(database: dict[str, str], tmp_path: Path) -> None:
    announce_host("go", *toolchain_host("go"))
    program = Program(EXAMPLES / "go", tmp_path, database)
    # The example takes the SDK from its checkout (`replace ... => ../../sdk`); here, absolute.
    go_mod = program.workdir / "go.mod"
    text = go_mod.read_text()
    assert "=> ../../sdk\n" in text
    go_mod.write_text(text.replace("=> ../../sdk\n", f"=> {REPO / 'sdk'}\n"))
    exercise(program, "go", database)


def test_a_component_error_reaches_the_user_as_one_message(
    database: dict[str, str], tmp_path: Path
) -> None:
    """The Python component's refusal, from a YAML program: its message, no Python stack, and
    nothing registered (it judges its arguments before the first child)."""
    program = Program(EXAMPLES / "yaml", tmp_path, database)
    settings = yaml.safe_load((program.workdir / "Pulumi.yaml").read_text())
    queues = settings["resources"]["supaqueue"]["properties"]["queues"]
    queues["yaml-signups"]["workers"] = 0
    queues["yaml-reports"]["retention_seconds"] = 60  # and keep_finished_forever: true
    (program.workdir / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    program.run("stack", "init", "dev")
    try:
        for key, name in (
            ("projectRef", "PROJECT_REF"), ("apiUrl", "API_URL"),
            ("managementApiUrl", "MANAGEMENT_API_URL"),
        ):  # fmt: skip
            program.run("config", "set", key, database[name])
        program.run("config", "set", "--secret", "dbUrl", database["DB_URL"])
        program.run("config", "set", "--secret", "accessToken", database["ACCESS_TOKEN"])
        done = program.run("preview", check=False)
        out = done.stdout + done.stderr
        assert done.returncode != 0
        assert "ConfigError: invalid supaqueue arguments:" in out, out
        assert "queue 'yaml-signups'.workers: must be at least 1, got 0" in out, out
        assert "queue 'yaml-reports'.keep_finished_forever: keeps finished jobs for ever" in out
        assert "Traceback" not in out and 'File "' not in out and ".py" not in out, out
        assert "supaqueue:index:StackIdentity" not in out, out
    finally:
        program.cleanup()
