"""Edge Functions on the local stack: real Deno processes behind the real gateway."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import LocalStack

ECHO = """
Deno.serve(async (req) => {
  const url = new URL(req.url);
  const body = await req.text();
  return Response.json({
    version: "__VERSION__",
    method: req.method,
    path: url.pathname,
    query: url.search,
    body,
    header: req.headers.get("x-probe"),
  }, { status: Number(url.searchParams.get("status") ?? 200) });
});
"""

ENV_DUMP = """
Deno.serve(() => Response.json(Deno.env.toObject()));
"""


def _slug(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _mgmt(stack: LocalStack, method: str, path: str, body: object = None) -> httpx.Response:
    url = f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}{path}"
    headers = {"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"}
    return httpx.request(method, url, headers=headers, json=body, timeout=30)


def _invoke(
    stack: LocalStack,
    path: str,
    key: str | None = "ANON_KEY",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """Call a function the way a client does: Bearer <legacy key> unless `key` is None."""
    sent = dict(headers or {})
    if key:
        sent["Authorization"] = f"Bearer {stack.env[key]}"
    url = f"{stack.env['FUNCTIONS_URL']}/{path}"
    return httpx.request(method, url, headers=sent, content=content, timeout=60)


def test_deploy_invoke_redeploy_delete(local_stack: LocalStack) -> None:
    slug = _slug("echo")
    first = local_stack.deploy(slug, {"index.ts": ECHO.replace("__VERSION__", "one")})
    assert first["version"] == 1 and first["status"] == "ACTIVE"

    reply = _invoke(local_stack, f"{slug}/a/b?x=1&y=two", method="POST", content=b"hello",
                    headers={"x-probe": "p1"})  # fmt: skip
    assert reply.status_code == 200
    assert reply.json() == {
        "version": "one",
        "method": "POST",
        "path": f"/{slug}/a/b",
        "query": "?x=1&y=two",
        "body": "hello",
        "header": "p1",
    }
    assert _invoke(local_stack, f"{slug}?status=418").status_code == 418
    for method in ("PUT", "PATCH", "DELETE"):
        assert _invoke(local_stack, slug, method=method).json()["method"] == method

    second = local_stack.deploy(slug, {"index.ts": ECHO.replace("__VERSION__", "two")})
    assert second["version"] == 2 and second["id"] == first["id"]
    assert second["ezbr_sha256"] != first["ezbr_sha256"]
    assert _invoke(local_stack, slug).json()["version"] == "two"

    assert _mgmt(local_stack, "DELETE", f"/functions/{slug}").status_code == 200
    gone = _invoke(local_stack, slug)
    assert gone.status_code == 404
    assert gone.json() == {"code": "NOT_FOUND", "message": "Requested function was not found"}
    # Its files go too, once its process has stopped.
    deadline = time.monotonic() + 10
    while (local_stack.dir / "functions" / slug).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (local_stack.dir / "functions" / slug).exists()


def test_verify_jwt_enforced_before_the_function_runs(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    code = f"""
Deno.serve(async () => {{
  await Deno.writeTextFile({json.dumps(str(marker))}, "x", {{ append: true }});
  return new Response("ran");
}});
"""
    slug = _slug("guarded")
    local_stack.deploy(slug, {"index.ts": code}, verify_jwt=True)
    secret = local_stack.env["JWT_SECRET"]
    other_secret = "not-the-project-jwt-secret-but-long-enough"
    forged = jwt.encode({"role": "service_role"}, other_secret, algorithm="HS256")
    expired = jwt.encode({"role": "anon", "exp": int(time.time()) - 60}, secret, algorithm="HS256")
    cases = {
        None: "UNAUTHORIZED_NO_AUTH_HEADER",
        "Bearer not-a-jwt": "UNAUTHORIZED_LEGACY_JWT",
        f"Bearer {forged}": "UNAUTHORIZED_LEGACY_JWT",
        f"Bearer {expired}": "UNAUTHORIZED_LEGACY_JWT",
        f"Basic {local_stack.env['ANON_KEY']}": "UNAUTHORIZED_INVALID_AUTH_HEADER",
    }
    for header, code_name in cases.items():
        headers = {"Authorization": header} if header else {}
        reply = _invoke(local_stack, slug, key=None, headers=headers)
        assert reply.status_code == 401, header
        assert reply.json()["code"] == code_name
    assert not marker.exists(), "the function ran for a rejected request"

    for key in ("ANON_KEY", "SERVICE_ROLE_KEY"):
        assert _invoke(local_stack, slug, key=key).text == "ran"
    user_jwt = jwt.encode({"role": "authenticated", "sub": "u1"}, secret, algorithm="HS256")
    assert _invoke(local_stack, slug, key=None,
                   headers={"Authorization": f"Bearer {user_jwt}"}).status_code == 200  # fmt: skip

    open_slug = _slug("open")
    local_stack.deploy(open_slug, {"index.ts": code}, verify_jwt=False)
    assert _invoke(local_stack, open_slug, key=None).text == "ran"
    assert marker.read_text() == "xxxx"


def test_invocations_are_counted_per_function(local_stack: LocalStack) -> None:
    """GET /_local/invocations counts the requests that reached each function (what the
    end-to-end benchmark reads): rejected and unknown-function requests do not count."""
    slug = _slug("counted")
    local_stack.deploy(slug, {"index.ts": ECHO.replace("__VERSION__", "one")})
    counts_url = f"{local_stack.env['API_URL']}/_local/invocations"
    assert slug not in httpx.get(counts_url, timeout=10).json()
    for _ in range(3):
        assert _invoke(local_stack, slug).status_code == 200
    assert _invoke(local_stack, slug, key=None).status_code == 401
    assert _invoke(local_stack, _slug("missing")).status_code == 404
    counts = httpx.get(counts_url, timeout=10).json()
    assert counts[slug] == 3
    assert all(isinstance(v, int) for v in counts.values())


def test_default_env_and_secrets_reach_the_function(local_stack: LocalStack) -> None:
    slug = _slug("env")
    local_stack.deploy(slug, {"index.ts": ENV_DUMP})
    env = _invoke(local_stack, slug).json()
    e = local_stack.env
    assert env["SUPABASE_URL"] == e["API_URL"]
    assert env["SUPABASE_DB_URL"] == e["DB_URL"]
    assert env["SUPABASE_ANON_KEY"] == e["ANON_KEY"]
    assert env["SUPABASE_SERVICE_ROLE_KEY"] == e["SERVICE_ROLE_KEY"]
    claims = jwt.decode(env["SUPABASE_SERVICE_ROLE_KEY"], e["JWT_SECRET"], algorithms=["HS256"])
    assert claims["role"] == "service_role" and claims["ref"] == e["PROJECT_REF"]
    assert json.loads(env["SUPABASE_SECRET_KEYS"])["default"].startswith("sb_secret_")
    assert json.loads(env["SUPABASE_PUBLISHABLE_KEYS"])["default"].startswith("sb_publishable_")
    assert json.loads(env["SUPABASE_JWKS"]) == {"keys": []}
    assert not any(k.startswith("SUPAQUEUE_EDGE_") for k in env), "runtime plumbing leaked"

    name = f"TEST_SECRET_{uuid.uuid4().hex[:6].upper()}"
    assert name not in env
    assert (
        _mgmt(local_stack, "POST", "/secrets", [{"name": name, "value": "v1"}]).status_code == 201
    )
    assert _invoke(local_stack, slug).json()[name] == "v1"
    assert (
        _mgmt(local_stack, "POST", "/secrets", [{"name": name, "value": "v2"}]).status_code == 201
    )
    assert _invoke(local_stack, slug).json()[name] == "v2"
    assert _mgmt(local_stack, "DELETE", "/secrets", [name]).status_code == 200
    assert name not in _invoke(local_stack, slug).json()


def _wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


def _background_writer(marker: Path, release: Path) -> str:
    """A function whose waitUntil work writes `marker` once the test creates `release` (an order
    the test controls, not a delay), giving up well within the runtime's drain time."""
    return f"""
Deno.serve(() => {{
  EdgeRuntime.waitUntil((async () => {{
    const until = Date.now() + 45_000;
    while (Date.now() < until) {{
      try {{
        await Deno.stat({json.dumps(str(release))});
        break;
      }} catch {{
        await new Promise((resolve) => setTimeout(resolve, 20));
      }}
    }}
    await Deno.writeTextFile({json.dumps(str(marker))}, "done");
  }})());
  return new Response("accepted", {{ status: 202 }});
}});
"""


