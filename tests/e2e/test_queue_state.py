"""Queues and the stack state under the real engine: a stack made when a queue was a
`supaqueue:index:Queue` component (holding the row resource `<name>-queue`) cannot move to the
provider's `supaqueue:index:Queue` in one step (the component's URN is the new queue's own), and
`up` stops before any change, every queue and job kept; a queue name taken outside the stack's
state fails `preview` and `up` with what to do."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness.pulumi_project import PulumiProject
from tests.e2e.test_lifecycle import uninstall

pytestmark = [pytest.mark.engine, pytest.mark.stack]

QUEUES = [
    {"name": f"state-{n}", "edge_function_name": "demo-target", "paused": True} for n in range(2)
]
LEGACY_QUEUE_TYPE = "pulumi-python:dynamic/supaqueue:Queue"

# The program as it was: the real one, with each queue wrapped in a component as before.
LEGACY_PREAMBLE = """
from typing import Any

import pulumi
from pulumi.dynamic import Resource

import supaqueue.installation
from supaqueue.providers.base import declared_outputs, with_secret_outputs
from supaqueue.providers.queue.provider import SECRET_OUTPUTS, QueueProvider
from supaqueue.providers.queue.spec import with_defaults


class QueueResource(Resource, module="supaqueue", name="Queue"):
    queue_id: pulumi.Output[str]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions) -> None:
        super().__init__(
            QueueProvider(),
            name,
            declared_outputs(props, ["queue_id"]),
            with_secret_outputs(opts, SECRET_OUTPUTS),
        )


class Queue(pulumi.ComponentResource):
    def __init__(self, name: str, args: Any, *, installation: Any, opts: Any = None) -> None:
        super().__init__("supaqueue:index:Queue", name, None, opts)
        props = with_defaults(dict(args))
        props["headers"] = pulumi.Output.secret(args.get("headers") or {})
        props["db_url"] = installation.db_url
        self.resource = QueueResource(
            f"{name}-queue",
            props,
            pulumi.ResourceOptions(parent=self, depends_on=installation.queue_dependencies),
        )
        self.queue_id = self.resource.queue_id
        self.register_outputs({"queue_id": self.queue_id})


supaqueue.installation.Queue = Queue
"""


@pytest.fixture
def project(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    uninstall(local_stack.env["DB_URL"])
    created = PulumiProject.create(tmp_path, "qstate", local_stack.env)
    try:
        yield created
    finally:
        created.cleanup()


def planned(project: PulumiProject) -> list[tuple[str, str, str]]:
    """(type, name, op) of every step `pulumi preview` plans, sames included."""
    steps = json.loads(project.run("preview", "--json", "--show-sames").stdout)["steps"]
    return [
        (s["urn"].split("::")[-2].split("$")[-1], s["urn"].split("::")[-1], s["op"]) for s in steps
    ]


def test_a_stack_of_the_component_layout_stops_before_any_change(project: PulumiProject) -> None:
    program = project.workdir / "__main__.py"
    real = program.read_text()
    head, _, rest = real.partition("from supaqueue.config import")
    program.write_text(head + LEGACY_PREAMBLE + "\nfrom supaqueue.config import" + rest)
    project.configure(target="local", queues=QUEUES)
    project.up()
    before = project.outputs()["queue_ids"]
    legacy_rows = {name for typ, name, _ in planned(project) if typ == LEGACY_QUEUE_TYPE}
    assert legacy_rows == {"supaqueue-queue-state-0-queue", "supaqueue-queue-state-1-queue"}
    db_url = project.env["DB_URL"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "insert into supaqueue.job (queue, payload) values (%s, '{}')", (before["state-0"],)
        )

    # The new queue `supaqueue:index:Queue::supaqueue-queue-state-0` has the URN of the old
    # component: the engine takes the component for its old state, and the queue's check finds
    # the name taken (docs/architecture.md, "Resource provider").
    program.write_text(real)
    failed = project.run("up", "--yes", "--skip-preview", check=False)
    assert failed.returncode != 0
    # Either queue's check may stop the update first (the engine cancels the other's).
    shown = failed.stdout + failed.stderr
    assert re.search(r"queue 'state-[01]' already exists in the database", shown), shown[-3000:]
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select q.name, q.id::text, count(j.id) from supaqueue.queue q"
            " left join supaqueue.job j on j.queue = q.id group by 1, 2 order by 1"
        ).fetchall()
    assert rows == [("state-0", before["state-0"], 1), ("state-1", before["state-1"], 0)]
    state = json.loads(project.exported_state())["deployment"]["resources"]
    kept = {r["urn"].split("::")[-1] for r in state if r["type"] == LEGACY_QUEUE_TYPE}
    assert kept == legacy_rows


def test_a_queue_name_taken_outside_the_state_fails_up_with_what_to_do(
    project: PulumiProject,
) -> None:
    project.configure(target="local", queues=QUEUES)
    project.up()
    queue_id = project.outputs()["queue_ids"]["state-1"]
    state = json.loads(project.exported_state())["deployment"]["resources"]
    urn = next(r["urn"] for r in state if r["urn"].endswith("::supaqueue-queue-state-1"))
    # The state of one queue is lost (with the destroy guard that depends on it; the next
    # `up` declares the guard again).
    project.run("state", "delete", "--yes", "--target-dependents", urn)

    # Found by the queue's check: `preview` already says it, and `up` stops before any change.
    for command in (("preview",), ("up", "--yes", "--skip-preview")):
        failed = project.run(*command, check=False)
        assert failed.returncode != 0
        output = failed.stdout + failed.stderr
        assert "queue 'state-1' already exists in the database" in output, output[-3000:]
        assert "not in this stack's state" in output
        assert f"select supaqueue.drop_queue('{queue_id}');" in output
        assert "duplicate key" not in output and "Traceback" not in output


# A queue declared in the program with settings that are outputs (another resource's value, a
# secret, a config lookup): each reaches the database as given, none is replaced by its default.
OUTPUT_SETTINGS_PROGRAM = """

import supaqueue as _sq

_known = pulumi.Output.from_input
_from_outputs = _sq.Queue(
    "from-outputs",
    {
        "name": _known("from-outputs"),
        "edge_function_name": _known("demo-target"),
        "workers": _known(3),
        "max_attempts": _known(7),
        "timeout_ms": pulumi.Output.secret(12000),
        "paused": True,
    },
    installation=installation,
)
pulumi.export("from_outputs", _from_outputs.queue_id)
"""


def test_a_queue_setting_given_as_an_output_is_applied_not_defaulted(
    project: PulumiProject,
) -> None:
    program = project.workdir / "__main__.py"
    program.write_text(program.read_text() + OUTPUT_SETTINGS_PROGRAM)
    project.configure(target="local")
    project.up()
    queue_id = project.outputs()["from_outputs"]
    with psycopg.connect(project.env["DB_URL"], autocommit=True) as conn:
        row = conn.execute(
            "select q.name, q.edge_function_name, q.max_attempts, q.timeout_ms,"
            " (select count(*) from supaqueue.worker w where w.queue = q.id and not w.retiring)"
            " from supaqueue.queue q where q.id = %s",
            (queue_id,),
        ).fetchone()
    assert row == ("from-outputs", "demo-target", 7, 12000, 3)
    # And the next preview is clean: the outputs' values are what the state holds.
    ops = project.preview_ops()
    assert ops.get("from-outputs") == "same", ops
