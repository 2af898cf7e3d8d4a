"""An Edge Function deployed by the provider and served by the local stack's Deno runtime:
deploy → invoke → redeploy on content change → drift → delete → 404."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from supaqueue.edge_source import folder_hash
from supaqueue.providers.edge_function import EdgeFunctionProvider

SLUG = "provider-test-fn"


def write_function(folder: Path, greeting: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "index.ts").write_text(
        'import { greet } from "./greet.ts";\n'
        "Deno.serve(() => Response.json({ greeting: greet() }));\n"
    )
    (folder / "greet.ts").write_text(f'export const greet = (): string => "{greeting}";\n')
    (folder / "deno.json").write_text("{}\n")


def invoke(local_stack: Any) -> httpx.Response:
    return httpx.post(f"{local_stack.env['API_URL']}/functions/v1/{SLUG}", json={}, timeout=60)


def test_edge_function_lifecycle(local_stack: Any, api: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / SLUG
    write_function(folder, "hello")
    provider = EdgeFunctionProvider()
    props = {
        **api,
        "slug": SLUG,
        "source_dir": str(folder),
        "content_hash": folder_hash(folder),
        "verify_jwt": False,
        "entrypoint_path": "index.ts",
        "import_map_path": "deno.json",
    }
    checked = provider.check({}, props)
    assert checked.failures == []
    created = provider.create(checked.inputs)
    outs: dict[str, Any] = created.outs or {}
    assert created.id == SLUG and outs["status"] == "ACTIVE"
    assert outs["content_hash"] == props["content_hash"]
    response = invoke(local_stack)
    assert response.status_code == 200 and response.json() == {"greeting": "hello"}

    # Same files: no change. Edited file: an update (a redeploy), never a replace.
    assert provider.diff(SLUG, outs, checked.inputs).changes is False
    write_function(folder, "bonjour")
    news = {**checked.inputs, "content_hash": folder_hash(folder)}
    diff = provider.diff(SLUG, outs, news)
    assert diff.changes is True and diff.replaces == []
    outs = provider.update(SLUG, outs, news).outs or {}
    assert invoke(local_stack).json() == {"greeting": "bonjour"}
    assert provider.read(SLUG, outs).outs == outs  # refresh: no drift

    assert provider.diff(SLUG, outs, {**news, "slug": "other"}).replaces == ["slug"]

    local_stack.deploy(SLUG, {"index.ts": "Deno.serve(() => new Response('x'));"}, verify_jwt=False)
    drifted = provider.read(SLUG, outs).outs or {}
    assert drifted["content_hash"].startswith("changed outside Pulumi")
    assert provider.diff(SLUG, drifted, news).changes is True

    provider.delete(SLUG, outs)
    assert invoke(local_stack).status_code == 404
    assert provider.read(SLUG, outs).id == ""
    provider.delete(SLUG, outs)  # already gone: fine


def test_function_deleted_outside_pulumi_shows_at_preview_and_up_deploys_it(
    local_stack: Any, api: dict[str, str], tmp_path: Path
) -> None:
    """Issue 21 item 6: `supabase functions deploy --prune` from another folder deletes it."""
    folder = tmp_path / SLUG
    write_function(folder, "hello")
    provider = EdgeFunctionProvider()
    props = {
        **api,
        "slug": SLUG,
        "source_dir": str(folder),
        "content_hash": folder_hash(folder),
        "verify_jwt": False,
        "entrypoint_path": "index.ts",
        "import_map_path": "deno.json",
    }
    checked = provider.check({}, props)
    outs = provider.create(checked.inputs).outs or {}
    assert provider.diff(SLUG, outs, provider.check(checked.inputs, props).inputs).changes is False
    deleted = httpx.delete(
        f"{api['management_api_url']}/v1/projects/{api['project_ref']}/functions/{SLUG}",
        headers={"Authorization": f"Bearer {api['access_token']}"},
        timeout=60,
    )
    assert deleted.status_code == 200, deleted.text
    assert invoke(local_stack).status_code == 404
    rechecked = provider.check(checked.inputs, props)  # what preview runs
    assert "missing from the project" in rechecked.inputs["content_hash"]
    diff = provider.diff(SLUG, outs, rechecked.inputs)
    assert diff.changes is True and diff.replaces == []
    outs = provider.update(SLUG, outs, rechecked.inputs).outs or {}  # what up runs
    assert outs["content_hash"] == props["content_hash"]
    assert invoke(local_stack).json() == {"greeting": "hello"}
    assert provider.diff(SLUG, outs, provider.check(outs, props).inputs).changes is False
    provider.delete(SLUG, outs)


def test_folder_without_entrypoint_fails_check(api: dict[str, str], tmp_path: Path) -> None:
    props = {
        **api,
        "slug": "x",
        "source_dir": str(tmp_path),
        "content_hash": "h",
        "verify_jwt": False,
        "entrypoint_path": None,
        "import_map_path": None,
    }
    failures = EdgeFunctionProvider().check({}, props).failures
    assert [f.property for f in failures] == ["source_dir"]