def test_wait_until_work_completes_after_the_response(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    marker, release = tmp_path / "background-done", tmp_path / "release"
    slug = _slug("bg")
    local_stack.deploy(slug, {"index.ts": _background_writer(marker, release)})
    reply = _invoke(local_stack, slug)
    # answered while its background work still waits for the test
    assert reply.status_code == 202 and reply.text == "accepted"
    assert not marker.exists(), "the response waited for the background work"
    release.touch()
    assert _wait_for(marker, 30), "waitUntil work never completed"


def test_wait_until_work_survives_a_redeploy(local_stack: LocalStack, tmp_path: Path) -> None:
    """A redeploy replaces the process, but the old one finishes its background work first."""
    marker, release = tmp_path / "survived", tmp_path / "release"
    slug = _slug("drain")
    local_stack.deploy(slug, {"index.ts": _background_writer(marker, release)})
    assert _invoke(local_stack, slug).status_code == 202
    local_stack.deploy(slug, {"index.ts": ECHO.replace("__VERSION__", "next")})
    assert _invoke(local_stack, slug).json()["version"] == "next"
    assert not marker.exists()
    release.touch()  # the old process, replaced, still runs its background work
    assert _wait_for(marker, 30), "redeploy killed pending waitUntil work"


@pytest.mark.parametrize(
    "serve_call",
    [
        "Deno.serve({ port: 1 }, handler)",
        "Deno.serve({ handler, hostname: '0.0.0.0', port: 8000 })",
        "Deno.serve(handler)",
    ],
)
def test_every_deno_serve_form_is_served(local_stack: LocalStack, serve_call: str) -> None:
    slug = _slug("serve")
    code = f"const handler = () => new Response('ok');\n{serve_call};\n"
    local_stack.deploy(slug, {"index.ts": code}, verify_jwt=False)
    assert _invoke(local_stack, slug, key=None).text == "ok"


def test_relative_imports_and_deno_json(local_stack: LocalStack) -> None:
    slug = _slug("modules")
    files = {
        "deno.json": json.dumps({"imports": {"greet/": "./lib/"}}),
        "index.ts": 'import { greet } from "greet/greet.ts";\n'
        "Deno.serve(() => new Response(greet('edge')));\n",
        "lib/greet.ts": "export const greet = (n: string) => `hello ${n}`;\n",
    }
    local_stack.deploy(slug, files, import_map="deno.json")
    assert _invoke(local_stack, slug).text == "hello edge"


def test_npm_postgres_reaches_the_database(local_stack: LocalStack) -> None:
    """What the dispatcher does: `npm:postgres` over SUPABASE_DB_URL (npm: cached in DENO_DIR)."""
    slug = _slug("db")
    code = """
import postgres from "npm:postgres@3.4.7";
const sql = postgres(Deno.env.get("SUPABASE_DB_URL")!, { max: 1 });
Deno.serve(async () => {
  const [row] = await sql`select current_user as who, 40 + 2 as answer`;
  return Response.json(row);
});
"""
    local_stack.deploy(slug, {"index.ts": code})
    assert _invoke(local_stack, slug).json() == {"who": "postgres", "answer": 42}


def test_a_function_that_cannot_boot_answers_503(local_stack: LocalStack) -> None:
    slug = _slug("broken")
    # It bundles (so the deploy takes it) but throws while its module loads.
    local_stack.deploy(slug, {"index.ts": 'throw new Error("broken at boot");\n'})
    reply = _invoke(local_stack, slug)
    assert reply.status_code == 503
    assert reply.json()["code"] == "BOOT_ERROR"
    log = (local_stack.dir / "logs" / "functions" / f"{slug}.log").read_text()
    assert "BOOT_ERROR" in log


def test_the_supabase_cli_form_layout_deploys_and_runs(local_stack: LocalStack) -> None:
    """Paths as `supabase functions deploy --use-api` sends them: relative to the project root,
    import map first, a shared module reached with `../`, an empty import_map_path when unset."""
    slug = _slug("cli")
    root = "supabase/functions"
    metadata = {
        "entrypoint_path": f"{root}/{slug}/index.ts",
        "import_map_path": f"{root}/{slug}/deno.json",
        "name": slug,
        "static_patterns": [],
        "verify_jwt": True,
    }
    files = [
        ("metadata", (None, json.dumps(metadata) + "\n", None)),
        ("file", (f"{root}/{slug}/deno.json", '{"imports": {}}', "application/octet-stream")),
        ("file", (f"{root}/{slug}/index.ts",
                  'import { shout } from "../_shared/shout.ts";\n'
                  "Deno.serve(() => new Response(shout('cli')));\n", "application/octet-stream")),
        ("file", (f"{root}/_shared/shout.ts",
                  "export const shout = (s: string) => s.toUpperCase();\n",
                  "application/octet-stream")),
    ]  # fmt: skip
    url = f"{local_stack.env['MANAGEMENT_API_URL']}/v1/projects/{local_stack.env['PROJECT_REF']}"
    auth = {"Authorization": f"Bearer {local_stack.env['ACCESS_TOKEN']}"}
    created = httpx.post(f"{url}/functions/deploy", params={"slug": slug}, files=files,
                         headers=auth, timeout=60)  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.json()["entrypoint_path"] == metadata["entrypoint_path"]
    assert _invoke(local_stack, slug).text == "CLI"

    metadata["import_map_path"] = ""  # the CLI sends "" when a function has no import map
    files[0] = ("metadata", (None, json.dumps(metadata), None))
    again = httpx.post(f"{url}/functions/deploy", params={"slug": slug}, files=files,
                       headers=auth, timeout=60)  # fmt: skip
    assert again.status_code == 201, again.text
    assert again.json()["import_map"] is False and again.json()["version"] == 2
    assert _invoke(local_stack, slug).text == "CLI"


def test_a_crashed_function_answers_502_then_comes_back(local_stack: LocalStack) -> None:
    slug = _slug("crash")
    code = """
Deno.serve((req) => {
  if (new URL(req.url).pathname.endsWith("/die")) Deno.exit(7);
  return new Response("alive");
});
"""
    local_stack.deploy(slug, {"index.ts": code})
    assert _invoke(local_stack, slug).text == "alive"
    died = _invoke(local_stack, f"{slug}/die")
    assert died.status_code == 502 and died.json()["code"] == "WORKER_ERROR"
    assert _invoke(local_stack, slug).text == "alive"


def test_redeploys_under_load_drop_no_request(local_stack: LocalStack) -> None:
    """Blue/green: the new version starts before the old one stops taking requests."""
    import asyncio

    slug = _slug("load")
    local_stack.deploy(slug, {"index.ts": ECHO.replace("__VERSION__", "0")})
    url = f"{local_stack.env['FUNCTIONS_URL']}/{slug}"
    auth = {"Authorization": f"Bearer {local_stack.env['ANON_KEY']}"}

    async def hammer(stop: asyncio.Event, seen: list[tuple[int, str]]) -> None:
        async with httpx.AsyncClient(headers=auth, timeout=30) as client:
            while not stop.is_set() and len(seen) < 5000:  # bounded
                reply = await client.get(url)
                seen.append((reply.status_code, reply.json().get("version", "?")))

    async def scenario() -> list[tuple[int, str]]:
        stop = asyncio.Event()
        seen: list[tuple[int, str]] = []
        workers = [asyncio.create_task(hammer(stop, seen)) for _ in range(4)]
        for version in ("1", "2", "3"):
            await asyncio.sleep(0.3)
            await asyncio.to_thread(
                local_stack.deploy, slug, {"index.ts": ECHO.replace("__VERSION__", version)}
            )
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*workers)
        return seen

    seen = asyncio.run(scenario())
    assert seen and all(status == 200 for status, _ in seen), {s for s, _ in seen}
    assert seen[-1][1] == "3"
    assert {v for _, v in seen} >= {"0", "3"}


