"""The Data API stand-in: `/rest/v1/rpc/<function>` as PostgREST (behind Supabase's gateway)
answers it, for what supabase-js's `rpc()` uses. PostgREST itself cannot be installed here.

Faithful to (docs/reference/supabase-platform.md, "Data API (PostgREST)"): the API key check of
the gateway; the JWT (Authorization: Bearer, else the apikey) verified with the project's JWT
secret, its `role` claim applied with `set_config('role', …, true)` (SET LOCAL ROLE) and its
claims in `request.jwt.claims`, with `request.method`, `request.path`, `request.headers`;
`Content-Profile` (POST) / `Accept-Profile` (GET) choosing among the exposed schemas (the
project's PostgREST `db_schema`, which the Management API stand-in reads and changes); named
arguments from the JSON body (POST) or the query (GET, read-only transaction); PostgREST's error
body `{code, details, hint, message}` and its SQLSTATE → HTTP status table. Tables, views,
filters and `Prefer` are not served (RPC only).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import psycopg
from aiohttp import web
from psycopg import sql

from supaqueue.local_stack.gateway import STATE_KEY
from supaqueue.local_stack.state import StackState, write_private

log = logging.getLogger("supaqueue.rest_api")
CONFIG_FILE = "postgrest.json"
# A new hosted project's PostgREST settings (Management API `GET /v1/projects/{ref}/postgrest`).
DEFAULT_CONFIG: dict[str, Any] = {
    "db_schema": "public,graphql_public",
    "max_rows": 1000,
    "db_extra_search_path": "public,extensions",
    "db_pool": None,
}
ANON_ROLE = "anon"  # PostgREST's db-anon-role on Supabase
CONNECTIONS_KEY = web.AppKey("rest_connections", list)
IDLE_CONNECTIONS = 4


# --- the project's PostgREST configuration ------------------------------------------------
def config_path(state: StackState) -> Path:
    return state.dir / CONFIG_FILE


def read_config(state: StackState) -> dict[str, Any]:
    path = config_path(state)
    config = dict(DEFAULT_CONFIG)
    if path.exists():
        config.update(json.loads(path.read_text()))
    return config


def write_config(state: StackState, changes: dict[str, Any]) -> dict[str, Any]:
    config = read_config(state)
    config.update(changes)
    write_private(config_path(state), json.dumps(config, indent=2) + "\n")
    return config


def exposed_schemas(config: dict[str, Any]) -> list[str]:
    """`db_schema` as PostgREST reads it: comma-separated, spaces around names ignored."""
    return [s.strip() for s in str(config["db_schema"]).split(",") if s.strip()]


# --- errors -------------------------------------------------------------------------------
def pg_error(
    status: int,
    code: str,
    message: str,
    details: str | None = None,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """PostgREST's error body: always these four keys, null when absent."""
    body = {"code": code, "details": details, "hint": hint, "message": message}
    return web.json_response(body, status=status, headers=headers)


def status_for(sqlstate: str, authed: bool) -> int:
    """PostgREST's SQLSTATE → HTTP status table (PostgREST.Error, `pgErrorStatus`)."""
    exact = {
        "23503": 409, "23505": 409, "25006": 405, "53400": 500, "P0001": 400,
        "42883": 404, "42P01": 404, "42P17": 500,
    }  # fmt: skip
    if sqlstate == "42501":
        return 403 if authed else 401
    if sqlstate in exact:
        return exact[sqlstate]
    if sqlstate.startswith("PT"):
        try:
            return int(sqlstate[2:])
        except ValueError:
            return 500
    prefixes = {
        "08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500,
        "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500, "57": 500, "58": 500,
        "F0": 500, "HV": 500, "P0": 500, "XX": 500,
    }  # fmt: skip
    return prefixes.get(sqlstate[:2], 400)


# --- the caller ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    role: str
    claims: dict[str, Any]
    authed: bool  # a role other than the anonymous one (PostgREST: 403, not 401, on 42501)


def _gateway_key_error(request: web.Request) -> web.Response | None:
    """Supabase's gateway refuses a request without an API key before PostgREST sees it."""
    if request.headers.get("apikey") or request.query.get("apikey"):
        return None
    return web.json_response(
        {"message": "No API key found in request",
         "hint": "No `apikey` request header or url param was found."},
        status=401,
    )  # fmt: skip


