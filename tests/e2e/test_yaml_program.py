"""examples/yaml/: a Pulumi YAML program declaring two queues, a trigger and a schedule with
supaqueue's provider resources, in the installation the Python program made (issue 27 item 2).

The Python program's stack installs supaqueue (the demo target included); the YAML program
(`examples/yaml/Pulumi.yaml` as written, its plugin path pointed at this checkout's venv) runs
through the YAML language host: up, a clean preview, a job through each queue (one from the
trigger's table, one enqueued in SQL), destroy. The owner's installation stays.
"""

from __future__ import annotations

import json
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

pytestmark = [pytest.mark.engine, pytest.mark.stack, pytest.mark.timeout(1200)]

EXAMPLE = REPO / "examples" / "yaml" / "Pulumi.yaml"
TABLE = "public.signups"
QUEUES = ("yaml-signups", "yaml-reports")


class YamlProject:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.workdir = root / "project"
        self.workdir.mkdir(parents=True)
        settings = yaml.safe_load(EXAMPLE.read_text())
        # The example names the plugin relative to a checkout's examples/yaml; here, absolute.
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


@pytest.fixture
def projects(local_stack: Any, tmp_path: Path) -> Iterator[tuple[PulumiProject, YamlProject]]:
    db_url = local_stack.env["DB_URL"]
    uninstall(db_url)
    owner = PulumiProject.create(tmp_path / "owner", "dev", local_stack.env)
    program = YamlProject(tmp_path / "yaml", owner.env)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"drop table if exists {TABLE}")
        conn.execute(f"create table {TABLE} (id bigint generated always as identity, email text)")
    try:
        yield owner, program
    finally:
        program.run("destroy", "--yes", "--skip-preview", check=False)
        program.run("stack", "rm", "--yes", "--force", check=False)
        owner.cleanup()
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"drop table if exists {TABLE}")


def test_yaml_program_on_the_python_programs_installation(
    projects: tuple[PulumiProject, YamlProject], local_stack: Any
) -> None:
    kind, path = toolchain_host("yaml")
    announce_host("yaml", kind, path)
    owner, program = projects
    db_url = local_stack.env["DB_URL"]
    owner.configure(target="local", demo=True)
    owner.up()

    program.run("stack", "init", "dev")
    program.run("config", "set", "--secret", "dbUrl", db_url)
    up = program.run("up", "--yes", "--skip-preview").stdout
    assert "+ 7 created" in up, up  # stack, identity, installation, 2 queues, trigger, schedule
    outputs = json.loads(program.run("stack", "output", "--json").stdout)
    ids = outputs["queueIds"]
    assert sorted(ids) == sorted(QUEUES)
    assert "03:00" in outputs["nextReportRun"], outputs
    owners = "select owner_stack from supaqueue.queue where id = %s"
    assert {scalar(db_url, owners, ids[q]) for q in QUEUES} == {"supaqueue-yaml/dev"}
    assert scalar(db_url, "select stack from supaqueue.installation_owner") == "supaqueue/dev"
    schedule = "select count(*) from supaqueue.schedule where name = 'yaml-nightly-report'"
    assert scalar(db_url, schedule) == 1

    preview = program.run("preview", "--expect-no-changes").stdout
    assert "unchanged" in preview, preview

    # A job through each queue: a row of the trigger's table, and one enqueued in SQL.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"insert into {TABLE} (email) values ('a@example.com')")
    enqueue(db_url, ids["yaml-reports"], 1)
    succeeded = "select count(*) from supaqueue.job where queue = %s and status = 'success'"
    for queue in QUEUES:
        wait_for(db_url, succeeded, 1, ids[queue])

    program.run("destroy", "--yes", "--skip-preview")
    names = "select count(*) from supaqueue.queue where name = any(%s)"
    assert scalar(db_url, names, list(QUEUES)) == 0
    assert scalar(db_url, schedule) == 0
    trigger = "select count(*) from supaqueue.table_trigger where name = 'yaml-new-signup'"
    assert scalar(db_url, trigger) == 0
    # The owner's installation is untouched by the external stack's destroy.
    assert scalar(db_url, "select stack from supaqueue.installation_owner") == "supaqueue/dev"