def test_bootstrap_reports_a_taken_port_with_its_own_exit_code(tmp_path: Path) -> None:
    """The runtime retries on a new port only for this exit code (75), not for broken code."""
    import os
    import socket
    import subprocess

    from supaqueue.local_stack.edge_runtime import BOOTSTRAP, PORT_TAKEN_EXIT, deno_binary

    entry = tmp_path / "index.ts"
    entry.write_text("Deno.serve(() => new Response('x'));\n")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env = dict(os.environ, SUPAQUEUE_EDGE_PORT=str(holder.getsockname()[1]),
                   SUPAQUEUE_EDGE_ENTRYPOINT=entry.as_uri())  # fmt: skip
        cmd = [deno_binary(), "run", "--allow-all", "--no-config", str(BOOTSTRAP)]
        taken = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert taken.returncode == PORT_TAKEN_EXIT, taken.stderr
    entry.write_text("this is not typescript (((")
    broken = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and "BOOT_ERROR" in broken.stderr


def test_a_token_the_gateway_accepted_is_refused_once_it_expires(local_stack: LocalStack) -> None:
    """The gateway remembers tokens it verified (local_stack/jwt_keys.py VerifiedTokens); `exp`
    still holds for a remembered one, as it does on Supabase."""
    slug = _slug("expiring")
    local_stack.deploy(slug, {"index.ts": ECHO.replace("__VERSION__", "one")}, verify_jwt=True)
    exp = int(time.time()) + 3
    token = jwt.encode({"role": "anon", "exp": exp}, local_stack.env["JWT_SECRET"],
                       algorithm="HS256")  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(3):  # verified once, then remembered
        assert _invoke(local_stack, slug, key=None, headers=headers).status_code == 200
    deadline = time.monotonic() + 30
    while time.time() < exp + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    reply = _invoke(local_stack, slug, key=None, headers=headers)
    assert reply.status_code == 401
    assert reply.json() == {"code": "UNAUTHORIZED_LEGACY_JWT", "message": "Invalid JWT"}


