"""With the real Pulumi CLI: `supaqueue:dataApi: true` exposes `supaqueue_api` in the project's
PostgREST setting (the Management API stand-in), keeping the user's own schemas; `pulumi preview`
shows the setting it will write; a queue's `enqueue_roles` reaches the database; the Data API
then serves the wrappers; `pulumi destroy` puts the user's setting back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.pulumi_project import PulumiProject
from tests.e2e.test_lifecycle import scalar, uninstall

pytestmark = [pytest.mark.engine, pytest.mark.stack, pytest.mark.timeout(1500)]

USER_SCHEMAS = "public,graphql_public,my_app"


def _postgrest(env: dict[str, str], body: Any = None) -> dict[str, Any]:
    url = f"{env['MANAGEMENT_API_URL']}/v1/projects/{env['PROJECT_REF']}/postgrest"
    headers = {"Authorization": f"Bearer {env['ACCESS_TOKEN']}"}
    response = httpx.request("PATCH" if body else "GET", url, json=body, headers=headers,
                             timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def dev(local_stack: Any, tmp_path: Path) -> Iterator[PulumiProject]:
    uninstall(local_stack.env["DB_URL"])
    before = _postgrest(local_stack.env)["db_schema"]
    _postgrest(local_stack.env, {"db_schema": USER_SCHEMAS})
    project = PulumiProject.create(tmp_path / "dev", "dev", local_stack.env)
    try:
        yield project
    finally:
        project.cleanup()
        _postgrest(local_stack.env, {"db_schema": before})


def test_data_api_exposure_preview_up_and_destroy(dev: PulumiProject, local_stack: Any) -> None:
    env = local_stack.env
    queues = [{"name": "user-exports", "edge_function_name": "demo-target",
               "enqueue_roles": ["authenticated"]}]  # fmt: skip
    dev.configure(target="local", demo=True, queues=queues, dataApi=True)
    preview = dev.run("preview", "--diff").stdout
    assert "supaqueue-data-api" in preview, preview[-3000:]
    assert f"{USER_SCHEMAS},supaqueue_api" in preview, preview[-3000:]
    dev.up()
    assert _postgrest(env)["db_schema"] == f"{USER_SCHEMAS},supaqueue_api"
    roles = "select enqueue_roles from supaqueue.queue where name = 'user-exports'"
    assert scalar(env["DB_URL"], roles) == ["authenticated"]
    assert dev.preview_ops()["supaqueue-data-api"] == "same"
    served = httpx.post(
        f"{env['REST_URL']}/rpc/enqueue",
        json={"queue": "user-exports", "payload": {"n": 1}},
        headers={"apikey": env["SERVICE_ROLE_KEY"], "Content-Profile": "supaqueue_api"},
        timeout=30,
    )
    assert served.status_code == 200, served.text

    dev.run("destroy", "--yes", "--skip-preview")
    assert _postgrest(env)["db_schema"] == USER_SCHEMAS
