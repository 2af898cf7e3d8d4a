"""With the real Pulumi CLI: the chain budget as stack config, and what `pulumi preview` says
about a queue the stack cannot create or that vanished from the database.

`dev` installs supaqueue with `supaqueue:chainMaxJobs`; its row is written, and deleted when the
key is removed. `prod` (installation: external) declares a queue named like one of dev's: its
preview and up fail naming dev as the owner, and dev's queue is unchanged. One of dev's queues
dropped by hand in SQL: dev's preview fails saying so and what to run (never "unchanged"); after
`pulumi refresh`, `up` makes it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.pulumi_project import PulumiProject
from tests.e2e.test_lifecycle import scalar, uninstall
from tests.e2e.test_two_stacks import failed

pytestmark = [pytest.mark.engine, pytest.mark.stack, pytest.mark.timeout(1500)]

DEV_QUEUES = [
    {"name": "dev-mail", "edge_function_name": "demo-target", "workers": 2},
    {"name": "dev-spare", "edge_function_name": "demo-target"},
]
CHAIN_ROW = "select value from supaqueue.settings where key = 'chain_max_jobs'"


@pytest.fixture
def stacks(local_stack: Any, tmp_path: Path) -> Iterator[tuple[PulumiProject, PulumiProject]]:
    uninstall(local_stack.env["DB_URL"])
    dev = PulumiProject.create(tmp_path / "dev", "dev", local_stack.env)
    prod = PulumiProject.create(tmp_path / "prod", "prod", local_stack.env)
    try:
        yield dev, prod
    finally:
        prod.cleanup()
        dev.cleanup()


def test_chain_budget_and_queue_previews(
    stacks: tuple[PulumiProject, PulumiProject], local_stack: Any
) -> None:
    dev, prod = stacks
    db_url = local_stack.env["DB_URL"]

    # The chain budget: written by up, checked at preview, deleted when the key goes.
    dev.configure(target="local", demo=True, queues=DEV_QUEUES, chainMaxJobs=1001)
    out = failed(dev, "preview")
    assert "chain_max_jobs: must be a whole number from 0 to 1000" in out, out[-3000:]
    dev.configure(target="local", demo=True, queues=DEV_QUEUES, chainMaxJobs=20)
    dev.up()
    assert scalar(db_url, CHAIN_ROW) == "20"
    assert scalar(db_url, "select max_jobs from supaqueue.chain_budget()") == 20

    # A queue name another stack owns: refused at preview, naming the owner; nothing changes.
    mail = scalar(db_url, "select row_to_json(q)::text from supaqueue.queue q where name = %s",
                  "dev-mail")  # fmt: skip
    prod.configure(
        target="local",
        installation="external",
        queues=[{"name": "dev-mail", "edge_function_name": "demo-target", "max_attempts": 9}],
    )
    for command in (("preview",), ("up", "--yes", "--skip-preview")):
        out = failed(prod, *command)
        assert "queue 'dev-mail' is owned by the Pulumi stack 'supaqueue/dev'" in out, out[-3000:]
    assert (
        scalar(
            db_url, "select row_to_json(q)::text from supaqueue.queue q where name = %s", "dev-mail"
        )
        == mail
    )
    prod.configure(target="local", installation="external", queues=[])
    prod.up()

    # A queue dropped by hand: preview says so and what to do, refresh + up make it again.
    spare = scalar(db_url, "select id::text from supaqueue.queue where name = 'dev-spare'")
    scalar(db_url, "select supaqueue.drop_queue(%s::uuid)", spare)
    out = failed(dev, "preview")
    assert f"queue 'dev-spare' ({spare}) is in this stack's state but not in the database" in out
    assert "pulumi refresh" in out
    dev.run("refresh", "--yes", "--skip-preview")
    dev.configure(target="local", demo=True, queues=DEV_QUEUES)  # and the chain budget goes
    dev.up()
    assert scalar(db_url, "select count(*) from supaqueue.queue where name = 'dev-spare'") == 1
    assert dev.preview_ops()["supaqueue-queue-dev-spare"] == "same"
    assert scalar(db_url, CHAIN_ROW) is None
    assert scalar(db_url, "select max_jobs from supaqueue.chain_budget()") == 50
