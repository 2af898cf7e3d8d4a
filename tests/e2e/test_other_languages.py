"""examples/yaml/, examples/typescript/ and examples/go/: programs in other Pulumi languages
declaring two queues, a trigger and a schedule with supaqueue's provider resources, in the
installation the Python program made (issue 27 item 2).

One Python stack installs supaqueue (the demo target included) for the module. Each program, as
written in examples/ (its plugin path pointed at this checkout's venv), runs through its
language host: up, a clean preview, a job through each queue (one from the trigger's table, one
enqueued in SQL), destroy; the owner's installation stays. TypeScript uses the committed SDK
(sdk/nodejs) built as its package build does (tsc to bin/, package.json beside it); Go the
committed module (sdk/, by a `replace`; Go's build cache keeps pulumi/sdk compiled between runs).
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

from harness.pulumi_project import PulumiProject
from harness.toolchain import PULUMI, REPO, VENV
from tests.e2e.test_lifecycle import enqueue, scalar, uninstall
from tests.e2e.test_two_stacks import wait_for
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
        # The examples name the plugin relative to a checkout's examples/<language>.
        settings["plugins"]["providers"][0]["path"] = str(VENV / "bin")
        (self.workdir / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
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
def owner(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulumiProject]:
    """The Python program's stack owning the installation, shared by this module's programs."""
    db_url = local_stack.env["DB_URL"]
    uninstall(db_url)
    project = PulumiProject.create(tmp_path_factory.mktemp("owner"), "dev", local_stack.env)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"drop table if exists {TABLE}")
        conn.execute(f"create table {TABLE} (id bigint generated always as identity, email text)")
    try:
        project.configure(target="local", demo=True)
        project.up()
        yield project
    finally:
        project.cleanup()
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"drop table if exists {TABLE}")


def exercise(program: Program, prefix: str, db_url: str) -> None:
    """up, a clean preview, a job through each queue, destroy; the owner's installation stays."""
    queues = (f"{prefix}-signups", f"{prefix}-reports")
    program.run("stack", "init", "dev")
    try:
        program.run("config", "set", "--secret", "dbUrl", db_url)
        up = program.run("up", "--yes", "--skip-preview").stdout
        assert "+ 7 created" in up, up  # stack, identity, installation, 2 queues, trigger, schedule
        outputs = json.loads(program.run("stack", "output", "--json").stdout)
        ids = outputs["queueIds"]
        assert sorted(ids) == sorted(queues)
        assert "03:00" in outputs["nextReportRun"], outputs
        owners = "select owner_stack from supaqueue.queue where id = %s"
        project = yaml.safe_load((program.workdir / "Pulumi.yaml").read_text())["name"]
        assert {scalar(db_url, owners, ids[q]) for q in queues} == {f"{project}/dev"}
        installed_by = "select stack from supaqueue.installation_owner"
        assert scalar(db_url, installed_by) == "supaqueue/dev"
        schedule = "select count(*) from supaqueue.schedule where name = %s"
        assert scalar(db_url, schedule, f"{prefix}-nightly-report") == 1

        preview = program.run("preview", "--expect-no-changes").stdout
        assert "7 unchanged" in preview, preview

        # A job through each queue: a row of the trigger's table, and one enqueued in SQL.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"insert into {TABLE} (email) values ('a@example.com')")
        enqueue(db_url, ids[f"{prefix}-reports"], 1)
        succeeded = "select count(*) from supaqueue.job where queue = %s and status = 'success'"
        for queue in queues:
            wait_for(db_url, succeeded, 1, ids[queue])

        program.run("destroy", "--yes", "--skip-preview")
        names = "select count(*) from supaqueue.queue where name = any(%s)"
        assert scalar(db_url, names, list(queues)) == 0
        assert scalar(db_url, schedule, f"{prefix}-nightly-report") == 0
        trigger = "select count(*) from supaqueue.table_trigger where name = %s"
        assert scalar(db_url, trigger, f"{prefix}-new-signup") == 0
        assert scalar(db_url, installed_by) == "supaqueue/dev"
    finally:
        program.cleanup()


def test_yaml_program(owner: PulumiProject, local_stack: Any, tmp_path: Path) -> None:
    announce_host("yaml", *toolchain_host("yaml"))
    exercise(Program(EXAMPLES / "yaml", tmp_path, owner.env), "yaml", local_stack.env["DB_URL"])


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


def test_typescript_program(owner: PulumiProject, local_stack: Any, tmp_path: Path) -> None:
    announce_host("nodejs", *toolchain_host("nodejs"))
    program = Program(EXAMPLES / "typescript", tmp_path, owner.env)
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
    exercise(program, "ts", local_stack.env["DB_URL"])


def test_go_program(owner: PulumiProject, local_stack: Any, tmp_path: Path) -> None:
    announce_host("go", *toolchain_host("go"))
    program = Program(EXAMPLES / "go", tmp_path, owner.env)
    # The example takes the SDK from its checkout (`replace ... => ../../sdk`); here, absolute.
    go_mod = program.workdir / "go.mod"
    text = go_mod.read_text()
    assert "=> ../../sdk\n" in text
    go_mod.write_text(text.replace("=> ../../sdk\n", f"=> {REPO / 'sdk'}\n"))
    exercise(program, "go", local_stack.env["DB_URL"])