BODIES = """
Deno.serve((req) => {
  const size = Number(new URL(req.url).searchParams.get("size"));
  const body = "x".repeat(size);
  if (new URL(req.url).searchParams.has("stream")) {
    const bytes = new TextEncoder().encode(body);
    return new Response(new ReadableStream({
      start(c) { c.enqueue(bytes.slice(0, 10)); c.enqueue(bytes.slice(10)); c.close(); },
    }), { headers: { "content-type": "text/plain", "x-kind": "stream" } });
  }
  const headers = { "content-type": "text/plain", "x-kind": "a" };
  return new Response(body, { status: 201, headers });
});
"""


@pytest.mark.parametrize("size", [0, 5, 64 * 1024, 64 * 1024 + 1, 1024 * 1024])
def test_answers_of_every_size_pass_whole_with_their_headers(
    local_stack: LocalStack, size: int
) -> None:
    """Small answers are passed on in one piece, large or unsized ones streamed
    (gateway.WHOLE_BODY_MAX): the client gets the same status, headers and bytes either way."""
    slug = _slug("bodies")
    local_stack.deploy(slug, {"index.ts": BODIES})
    for query, status, kind in (
        (f"size={size}", 201, "a"),
        (f"size={size}&stream=1", 200, "stream"),
    ):
        reply = _invoke(local_stack, f"{slug}?{query}")
        assert reply.status_code == status
        assert reply.content == b"x" * size
        assert reply.headers["content-type"] == "text/plain"
        assert reply.headers["x-kind"] == kind
        if kind == "a":  # a sized answer keeps its size
            assert reply.headers["content-length"] == str(size)
    head = _invoke(local_stack, f"{slug}?size={size}", method="HEAD")
    assert head.status_code == 201 and head.content == b""