def _caller(request: web.Request) -> Caller | web.Response:
    state = request.app[STATE_KEY]
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    token = bearer.strip() if scheme.lower() == "bearer" else ""
    apikey = request.headers.get("apikey") or request.query.get("apikey", "")
    # The opaque keys stand for the legacy JWTs of their role, as the gateway swaps them.
    swap = {state.secret_key: state.service_role_key, state.publishable_key: state.anon_key}
    token = swap.get(token or apikey, token or apikey)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, state.jwt_secret, algorithms=["HS256"], options={"verify_aud": False}
        )
    except jwt.ExpiredSignatureError:
        return pg_error(401, "PGRST303", "JWT expired",
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token", '
                                 'error_description="JWT expired"'})  # fmt: skip
    except jwt.PyJWTError as exc:
        return pg_error(401, "PGRST301", f"JWT could not be decoded: {exc}",
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})  # fmt: skip
    role = claims.get("role") or ANON_ROLE
    if not isinstance(role, str):
        return pg_error(401, "PGRST301", "JWT role claim is not a string")
    return Caller(role=role, claims=claims, authed=role != ANON_ROLE)


# --- the function ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Routine:
    schema: str
    name: str
    arg_names: list[str]
    arg_types: list[str]
    required: set[str]
    returns_set: bool
    returns_void: bool
    volatile: bool


_ROUTINES = """
select p.proname, coalesce(p.proargnames, '{}'), p.pronargs, p.pronargdefaults,
       array(select pg_catalog.format_type(t, null)
               from unnest(p.proargtypes::oid[]) with ordinality as a(t, n) order by n),
       p.proretset, p.prorettype = 'pg_catalog.void'::pg_catalog.regtype, p.provolatile = 'v',
       coalesce(p.proargmodes, '{}')
  from pg_catalog.pg_proc p
 where p.pronamespace = (select oid from pg_catalog.pg_namespace where nspname = %s)
   and p.proname = %s and p.prokind = 'f'
"""


async def _find_routine(
    conn: psycopg.AsyncConnection[Any], schema: str, name: str, given: set[str]
) -> Routine | None:
    """PostgREST's overload choice: every given argument is a parameter, every parameter
    without a default is given."""
    rows = await (await conn.execute(_ROUTINES, (schema, name))).fetchall()
    for proname, names, nargs, ndefaults, types, retset, void, volatile, modes in rows:
        if any(m not in ("i", "b", "v") for m in modes):  # OUT/TABLE columns: input names only
            names = [n for n, m in zip(names, modes, strict=False) if m in ("i", "b", "v")]
        arg_names = list(names[:nargs])
        if len(arg_names) < nargs or any(not n for n in arg_names):
            continue
        required = set(arg_names[: nargs - ndefaults])
        if given <= set(arg_names) and required <= given:
            return Routine(schema, proname, arg_names, list(types), required, retset, void,
                           volatile)  # fmt: skip
    return None


def _not_found(schema: str, name: str, given: set[str]) -> web.Response:
    params = ", ".join(sorted(given))
    searched = f"with parameters {params}" if given else "without parameters"
    return pg_error(
        404,
        "PGRST202",
        f"Could not find the function {schema}.{name}({params}) in the schema cache",
        details=f"Searched for the function {schema}.{name} {searched} or with a single unnamed "
        "json/jsonb parameter, but no matches were found in the schema cache.",
    )


def _call_statement(routine: Routine, given: list[str]) -> sql.Composed:
    """`select <result of fn(a := _.a, …)> from jsonb_to_record($1) as _(a type, …)`, as
    PostgREST passes named arguments: each cast from its JSON value by the parameter's type."""
    types = dict(zip(routine.arg_names, routine.arg_types, strict=True))
    fn = sql.Identifier(routine.schema, routine.name)
    args = sql.SQL(", ").join(
        sql.SQL("{} := _.{}").format(sql.Identifier(a), sql.Identifier(a)) for a in given
    )
    record = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(a), sql.SQL(types[a])) for a in given
    )
    source = (
        sql.SQL("from jsonb_to_record(%s::jsonb) as _({})").format(record) if given else sql.SQL("")
    )
    call = sql.SQL("{}({})").format(fn, args)
    if routine.returns_set:
        # A set is an array (of scalars or of row objects), as PostgREST answers it.
        lateral = sql.SQL("jsonb_to_record(%s::jsonb) as _({}), lateral ").format(record) \
            if given else sql.SQL("")  # fmt: skip
        return sql.SQL("select coalesce(pg_catalog.jsonb_agg(r), '[]') from {}{} r").format(
            lateral, call
        )
    return sql.SQL("select pg_catalog.to_jsonb({}) {}").format(call, source)


