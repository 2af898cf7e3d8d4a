"""The Management API stand-in: the routes supaqueue uses, at the real API's paths, each request
and response checked against the OpenAPI document (a response that breaks it is a 500 here,
so a drift shows up in tests rather than in a user's deployment).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import BodyPartReader, web

from supaqueue.local_stack import rest_api
from supaqueue.local_stack.api_faults import DROP, FaultPlan, parse_faults
from supaqueue.local_stack.bundle_check import bundle_problem
from supaqueue.local_stack.function_store import DeployError, normalize_path
from supaqueue.local_stack.gateway import RUNTIME_KEY, STATE_KEY, STORE_KEY
from supaqueue.local_stack.openapi_contract import Operation, served_contract
from supaqueue.local_stack.rate_limit import RateLimiter
from supaqueue.local_stack.secret_store import SecretStore

log = logging.getLogger("supaqueue.management_api")
SECRETS_KEY = web.AppKey("secret_store", SecretStore)
LIMITER_KEY = web.AppKey("rate_limiter", RateLimiter)
FAULTS_KEY = web.AppKey("fault_plan", FaultPlan)
MAX_BODY_BYTES = 25 * 1024 * 1024  # Supabase caps bundles at 20 MB; room for the form around it
ENV_NAME = re.compile(r"^[^=\x00]+$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The real API's error shape."""
    return web.json_response({"message": message}, status=status, headers=headers)


def respond(op: Operation, status: int, body: Any = None) -> web.Response:
    problems = op.response_errors(status, body)
    if problems:
        log.error("response breaks the OpenAPI document: %s", "; ".join(problems))
        return error(500, "stand-in response does not match the OpenAPI document")
    if body is None:
        return web.Response(status=status)
    return web.json_response(body, status=status)


def _operation(
    request: web.Request, method: str, template: str
) -> tuple[Operation, web.Response | None]:
    """The operation and, when path/query parameters or the project are wrong, the answer."""
    op = served_contract().operation(method, template)
    problems = op.parameter_errors(dict(request.match_info), dict(request.query))
    if problems:
        return op, error(400, "; ".join(problems))
    if request.match_info["ref"] != request.app[STATE_KEY].project_ref:
        return op, error(404, f"Project {request.match_info['ref']} not found")
    return op, None


async def _json_body(request: web.Request, op: Operation) -> tuple[Any, web.Response | None]:
    content_type = request.content_type
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError:
        return None, error(400, "request body is not valid JSON")
    problems = op.request_errors(content_type, body)
    if problems:
        return None, error(400, "; ".join(problems))
    return body, None


