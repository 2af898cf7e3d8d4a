"""The Management API stand-in against the published OpenAPI document: every route, request
and response checked with the reference document itself (not the stand-in's own copy)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from supaqueue.local_stack.openapi_contract import SERVED, SUBSET_FILE, Contract, extract_subset
from tests.conftest import LocalStack

REFERENCE = (
    Path(__file__).resolve().parents[2]
    / "docs"
    / "reference"
    / "supabase-management-api.openapi.json"
)
HELLO = "Deno.serve(() => new Response('hi'));\n"


@pytest.fixture(scope="module")
def reference() -> Contract:
    if not REFERENCE.exists():
        raise RuntimeError(f"the reference OpenAPI document is missing at {REFERENCE}")
    return Contract.from_file(REFERENCE)


class Api:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.base = f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}"
        self.auth = {"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture
def api(local_stack: LocalStack) -> Api:
    return Api(local_stack)


def _body(response: httpx.Response) -> Any:
    return response.json() if response.content else None


def assert_documented(
    contract: Contract, method: str, template: str, response: httpx.Response
) -> None:
    problems = contract.operation(method, template).response_errors(
        response.status_code, _body(response)
    )
    assert not problems, problems


def deploy_form(metadata: dict[str, Any], files: dict[str, str]) -> list[tuple[str, Any]]:
    """The form the Supabase CLI sends: metadata first, then one `file` part per source file."""
    parts: list[tuple[str, Any]] = [("metadata", (None, json.dumps(metadata), "application/json"))]
    parts += [("file", (name, text, "application/typescript")) for name, text in files.items()]
    return parts


# --- the document ---------------------------------------------------------------------------
def test_shipped_subset_is_the_reference_verbatim(reference: Contract) -> None:
    shipped = json.loads(SUBSET_FILE.read_text())
    assert shipped == json.loads(json.dumps(extract_subset(reference.document)))


def test_the_stand_in_serves_exactly_the_documented_paths() -> None:
    from aiohttp import web

    from supaqueue.local_stack import management_api

    app = web.Application()
    management_api.add_routes(app)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/v1/")
    }
    assert served == set(SERVED)


# --- functions ------------------------------------------------------------------------------
def test_deploy_list_get_delete_match_the_document(api: Api, reference: Contract) -> None:
    slug = f"doc-{uuid.uuid4().hex[:8]}"
    metadata = {"entrypoint_path": "index.ts", "verify_jwt": False, "name": "Doc test",
                "import_map_path": "deno.json", "static_patterns": []}  # fmt: skip
    files = {"index.ts": HELLO, "deno.json": "{}"}
    form_view = {"metadata": metadata, "file": list(files)}
    deploy_op = reference.operation("post", "/v1/projects/{ref}/functions/deploy")
    assert not deploy_op.request_errors("multipart/form-data", form_view)
    assert not deploy_op.parameter_errors({"ref": api.stack.env["PROJECT_REF"]}, {"slug": slug})

    created = api.call("POST", "/functions/deploy", params={"slug": slug},
                       files=deploy_form(metadata, files))  # fmt: skip
    assert created.status_code == 201, created.text
    assert_documented(reference, "post", "/v1/projects/{ref}/functions/deploy", created)
    body = created.json()
    assert (body["slug"], body["name"], body["version"], body["verify_jwt"]) == (
        slug, "Doc test", 1, False)  # fmt: skip
    assert body["import_map"] is True and body["import_map_path"] == "deno.json"

    listed = api.call("GET", "/functions")
    assert listed.status_code == 200
    assert_documented(reference, "get", "/v1/projects/{ref}/functions", listed)
    assert slug in {f["slug"] for f in listed.json()}

    one = api.call("GET", f"/functions/{slug}")
    assert one.status_code == 200
    assert_documented(reference, "get", "/v1/projects/{ref}/functions/{function_slug}", one)
    assert one.json()["id"] == body["id"]

    deleted = api.call("DELETE", f"/functions/{slug}")
    assert deleted.status_code == 200
    assert_documented(reference, "delete", "/v1/projects/{ref}/functions/{function_slug}", deleted)
    assert api.call("GET", f"/functions/{slug}").status_code == 404
    assert api.call("DELETE", f"/functions/{slug}").status_code == 404


BAD_FORMS: dict[str, dict[str, Any]] = {
    "not multipart": {"json": {"metadata": {"entrypoint_path": "index.ts"}}},
    "garbage body": {"content": b"garbage",
                     "headers": {"Content-Type": "multipart/form-data; boundary=xyz"}},
    "no metadata": {"files": [("file", ("index.ts", HELLO, "application/typescript"))]},
    "metadata not JSON": {"files": [("metadata", (None, "{oops", "application/json")),
                                    ("file", ("index.ts", HELLO, "application/typescript"))]},
    "no entrypoint_path": {"files": deploy_form({"verify_jwt": True}, {"index.ts": HELLO})},
    "entrypoint not uploaded": {"files": deploy_form({"entrypoint_path": "main.ts"},
                                                     {"index.ts": HELLO})},
    "no files": {"files": deploy_form({"entrypoint_path": "index.ts"}, {})},
    "path escapes": {"files": deploy_form({"entrypoint_path": "index.ts"},
                                          {"index.ts": HELLO, "../../evil.ts": HELLO})},
    "verify_jwt not boolean": {"files": deploy_form({"entrypoint_path": "index.ts",
                                                     "verify_jwt": "yes"}, {"index.ts": HELLO})},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_FORMS))
def test_bad_deploy_requests_are_400(api: Api, case: str) -> None:
    slug = f"bad-{uuid.uuid4().hex[:8]}"
    reply = api.call("POST", "/functions/deploy", params={"slug": slug}, **BAD_FORMS[case])
    assert reply.status_code == 400, reply.text
    assert isinstance(reply.json()["message"], str) and reply.json()["message"]
    assert api.call("GET", f"/functions/{slug}").status_code == 404
    assert not (api.stack.dir / "functions" / slug).exists()


def test_bad_slug_is_400(api: Api) -> None:
    form = deploy_form({"entrypoint_path": "index.ts"}, {"index.ts": HELLO})
    assert api.call("POST", "/functions/deploy", params={"slug": "9bad slug"},
                    files=form).status_code == 400  # fmt: skip
    assert api.call("POST", "/functions/deploy", files=form).status_code == 400


# --- secrets --------------------------------------------------------------------------------
def test_secrets_round_trip_matches_the_document(api: Api, reference: Contract) -> None:
    name = f"DOC_SECRET_{uuid.uuid4().hex[:6].upper()}"
    payload = [{"name": name, "value": "s3cr3t"}]
    op = reference.operation("post", "/v1/projects/{ref}/secrets")
    assert not op.request_errors("application/json", payload)
    created = api.call("POST", "/secrets", json=payload)
    assert created.status_code == 201
    assert_documented(reference, "post", "/v1/projects/{ref}/secrets", created)

    listed = api.call("GET", "/secrets")
    assert listed.status_code == 200
    assert_documented(reference, "get", "/v1/projects/{ref}/secrets", listed)
    mine = {s["name"]: s for s in listed.json()}[name]
    assert mine["value"] == hashlib.sha256(b"s3cr3t").hexdigest()  # a digest, never the value
    assert "s3cr3t" not in listed.text

    removed = api.call("DELETE", "/secrets", json=[name])
    assert removed.status_code == 200
    assert_documented(reference, "delete", "/v1/projects/{ref}/secrets", removed)
    assert name not in {s["name"] for s in api.call("GET", "/secrets").json()}


@pytest.mark.parametrize(
    "payload",
    [
        [{"name": "SUPABASE_URL", "value": "x"}],
        [{"name": "OK", "value": "x"}, {"name": "SUPABASE_ANYTHING", "value": "y"}],
        [{"name": "X" * 257, "value": "x"}],
        [{"name": "BIG", "value": "x" * 24577}],
        [{"name": "NO_VALUE"}],
        {"name": "NOT_A_LIST", "value": "x"},
    ],
)
def test_invalid_secrets_are_400(api: Api, payload: Any) -> None:
    before = api.call("GET", "/secrets").json()
    reply = api.call("POST", "/secrets", json=payload)
    assert reply.status_code == 400, reply.text
    assert api.call("GET", "/secrets").json() == before


# --- api keys -------------------------------------------------------------------------------
def test_api_keys_match_the_document(api: Api, reference: Contract) -> None:
    env = api.stack.env
    template = "/v1/projects/{ref}/api-keys"
    revealed = api.call("GET", "/api-keys", params={"reveal": "true"})
    assert revealed.status_code == 200
    assert_documented(reference, "get", template, revealed)
    keys = {(k["type"], k["name"]): k["api_key"] for k in revealed.json()}
    assert keys[("legacy", "anon")] == env["ANON_KEY"]
    assert keys[("legacy", "service_role")] == env["SERVICE_ROLE_KEY"]
    for role in ("anon", "service_role"):
        claims = jwt.decode(keys[("legacy", role)], env["JWT_SECRET"], algorithms=["HS256"])
        assert claims["role"] == role and claims["ref"] == env["PROJECT_REF"]
    assert keys[("secret", "default")].startswith("sb_secret_")
    assert keys[("publishable", "default")].startswith("sb_publishable_")

    hidden = api.call("GET", "/api-keys")
    assert_documented(reference, "get", template, hidden)
    masked = {(k["type"], k["name"]): k["api_key"] for k in hidden.json()}
    assert masked[("secret", "default")] != keys[("secret", "default")]
    assert api.call("GET", "/api-keys", params={"reveal": "maybe"}).status_code == 400


# --- auth, project, rate limit --------------------------------------------------------------
ROUTES = [(m.upper(), t.replace("{function_slug}", "some-fn")) for m, t in SERVED]


@pytest.mark.parametrize("method,template", ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer sbp_" + "0" * 40, "Basic abc", "Bearer"])
def test_every_route_needs_the_access_token(
    local_stack: LocalStack, method: str, template: str, authorization: str | None
) -> None:
    url = local_stack.env["MANAGEMENT_API_URL"] + template.replace(
        "{ref}", local_stack.env["PROJECT_REF"]
    )
    headers = {"Authorization": authorization} if authorization else {}
    reply = httpx.request(method, url, headers=headers, timeout=10)
    assert reply.status_code == 401
    assert reply.json() == {"message": "Unauthorized"}


def test_unknown_project_is_404_and_malformed_ref_400(api: Api) -> None:
    base = api.stack.env["MANAGEMENT_API_URL"]
    other = "zzzzzzzzzzzzzzzzzzzz" if api.stack.env["PROJECT_REF"] != "z" * 20 else "y" * 20
    assert httpx.get(f"{base}/v1/projects/{other}/functions", headers=api.auth).status_code == 404
    assert httpx.get(f"{base}/v1/projects/short/functions", headers=api.auth).status_code == 400


@pytest.fixture
def low_rate_limit(api: Api) -> Iterator[int]:
    limit = 3

    def set_limit(n: int) -> None:
        reply = httpx.put(f"{api.stack.env['MANAGEMENT_API_URL']}/_local/management-rate-limit",
                          json={"requests_per_minute": n}, headers=api.auth)  # fmt: skip
        assert reply.status_code == 200

    set_limit(limit)
    try:
        yield limit
    finally:
        set_limit(120)


def test_rate_limit_answers_429_with_headers(api: Api, low_rate_limit: int) -> None:
    seen = []
    for _ in range(low_rate_limit):
        reply = api.call("GET", "/secrets")
        assert reply.status_code == 200
        seen.append(int(reply.headers["X-RateLimit-Remaining"]))
        assert reply.headers["X-RateLimit-Limit"] == str(low_rate_limit)
    assert seen == list(range(low_rate_limit - 1, -1, -1))
    limited = api.call("GET", "/secrets")
    assert limited.status_code == 429
    assert limited.json()["message"]
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(limited.headers["X-RateLimit-Reset"]) <= 60
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Per endpoint, as on Supabase: another route still answers.
    assert api.call("GET", "/functions").status_code == 200


# --- what the Supabase CLI uses besides -----------------------------------------------------
def test_the_project_read_matches_the_document(api: Api, reference: Contract) -> None:
    """The CLI reads the project after every command with --project-ref."""
    project = httpx.get(api.base, headers=api.auth, timeout=30)
    assert project.status_code == 200, project.text
    assert_documented(reference, "get", "/v1/projects/{ref}", project)
    assert project.json()["ref"] == api.stack.env["PROJECT_REF"]
    assert project.json()["status"] == "ACTIVE_HEALTHY"
    other = httpx.get(api.base.replace(api.stack.env["PROJECT_REF"], "a" * 20),
                      headers=api.auth, timeout=30)  # fmt: skip
    assert other.status_code == 404 and "message" in other.json()


def test_bundle_only_uploads_go_live_together_with_the_bulk_update(
    api: Api, reference: Contract
) -> None:
    """`supabase functions deploy` (no slug): each function uploaded with bundleOnly=true, then
    one `PUT …/functions` makes them live. Until then they are prepared, not live."""
    live_slug, new_slug = f"bulk-live-{uuid.uuid4().hex[:6]}", f"bulk-new-{uuid.uuid4().hex[:6]}"
    first = api.call("POST", "/functions/deploy", params={"slug": live_slug},
                     files=deploy_form({"entrypoint_path": "index.ts", "verify_jwt": False},
                                       {"index.ts": HELLO}))  # fmt: skip
    assert first.status_code == 201, first.text
    updated_code = "Deno.serve(() => new Response('v2'));\n"
    uploads = {}
    for slug, code in ((live_slug, updated_code), (new_slug, HELLO)):
        params = {"slug": slug, "bundleOnly": "true"}
        assert not reference.operation(
            "post", "/v1/projects/{ref}/functions/deploy"
        ).parameter_errors({"ref": api.stack.env["PROJECT_REF"]}, params)
        up = api.call("POST", "/functions/deploy", params=params,
                      files=deploy_form({"entrypoint_path": "index.ts", "verify_jwt": False},
                                        {"index.ts": code}))  # fmt: skip
        assert up.status_code == 201, up.text
        assert_documented(reference, "post", "/v1/projects/{ref}/functions/deploy", up)
        uploads[slug] = up.json()
    # Prepared, not live: the old version still serves, the new function does not exist yet.
    assert api.call("GET", f"/functions/{new_slug}").status_code == 404
    assert new_slug not in {f["slug"] for f in api.call("GET", "/functions").json()}
    assert api.call("GET", f"/functions/{live_slug}").json()["version"] == 1
    functions_url = api.stack.env["FUNCTIONS_URL"]
    assert httpx.get(f"{functions_url}/{live_slug}", timeout=60).text == "hi"
    assert httpx.get(f"{functions_url}/{new_slug}", timeout=60).status_code == 404

    body = list(uploads.values())
    assert not reference.operation("put", "/v1/projects/{ref}/functions").request_errors(
        "application/json", body
    )
    bulk = api.call("PUT", "/functions", json=body)
    assert bulk.status_code == 200, bulk.text
    assert_documented(reference, "put", "/v1/projects/{ref}/functions", bulk)
    assert {(f["slug"], f["version"]) for f in bulk.json()["functions"]} == {
        (live_slug, 2), (new_slug, 1)}  # fmt: skip
    assert api.call("GET", f"/functions/{new_slug}").status_code == 200
    assert httpx.get(f"{functions_url}/{live_slug}", timeout=60).text == "v2"
    assert httpx.get(f"{functions_url}/{new_slug}", timeout=60).text == "hi"
    # A bulk update naming a version nobody uploaded changes nothing.
    stale = api.call("PUT", "/functions", json=[{**uploads[new_slug], "version": 7}])
    assert stale.status_code == 404 and "version 7" in stale.json()["message"]
    for slug in (live_slug, new_slug):
        assert api.call("DELETE", f"/functions/{slug}").status_code == 200


def test_the_function_body_is_served_as_its_files(api: Api) -> None:
    """`supabase functions download` reads `GET …/functions/{slug}/body`; the stand-in keeps
    sources, not eszip bundles, so it answers the multipart form of the files."""
    slug = f"body-{uuid.uuid4().hex[:8]}"
    files = {"index.ts": 'import { x } from "./lib/x.ts";\nDeno.serve(() => new Response(x));\n',
             "lib/x.ts": 'export const x = "x";\n'}  # fmt: skip
    made = api.call("POST", "/functions/deploy", params={"slug": slug},
                    files=deploy_form({"entrypoint_path": "index.ts"}, files))  # fmt: skip
    assert made.status_code == 201, made.text
    body = api.call("GET", f"/functions/{slug}/body", headers={"Accept": "multipart/form-data"})
    assert body.status_code == 200, body.text
    assert body.headers["content-type"].startswith("multipart/form-data")
    import email.parser
    import email.policy

    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + body.headers["content-type"].encode() + b"\r\n\r\n" + body.content
    )
    got = {part.get_filename(): part.get_content() for part in message.iter_parts()
           if part.get_filename()}  # fmt: skip
    assert {name: (text.decode() if isinstance(text, bytes) else text)
            for name, text in got.items()} == files  # fmt: skip
    assert api.call("GET", "/functions/no-such-function/body").status_code == 404
    assert api.call("DELETE", f"/functions/{slug}").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/projects/{ref}/no-such-route"), ("GET", "/v1/organizations"),
     ("PATCH", "/v1/projects/{ref}/functions"), ("POST", "/v1/projects/{ref}/api-keys")],
)  # fmt: skip
def test_unknown_routes_answer_in_the_api_error_shape_and_are_logged(
    api: Api, method: str, path: str
) -> None:
    url = api.stack.env["MANAGEMENT_API_URL"] + path.format(ref=api.stack.env["PROJECT_REF"])
    answer = httpx.request(method, url, headers=api.auth, timeout=30)
    assert answer.status_code in (404, 405)
    assert answer.headers["content-type"].startswith("application/json")
    assert set(answer.json()) == {"message"} and path.split("/")[2] in answer.json()["message"]
    log = (api.stack.dir / "logs" / "daemon.log").read_text()
    wanted = f"{method} {url.split('127.0.0.1', 1)[1].split('/', 1)[1]}"
    deadline = time.monotonic() + 10
    while wanted not in log and time.monotonic() < deadline:
        time.sleep(0.1)
        log = (api.stack.dir / "logs" / "daemon.log").read_text()
    assert f"rejected {method} /{wanted.split(' ', 1)[1]}" in log


# --- PostgREST settings (the Data API's exposed schemas) ----------------------------------------
def test_postgrest_config_matches_the_document(api: Api, reference: Contract) -> None:
    got = api.call("GET", "/postgrest")
    assert got.status_code == 200
    assert_documented(reference, "get", "/v1/projects/{ref}/postgrest", got)
    before = got.json()["db_schema"]
    try:
        patched = api.call("PATCH", "/postgrest", json={"db_schema": "public,my_app"})
        assert patched.status_code == 200
        assert_documented(reference, "patch", "/v1/projects/{ref}/postgrest", patched)
        assert patched.json()["db_schema"] == "public,my_app"
        assert "jwt_secret" not in patched.json()  # only GET reveals it
        assert api.call("GET", "/postgrest").json()["db_schema"] == "public,my_app"
        bad = api.call("PATCH", "/postgrest", json={"db_pool": "many"})
        assert bad.status_code == 400
    finally:
        api.call("PATCH", "/postgrest", json={"db_schema": before})