def _deploy_raw(stack: LocalStack, slug: str, files: dict[str, str]) -> httpx.Response:
    url = f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}"
    parts: list[tuple[str, tuple[str | None, str, str]]] = [
        ("metadata", (None, json.dumps({"entrypoint_path": "index.ts"}), "application/json"))
    ]
    parts += [("file", (name, data, "application/octet-stream")) for name, data in files.items()]
    return httpx.post(
        f"{url}/functions/deploy",
        params={"slug": slug},
        files=parts,
        headers={"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"},
        timeout=120,
    )


def test_code_that_does_not_bundle_is_refused_at_deploy(local_stack: LocalStack) -> None:
    """As the hosted deploy (issue 21 item 6): it bundles first and answers 400 `Failed to bundle
    the function (reason: …)`; the live version keeps serving."""
    slug = _slug("bundle")
    local_stack.deploy(slug, {"index.ts": ECHO.replace("__VERSION__", "v1")})
    syntax = _deploy_raw(local_stack, slug, {"index.ts": "Deno.serve(() => new Response(1);\n"})
    assert syntax.status_code == 400, syntax.text
    message = syntax.json()["message"]
    assert message.startswith("Failed to bundle the function (reason: "), message
    assert "file:///source/index.ts:1:" in message and "/tmp" not in message, message
    missing = _deploy_raw(
        local_stack,
        slug,
        {"index.ts": 'import { x } from "./nowhere.ts";\nDeno.serve(() => new Response(x));\n'},
    )
    assert missing.status_code == 400 and "Module not found" in missing.json()["message"]
    assert _invoke(local_stack, slug).json()["version"] == "v1"
    got = _mgmt(local_stack, "GET", f"/functions/{slug}")
    assert got.status_code == 200 and got.json()["version"] == 1
    never = _slug("never")
    refused = _deploy_raw(local_stack, never, {"index.ts": "this is not typescript ((("})
    assert refused.status_code == 400
    assert _mgmt(local_stack, "GET", f"/functions/{never}").status_code == 404
