"""The README's application recipes, run as written against the local stack with the real
supabase-js (examples/enqueue*supabase_js*; tests/unit/test_readme_recipes.py keeps the README's
blocks identical to them): the Edge Function and the Node
server enqueue with the service role; a signed-in user (role `authenticated`, run in Node rather
than a browser: the same supabase-js call with the user's JWT) enqueues only into a queue that
allows it; anon is refused with PostgREST's error shape; a removed queue's name fails."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import LocalStack
from tests.support import supabase_js
from tests.support.data_api import supaqueue_api_exposed, user_token

EXAMPLES = supabase_js.EXAMPLES
QUEUES = {"welcome-emails": [], "user-exports": ["authenticated"], "internal-reports": []}


@pytest.fixture(scope="module")
def stack(local_stack: LocalStack) -> Iterator[LocalStack]:
    supabase_js.node_modules()
    queues = [(name, None, roles) for name, roles in QUEUES.items()]
    with supaqueue_api_exposed(local_stack, queues) as exposed:
        yield exposed


def _jobs(stack: LocalStack, queue: str) -> list[dict[str, Any]]:
    with psycopg.connect(stack.env["DB_URL"]) as conn:
        rows = conn.execute(
            "select j.id::text, j.payload, j.source from supaqueue.job j"
            " join supaqueue.queue q on q.id = j.queue where q.name = %s order by j.created_at",
            (queue,),
        ).fetchall()
    return [{"id": r[0], "payload": r[1], "source": r[2]} for r in rows]


def test_recipe_edge_function_enqueues_with_the_service_role(stack: LocalStack) -> None:
    slug = f"enqueue-recipe-{uuid.uuid4().hex[:6]}"
    folder = EXAMPLES / "enqueue-supabase-js-edge"
    files = {name: (folder / name).read_text() for name in ("index.ts", "deno.json")}
    stack.deploy(slug, files, import_map="deno.json")
    try:
        answer = httpx.post(
            f"{stack.env['FUNCTIONS_URL']}/{slug}",
            json={"email": "edge@example.com"},
            headers={"Authorization": f"Bearer {stack.env['ANON_KEY']}"},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        job_id = answer.json()["job_id"]
        job = next(j for j in _jobs(stack, "welcome-emails") if j["id"] == job_id)
        assert job["payload"] == {"email": "edge@example.com"} and job["source"] == "api"
    finally:
        httpx.delete(
            f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}/functions/{slug}",
            headers={"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"},
            timeout=30,
        )


def test_recipe_node_server_enqueues_a_batch(stack: LocalStack, tmp_path: Path) -> None:
    env = {"SUPABASE_URL": stack.env["API_URL"],
           "SUPABASE_SERVICE_ROLE_KEY": stack.env["SERVICE_ROLE_KEY"]}  # fmt: skip
    script = (EXAMPLES / "enqueue_supabase_js_server.mjs").read_text()
    out = supabase_js.run_module(tmp_path / "node", {"server.mjs": script}, "server.mjs", env)
    assert out["status"] == "pending" and len(out["job_ids"]) == 2
    jobs = {j["id"]: j["payload"] for j in _jobs(stack, "welcome-emails")}
    assert [jobs[i] for i in out["job_ids"]] == [{"email": "a@example.com"},
                                                 {"email": "b@example.com"}]  # fmt: skip


BROWSER_HARNESS = """
import { createClient } from "@supabase/supabase-js";
import { readFileSync, writeFileSync } from "node:fs";

// What a signed-in browser client sends: the anon key as apikey, the session's access token.
const token = process.env.USER_TOKEN;
const supabase = createClient(process.env.SUPABASE_URL, process.env.SUPABASE_ANON_KEY, {
  auth: { persistSession: false },
  ...(token ? { accessToken: async () => token } : {}),
});
const source = readFileSync("./browser-user.mjs", "utf8");
const out = {};
for (const queue of ["user-exports", "internal-reports", "gone-queue"]) {
  // the recipe as written, only its queue name changed
  writeFileSync(`./q-${queue}.mjs`, source.replace('"user-exports"', JSON.stringify(queue)));
  const { requestExport } = await import(`./q-${queue}.mjs`);
  try {
    out[queue] = { job_id: await requestExport(supabase, 7) };
  } catch (error) {
    out[queue] = { error: { ...error } };
  }
}
console.log(JSON.stringify(out));
"""


def _browser(stack: LocalStack, tmp_path: Path, token: str | None) -> dict[str, Any]:
    env = {"SUPABASE_URL": stack.env["API_URL"], "SUPABASE_ANON_KEY": stack.env["ANON_KEY"],
           "USER_TOKEN": token or ""}  # fmt: skip
    files = {"browser-user.mjs": (EXAMPLES / "enqueue_supabase_js_browser.mjs").read_text(),
             "main.mjs": BROWSER_HARNESS}  # fmt: skip
    result: dict[str, Any] = supabase_js.run_module(tmp_path / "browser", files, "main.mjs", env)
    return result


def test_recipe_signed_in_user_enqueues_only_where_allowed(
    stack: LocalStack, tmp_path: Path
) -> None:
    with psycopg.connect(stack.env["DB_URL"], autocommit=True) as conn:
        conn.execute("insert into supaqueue.queue (name, edge_function_name, enqueue_roles)"
                     " values ('gone-queue', 'nowhere', '{authenticated}')")  # fmt: skip
        conn.execute("select supaqueue.drop_queue(id, false) from supaqueue.queue"
                     " where name = 'gone-queue'")  # fmt: skip
    out = _browser(stack, tmp_path, user_token(stack, email="user@example.com"))
    job_id = out["user-exports"]["job_id"]
    assert [j["payload"] for j in _jobs(stack, "user-exports") if j["id"] == job_id] == [
        {"report_id": 7}]  # fmt: skip
    refused = out["internal-reports"]["error"]
    assert refused["code"] == "42501"
    assert set(refused) >= {"code", "details", "hint", "message"}
    assert "may not use queue 'internal-reports'" in refused["message"]
    # a removed queue answers a signed-in user as one it may not use: no name is confirmed
    gone = out["gone-queue"]["error"]
    assert gone["code"] == "42501" and "may not use queue 'gone-queue'" in gone["message"]


def test_anon_is_refused_with_postgrests_error(stack: LocalStack, tmp_path: Path) -> None:
    out = _browser(stack, tmp_path, None)
    for queue in ("user-exports", "internal-reports"):
        assert out[queue]["error"]["code"] == "42501", out
    raw = httpx.post(
        f"{stack.env['REST_URL']}/rpc/enqueue",
        json={"queue": "user-exports", "payload": {}},
        headers={"apikey": stack.env["ANON_KEY"], "Content-Profile": "supaqueue_api"},
        timeout=30,
    )
    assert raw.status_code == 401
    body = raw.json()
    assert set(body) == {"code", "details", "hint", "message"} and body["code"] == "42501"
    assert _jobs(stack, "internal-reports") == []


def test_the_edge_recipe_pins_the_tested_supabase_js() -> None:
    deno = json.loads((EXAMPLES / "enqueue-supabase-js-edge" / "deno.json").read_text())
    pinned = re.fullmatch(
        r"npm:@supabase/supabase-js@(.+)", deno["imports"]["@supabase/supabase-js"]
    )
    assert pinned is not None and pinned.group(1) == supabase_js.VERSION