# --- auth and rate limit --------------------------------------------------------------------
def bearer_token(request: web.Request) -> str | None:
    """The request's access token when it is the project's (compared in constant time)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = request.app[STATE_KEY].access_token.encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        return None
    return token.strip()


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    token = bearer_token(request)
    if token is None:
        refused = error(401, "Unauthorized")
        log_rejected(request, refused)
        return refused
    route = request.match_info.route
    template = route.resource.canonical if route.resource is not None else request.path
    decision = request.app[LIMITER_KEY].check((token, request.method, template))
    if not decision.allowed:
        limited = error(429, "Too many requests: rate limit exceeded", headers=decision.headers())
        log_rejected(request, limited)
        return limited
    fault = request.app[FAULTS_KEY].take() if FAULTS_KEY in request.app else None
    if fault == DROP:
        # The connection goes away without an answer, as behind a failing load balancer.
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("injected: connection dropped")
    if fault is not None:
        injected = error(int(fault), f"injected fault: HTTP {fault}")
        log_rejected(request, injected)
        return injected
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status not in (404, 405):
            raise
        # An unrouted path or method: the real API answers in its own shape, not plain text.
        response = error(404, f"Cannot {request.method} {request.path}")
    response.headers.update(decision.headers())
    if response.status >= 400:
        log_rejected(request, response)
    return response


def log_rejected(request: web.Request, response: web.StreamResponse) -> None:
    """One line per rejected request: method, path (no query: it may hold values), status and
    the message returned; never a header (the token) or a body (secrets)."""
    message = ""
    if isinstance(response, web.Response) and response.body is not None:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = str(json.loads(bytes(response.body)).get("message", ""))  # type: ignore[arg-type]
    log.warning("rejected %s %s: %s %s", request.method, request.path, response.status, message)


# --- functions ------------------------------------------------------------------------------
async def deploy_function(request: web.Request) -> web.Response:
    op, bad = _operation(request, "post", "/v1/projects/{ref}/functions/deploy")
    if bad:
        return bad
    slug = request.query.get("slug")
    if not slug:
        return error(400, "query parameter slug is required")
    if request.content_type != "multipart/form-data":
        return error(400, f"expected multipart/form-data, got {request.content_type or 'no body'}")
    try:
        metadata, files = await _read_deploy_form(request)
    except ValueError as exc:
        return error(400, f"bad multipart form: {exc}")
    form_view = {"metadata": metadata, "file": list(files)}
    problems = op.request_errors("multipart/form-data", form_view)
    if problems:
        return error(400, "; ".join(problems))
    # As the hosted deploy: code that does not bundle is refused before anything changes.
    refused = await _bundle_refusal(request, metadata, files)
    if refused is not None:
        return refused
    # bundleOnly: prepared, not live, until a bulk update (`PUT …/functions`) names it.
    bundle_only = request.query.get("bundleOnly") == "true"
    try:
        record = request.app[STORE_KEY].deploy(slug, metadata, files, bundle_only=bundle_only)
    except DeployError as exc:
        return error(400, str(exc))
    if not bundle_only:
        request.app[RUNTIME_KEY].warm(record)
    return respond(op, 201, record.api_view())


async def _bundle_refusal(
    request: web.Request, metadata: Any, files: dict[str, bytes]
) -> web.Response | None:
    """400 `Failed to bundle the function (reason: …)` (the real API's answer) when the upload
    does not bundle; None when it does, or when the store will refuse it anyway (its own
    messages name a missing entrypoint or import map)."""
    try:
        entrypoint = normalize_path(str(metadata["entrypoint_path"]), "entrypoint_path")
        import_map = metadata.get("import_map_path")
        import_map = normalize_path(str(import_map), "import_map_path") if import_map else None
    except (DeployError, KeyError, TypeError, AttributeError):
        return None
    if entrypoint not in files or (import_map is not None and import_map not in files):
        return None
    problem = await bundle_problem(
        files, entrypoint, import_map, request.app[STATE_KEY].dir / "tmp"
    )
    return None if problem is None else error(400, problem)


async def _read_deploy_form(request: web.Request) -> tuple[Any, dict[str, bytes]]:
    """`metadata` (JSON) and the `file` parts by relative name; ValueError on a malformed form."""
    metadata: Any = None
    files: dict[str, bytes] = {}
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise ValueError("nested multipart parts are not accepted")
            data = await part.read(decode=False)
            if part.name == "metadata":
                metadata = json.loads(data)
            elif part.name == "file":
                if not part.filename:
                    raise ValueError("a file part has no filename")
                files[part.filename] = bytes(data)
    except (AssertionError, KeyError, RuntimeError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from exc
    if metadata is None:
        raise ValueError("the metadata part is missing")
    return metadata, _normalized(files)


def _normalized(files: dict[str, bytes]) -> dict[str, bytes]:
    try:
        return {normalize_path(name, "file"): data for name, data in files.items()}
    except DeployError as exc:
        raise ValueError(str(exc)) from exc


async def list_functions(request: web.Request) -> web.Response:
    op, bad = _operation(request, "get", "/v1/projects/{ref}/functions")
    if bad:
        return bad
    return respond(op, 200, [r.api_view() for r in request.app[STORE_KEY].all()])


async def get_function(request: web.Request) -> web.Response:
    op, bad = _operation(request, "get", "/v1/projects/{ref}/functions/{function_slug}")
    if bad:
        return bad
    record = request.app[STORE_KEY].get(request.match_info["function_slug"])
    if record is None:
        return error(404, "Function not found")
    return respond(op, 200, record.api_view())


async def delete_function(request: web.Request) -> web.Response:
    op, bad = _operation(request, "delete", "/v1/projects/{ref}/functions/{function_slug}")
    if bad:
        return bad
    slug = request.match_info["function_slug"]
    if request.app[STORE_KEY].delete(slug) is None:
        return error(404, "Function not found")
    await request.app[RUNTIME_KEY].remove(slug)
    return respond(op, 200)


async def bulk_update_functions(request: web.Request) -> web.Response:
    """Make the named uploads live together (the Supabase CLI's multi-function deploy). All or
    nothing: an item naming a version that was never uploaded changes no function."""
    op, bad = _operation(request, "put", "/v1/projects/{ref}/functions")
    if bad:
        return bad
    body, bad = await _json_body(request, op)
    if bad:
        return bad
    store = request.app[STORE_KEY]
    for item in body:
        slug, version = item["slug"], item["version"]
        current = store.get(slug)
        if version not in store.pending(slug) and (current is None or current.version != version):
            return error(404, f"Function {slug} version {version} was not uploaded")
    changes_keys = ("name", "verify_jwt", "entrypoint_path")
    try:
        records = [
            store.activate(
                item["slug"], item["version"], {k: item[k] for k in changes_keys if k in item}
            )
            for item in body
        ]
    except DeployError as exc:
        return error(400, str(exc))
    for record in records:
        request.app[RUNTIME_KEY].warm(record)
    return respond(op, 200, {"functions": [r.api_view() for r in records]})


async def function_body(request: web.Request) -> web.StreamResponse:
    """The deployed files. Supabase answers an eszip bundle, or the files as multipart/form-data
    when asked; the stand-in keeps sources only, so it answers the multipart form."""
    _op, bad = _operation(request, "get", "/v1/projects/{ref}/functions/{function_slug}/body")
    if bad:
        return bad
    store = request.app[STORE_KEY]
    record = store.get(request.match_info["function_slug"])
    if record is None:
        return error(404, "Function not found")
    if "multipart/form-data" not in request.headers.get("Accept", ""):
        return error(500, "the local stack serves function bodies as multipart/form-data only"
                          " (Accept: multipart/form-data); it keeps no eszip bundles")  # fmt: skip
    with aiohttp.MultipartWriter("form-data") as form:
        meta = form.append_json({"entrypoint_path": record.entrypoint_path,
                                 "import_map_path": record.import_map_path})  # fmt: skip
        meta.set_content_disposition("form-data", name="metadata")
        for name, data in store.source(record).items():
            # The relative path as is (aiohttp would percent-encode its slashes), as uploaded.
            quoted = name.replace("\\", "\\\\").replace('"', '\\"')
            form.append(data, {
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'form-data; name="file"; filename="{quoted}"',
            })  # fmt: skip
    response = web.Response(status=200, body=form)
    response.content_type = "multipart/form-data"
    response.headers["Content-Type"] = form.content_type
    return response


# --- the project ----------------------------------------------------------------------------
async def get_project(request: web.Request) -> web.Response:
    op, bad = _operation(request, "get", "/v1/projects/{ref}")
    if bad:
        return bad
    state = request.app[STATE_KEY]
    created = datetime.fromtimestamp(state.stack_file.stat().st_mtime, UTC).isoformat()
    return respond(op, 200, {
        "id": state.project_ref,
        "ref": state.project_ref,
        "organization_id": "local",
        "organization_slug": "local",
        "name": "supaqueue local stack",
        "region": "local",
        "created_at": created,
        "status": "ACTIVE_HEALTHY",
        "database": {"host": "127.0.0.1", "version": "15", "postgres_engine": "15",
                     "release_channel": "ga"},
    })  # fmt: skip


# --- secrets --------------------------------------------------------------------------------
async def list_secrets(request: web.Request) -> web.Response:
    op, bad = _operation(request, "get", "/v1/projects/{ref}/secrets")
    if bad:
        return bad
    return respond(op, 200, request.app[SECRETS_KEY].listing())


async def create_secrets(request: web.Request) -> web.Response:
    op, bad = _operation(request, "post", "/v1/projects/{ref}/secrets")
    if bad:
        return bad
    body, bad = await _json_body(request, op)
    if bad:
        return bad
    for item in body:
        name = item["name"]
        if name.startswith("SUPABASE_"):
            return error(400, f"Invalid secret name {name}: names must not start with SUPABASE_")
        if not ENV_NAME.fullmatch(name):
            return error(400, f"Invalid secret name {name!r}: not a valid environment variable")
    if request.app[SECRETS_KEY].upsert({item["name"]: item["value"] for item in body}):
        request.app[RUNTIME_KEY].secrets_changed()
    return respond(op, 201)


async def delete_secrets(request: web.Request) -> web.Response:
    op, bad = _operation(request, "delete", "/v1/projects/{ref}/secrets")
    if bad:
        return bad
    body, bad = await _json_body(request, op)
    if bad:
        return bad
    if request.app[SECRETS_KEY].delete(list(body)):
        request.app[RUNTIME_KEY].secrets_changed()
    return respond(op, 200)


# --- api keys -------------------------------------------------------------------------------
async def api_keys(request: web.Request) -> web.Response:
    op, bad = _operation(request, "get", "/v1/projects/{ref}/api-keys")
    if bad:
        return bad
    state = request.app[STATE_KEY]
    reveal = request.query.get("reveal") == "true"

    def new_key(kind: str, value: str, prefix: str) -> dict[str, Any]:
        shown = value if reveal or kind == "publishable" else prefix + "·" * 8
        return {
            "name": "default",
            "type": kind,
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{state.project_ref}/{kind}/default")),
            "api_key": shown,
            "prefix": value[: len(prefix) + 4],
            "description": None,
            "hash": hashlib.sha256(value.encode()).hexdigest(),
            "secret_jwt_template": {"role": "service_role"} if kind == "secret" else None,
            "inserted_at": None,
            "updated_at": None,
        }

    keys = [
        {"name": "anon", "type": "legacy", "id": "anon", "api_key": state.anon_key},
        {
            "name": "service_role",
            "type": "legacy",
            "id": "service_role",
            "api_key": state.service_role_key,
        },
        new_key("publishable", state.publishable_key, "sb_publishable_"),
        new_key("secret", state.secret_key, "sb_secret_"),
    ]
    return respond(op, 200, keys)


# --- PostgREST config -----------------------------------------------------------------------
async def get_postgrest(request: web.Request) -> web.Response:
    op, bad = _operation(request, "get", "/v1/projects/{ref}/postgrest")
    if bad:
        return bad
    state = request.app[STATE_KEY]
    return respond(op, 200, {**rest_api.read_config(state), "jwt_secret": state.jwt_secret})


async def update_postgrest(request: web.Request) -> web.Response:
    """The `/rest/v1` stand-in reads the result at its next request (exposed schemas)."""
    op, bad = _operation(request, "patch", "/v1/projects/{ref}/postgrest")
    if bad:
        return bad
    body, bad = await _json_body(request, op)
    if bad:
        return bad
    return respond(op, 200, rest_api.write_config(request.app[STATE_KEY], body))


# --- local-only hooks -----------------------------------------------------------------------
async def set_rate_limit(request: web.Request) -> web.Response:
    """Test hook: change the per-minute limit so clients meet real 429s (not a Supabase route)."""
    if bearer_token(request) is None:
        return error(401, "Unauthorized")
    try:
        body = json.loads(await request.read())
        per_minute = int(body["requests_per_minute"])
        if per_minute < 1:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return error(400, 'expected {"requests_per_minute": <positive integer>}')
    request.app[LIMITER_KEY].set_limit(per_minute)
    return web.json_response({"requests_per_minute": per_minute})


async def set_faults(request: web.Request) -> web.Response:
    """Test hook: the next `/v1/` requests fail as planned (local_stack/api_faults.py)."""
    if bearer_token(request) is None:
        return error(401, "Unauthorized")
    try:
        faults = parse_faults(json.loads(await request.read() or b"null"))
    except ValueError as exc:
        return error(400, str(exc))
    request.app[FAULTS_KEY].set(faults)
    return web.json_response({"faults": faults})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/projects/{ref}", get_project, allow_head=False)
    r.add_post("/v1/projects/{ref}/functions/deploy", deploy_function)
    r.add_put("/v1/projects/{ref}/functions", bulk_update_functions)
    r.add_get("/v1/projects/{ref}/functions/{function_slug}/body", function_body, allow_head=False)
    r.add_get("/v1/projects/{ref}/functions", list_functions, allow_head=False)
    r.add_get("/v1/projects/{ref}/functions/{function_slug}", get_function, allow_head=False)
    r.add_delete("/v1/projects/{ref}/functions/{function_slug}", delete_function)
    r.add_get("/v1/projects/{ref}/secrets", list_secrets, allow_head=False)
    r.add_post("/v1/projects/{ref}/secrets", create_secrets)
    r.add_delete("/v1/projects/{ref}/secrets", delete_secrets)
    r.add_get("/v1/projects/{ref}/api-keys", api_keys, allow_head=False)
    r.add_get("/v1/projects/{ref}/postgrest", get_postgrest, allow_head=False)
    r.add_patch("/v1/projects/{ref}/postgrest", update_postgrest)
    r.add_put("/_local/management-rate-limit", set_rate_limit)
    r.add_put("/_local/management-faults", set_faults)