async def _connection(request: web.Request) -> psycopg.AsyncConnection[Any]:
    idle: list[psycopg.AsyncConnection[Any]] = request.app[CONNECTIONS_KEY]
    while idle:
        conn = idle.pop()
        if not conn.closed:
            return conn
    # PostgREST logs in as `authenticator`; here `postgres`, a member of the same API roles.
    state = request.app[STATE_KEY]
    return await psycopg.AsyncConnection.connect(state.db_url, application_name="rest-v1")


def _release(request: web.Request, conn: psycopg.AsyncConnection[Any]) -> None:
    idle = request.app[CONNECTIONS_KEY]
    if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE \
            and len(idle) < IDLE_CONNECTIONS:  # fmt: skip
        idle.append(conn)
    else:
        request.app.loop.create_task(conn.close())


async def rpc(request: web.Request) -> web.StreamResponse:
    refused = _gateway_key_error(request)
    if refused is not None:
        return refused
    caller = _caller(request)
    if isinstance(caller, web.Response):
        return caller
    config = read_config(request.app[STATE_KEY])
    schemas = exposed_schemas(config)
    read_only = request.method in ("GET", "HEAD")
    profile_header = "Accept-Profile" if read_only else "Content-Profile"
    schema = request.headers.get(profile_header) or (schemas[0] if schemas else "public")
    if schema not in schemas:
        exposed = ", ".join(schemas)
        hint = f"Only the following schemas are exposed: {exposed}"
        return pg_error(406, "PGRST106", f"Invalid schema: {schema}", hint=hint)
    name = request.match_info["function"]
    if read_only:
        args: dict[str, Any] = {k: v for k, v in request.query.items() if k != "apikey"}
    else:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return pg_error(400, "PGRST102", "Empty or invalid json", details=str(exc))
        if not isinstance(body, dict):
            return pg_error(400, "PGRST102", "Function arguments must be a JSON object")
        args = body
    conn = await _connection(request)
    try:
        return await _run(request, conn, caller, config, schema, name, args, read_only)
    finally:
        _release(request, conn)


async def _run(
    request: web.Request,
    conn: psycopg.AsyncConnection[Any],
    caller: Caller,
    config: dict[str, Any],
    schema: str,
    name: str,
    args: dict[str, Any],
    read_only: bool,
) -> web.StreamResponse:
    given = list(args)
    routine = await _find_routine(conn, schema, name, set(given))
    await conn.rollback()
    if routine is None:
        return _not_found(schema, name, set(given))
    headers = {k.lower(): v for k, v in request.headers.items()}
    extra = [s.strip() for s in str(config["db_extra_search_path"]).split(",") if s.strip()]
    search_path = ", ".join(sql.Identifier(s).as_string(conn) for s in [schema, *extra])
    try:
        async with conn.transaction():
            if read_only:
                await conn.execute("set transaction read only")
            # What PostgREST sets for every request's transaction (set_config(..., true) = LOCAL).
            await conn.execute(
                "select set_config('search_path', %s, true), set_config('role', %s, true),"
                " set_config('request.jwt.claims', %s, true),"
                " set_config('request.method', %s, true), set_config('request.path', %s, true),"
                " set_config('request.headers', %s, true)",
                (search_path, caller.role, json.dumps(caller.claims), request.method,
                 request.path.removeprefix("/rest/v1"), json.dumps(headers)),
            )  # fmt: skip
            params = (json.dumps(args),) if given else None
            cur = await conn.execute(_call_statement(routine, given), params)
            row = await cur.fetchone()
    except psycopg.Error as exc:
        diag = exc.diag
        code = diag.sqlstate or "XX000"
        return pg_error(status_for(code, caller.authed), code, diag.message_primary or str(exc),
                        details=diag.message_detail, hint=diag.message_hint)  # fmt: skip
    if routine.returns_void:
        return web.Response(status=204, headers={"Content-Profile": schema})
    value = row[0] if row else None
    return web.Response(
        text=json.dumps(value),
        content_type="application/json",
        charset="utf-8",
        headers={"Content-Profile": schema},
    )


async def not_served(request: web.Request) -> web.Response:
    return pg_error(
        501, "PGRST000", "the local stack's /rest/v1 serves functions only: /rest/v1/rpc/<function>"
    )


async def close_connections(app: web.Application) -> None:
    for conn in app[CONNECTIONS_KEY]:
        await conn.close()
    app[CONNECTIONS_KEY].clear()


def add_routes(app: web.Application) -> None:
    app[CONNECTIONS_KEY] = []
    app.on_cleanup.append(close_connections)
    app.router.add_route("POST", "/rest/v1/rpc/{function}", rpc)
    app.router.add_route("GET", "/rest/v1/rpc/{function}", rpc)
    app.router.add_route("*", "/rest/v1/{tail:.*}", not_served)
