"""The `/rest/v1` stand-in (local_stack/rest_api.py) through the real `@supabase/supabase-js`:
RPC by named arguments (POST, and GET in a read-only transaction), schema choice among the
exposed ones (`Content-Profile` / `Accept-Profile`, PGRST106), the JWT's role applied and its
claims and the request's method/path/headers set as PostgREST sets them, PostgREST's error body
and its SQLSTATE → status table, the exposed schemas following the Management API's
`PATCH /v1/projects/{ref}/postgrest`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from tests.conftest import LocalStack
from tests.support import supabase_js
from tests.support.data_api import postgrest, user_token

HERE = Path(__file__).parent
SCHEMA = "rest_contract"
SETUP = f"""
create schema {SCHEMA};
grant usage on schema {SCHEMA} to anon, authenticated, service_role;
create table {SCHEMA}.note (id serial primary key, body text);
grant all on {SCHEMA}.note, {SCHEMA}.note_id_seq to anon, authenticated, service_role;
create function {SCHEMA}.add(a integer, b integer default 10) returns integer
  language sql immutable as 'select a + b';
create function {SCHEMA}.add(a integer, b integer, c integer) returns integer
  language sql immutable as 'select a + b + c';
create function {SCHEMA}.numbers(n integer) returns setof integer
  language sql immutable as 'select generate_series(1, n)';
create function {SCHEMA}.pairs() returns table (k text, v integer)
  language sql immutable as $$ values ('a', 1), ('b', 2) $$;
create function {SCHEMA}.nothing() returns void language sql as 'select';
create function {SCHEMA}.ids(xs uuid[]) returns integer language sql immutable
  as 'select cardinality(xs)';
create function {SCHEMA}.echo(j jsonb) returns jsonb language sql immutable as 'select j';
create function {SCHEMA}.context() returns jsonb language sql stable as $$
  select jsonb_build_object(
    'current_user', current_user,
    'claims', current_setting('request.jwt.claims', true)::jsonb,
    'method', current_setting('request.method', true),
    'path', current_setting('request.path', true),
    'headers', current_setting('request.headers', true)::jsonb,
    'search_path', current_setting('search_path'))
$$;
create function {SCHEMA}.write(body text) returns integer language sql volatile as
  $$ insert into {SCHEMA}.note (body) values (body) returning id $$;
create function {SCHEMA}.fail_raise() returns integer language plpgsql as
  $$ begin raise exception 'it broke' using detail = 'the detail', hint = 'the hint'; end $$;
create function {SCHEMA}.fail_custom() returns integer language plpgsql as
  $$ begin raise exception 'own code' using errcode = 'SQ123'; end $$;
create function {SCHEMA}.fail_status() returns integer language plpgsql as
  $$ begin raise exception 'payment required' using errcode = 'PT402'; end $$;
create function {SCHEMA}.secret() returns integer language sql as 'select 42';
revoke execute on function {SCHEMA}.secret() from public;
grant execute on function {SCHEMA}.secret() to service_role;
"""


@pytest.fixture(scope="module")
def stack(local_stack: LocalStack) -> Iterator[LocalStack]:
    supabase_js.node_modules()  # install first: a failure names npm, not a test
    with psycopg.connect(local_stack.env["DB_URL"], autocommit=True) as conn:
        conn.execute(f"drop schema if exists {SCHEMA} cascade")
        conn.execute(SETUP)
    before = postgrest(local_stack, "GET").json()["db_schema"]
    patched = postgrest(local_stack, "PATCH", {"db_schema": f"public,graphql_public,{SCHEMA}"})
    assert patched.status_code == 200, patched.text
    try:
        yield local_stack
    finally:
        postgrest(local_stack, "PATCH", {"db_schema": before})
        with psycopg.connect(local_stack.env["DB_URL"], autocommit=True) as conn:
            conn.execute(f"drop schema if exists {SCHEMA} cascade")


def calls(stack: LocalStack, tmp_path: Path, *specs: dict[str, Any]) -> list[dict[str, Any]]:
    script = (HERE / "supabase_js_calls.mjs").read_text()
    env = {"SUPABASE_URL": stack.env["API_URL"], "CALLS": json.dumps(list(specs))}
    result: list[dict[str, Any]] = supabase_js.run_module(
        tmp_path / "js", {"calls.mjs": script}, "calls.mjs", env
    )
    return result


def anon(stack: LocalStack, fn: str, **kw: Any) -> dict[str, Any]:
    return {"key": stack.env["ANON_KEY"], "schema": SCHEMA, "fn": fn, **kw}


def service(stack: LocalStack, fn: str, **kw: Any) -> dict[str, Any]:
    return {"key": stack.env["SERVICE_ROLE_KEY"], "schema": SCHEMA, "fn": fn, **kw}


def test_rpc_named_arguments_overloads_sets_and_void(stack: LocalStack, tmp_path: Path) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    out = calls(
        stack, tmp_path,
        anon(stack, "add", args={"a": 1, "b": 2}),
        anon(stack, "add", args={"a": 1}),  # b's default
        anon(stack, "add", args={"a": 1, "b": 2, "c": 3}),  # the other overload
        anon(stack, "numbers", args={"n": 3}),
        anon(stack, "pairs"),
        anon(stack, "nothing"),
        anon(stack, "ids", args={"xs": ids}),
        anon(stack, "echo", args={"j": {"x": [1, "y", None]}}),
        anon(stack, "add", args={"a": 5}, get=True),
    )  # fmt: skip
    assert [(c["status"], c["data"]) for c in out] == [
        (200, 3), (200, 11), (200, 6), (200, [1, 2, 3]),
        (200, [{"k": "a", "v": 1}, {"k": "b", "v": 2}]), (204, None), (200, 2),
        (200, {"x": [1, "y", None]}), (200, 15),
    ]  # fmt: skip
    assert all(c["error"] is None for c in out)


def test_role_claims_and_request_settings_are_postgrests(stack: LocalStack, tmp_path: Path) -> None:
    token = user_token(stack, email="u@example.com")
    out = calls(
        stack, tmp_path,
        anon(stack, "context"),
        {**anon(stack, "context"), "token": token},
        service(stack, "context", get=True),
    )  # fmt: skip
    as_anon, as_user, as_service = (c["data"] for c in out)
    assert as_anon["current_user"] == "anon" and as_anon["claims"]["role"] == "anon"
    assert as_user["current_user"] == "authenticated"
    assert as_user["claims"]["email"] == "u@example.com"
    assert as_user["method"] == "POST" and as_user["path"] == "/rpc/context"
    assert as_user["headers"]["authorization"] == f"Bearer {token}"
    assert as_user["headers"]["content-profile"] == SCHEMA
    assert as_user["search_path"] == f'"{SCHEMA}", "public", "extensions"'
    assert as_service["current_user"] == "service_role" and as_service["method"] == "GET"


def test_schema_must_be_exposed(stack: LocalStack, tmp_path: Path) -> None:
    out = calls(
        stack, tmp_path,
        {**anon(stack, "uninstall"), "schema": "supaqueue"},
        {**anon(stack, "add", args={"a": 1}, get=True), "schema": "nope"},
    )  # fmt: skip
    for c in out:
        assert c["status"] == 406
        assert c["error"]["code"] == "PGRST106"
        assert c["error"]["message"].startswith("Invalid schema: ")
        assert c["error"]["hint"] == (
            f"Only the following schemas are exposed: public, graphql_public, {SCHEMA}"
        )
    # Without a profile the first exposed schema is used: `add` is not in public.
    default = calls(stack, tmp_path, {"key": stack.env["ANON_KEY"], "fn": "add",
                                      "args": {"a": 1}})[0]  # fmt: skip
    assert default["status"] == 404 and default["error"]["code"] == "PGRST202"


def test_unknown_function_or_arguments_is_pgrst202(stack: LocalStack, tmp_path: Path) -> None:
    out = calls(
        stack, tmp_path,
        anon(stack, "nope", args={"x": 1}),
        anon(stack, "add", args={"z": 1}),
    )  # fmt: skip
    assert [c["status"] for c in out] == [404, 404]
    assert out[0]["error"] == {
        "code": "PGRST202",
        "details": f"Searched for the function {SCHEMA}.nope with parameters x or with a single "
        "unnamed json/jsonb parameter, but no matches were found in the schema cache.",
        "hint": None,
        "message": f"Could not find the function {SCHEMA}.nope(x) in the schema cache",
    }


def test_errors_keep_postgres_fields_and_map_statuses(stack: LocalStack, tmp_path: Path) -> None:
    out = calls(
        stack, tmp_path,
        anon(stack, "fail_raise"),
        anon(stack, "fail_custom"),
        anon(stack, "fail_status"),
        anon(stack, "secret"),
        {**anon(stack, "secret"), "token": user_token(stack)},
        service(stack, "secret"),
        anon(stack, "write", args={"body": "x"}, get=True),
    )  # fmt: skip
    statuses = [c["status"] for c in out]
    assert statuses == [400, 400, 402, 401, 403, 200, 405]
    assert out[0]["error"] == {"code": "P0001", "details": "the detail", "hint": "the hint",
                               "message": "it broke"}  # fmt: skip
    assert out[1]["error"]["code"] == "SQ123" and out[1]["error"]["message"] == "own code"
    assert out[3]["error"]["code"] == "42501"
    assert out[3]["error"]["message"] == "permission denied for function secret"
    assert out[6]["error"]["code"] == "25006"


def test_gateway_and_jwt_refusals(stack: LocalStack) -> None:
    url = f"{stack.env['API_URL']}/rest/v1/rpc/add"
    profile = {"Content-Profile": SCHEMA}
    no_key = httpx.post(url, json={"a": 1}, headers=profile, timeout=30)
    assert no_key.status_code == 401 and no_key.json()["message"] == "No API key found in request"
    forged = jwt.encode(
        {"role": "service_role"}, "not-the-project-secret-" + "x" * 32, algorithm="HS256"
    )
    forged_headers = {**profile, "apikey": forged, "Authorization": f"Bearer {forged}"}
    bad = httpx.post(url, json={"a": 1}, timeout=30, headers=forged_headers)
    assert bad.status_code == 401 and bad.json()["code"] == "PGRST301"
    expired = user_token(stack, exp=int(time.time()) - 10)
    expired_headers = {
        **profile,
        "apikey": stack.env["ANON_KEY"],
        "Authorization": f"Bearer {expired}",
    }
    old = httpx.post(url, json={"a": 1}, timeout=30, headers=expired_headers)
    assert old.status_code == 401 and old.json()["code"] == "PGRST303"
    ok = httpx.post(url, json={"a": 1}, timeout=30,
                    headers={**profile, "apikey": stack.env["ANON_KEY"]})  # fmt: skip
    assert ok.status_code == 200 and ok.json() == 11
    assert ok.headers["Content-Type"].startswith("application/json")


def test_exposed_schemas_follow_the_management_api(stack: LocalStack, tmp_path: Path) -> None:
    config = postgrest(stack, "GET").json()
    assert config["db_schema"] == f"public,graphql_public,{SCHEMA}"
    assert config["jwt_secret"] == stack.env["JWT_SECRET"]
    assert postgrest(stack, "PATCH", {"db_schema": "public"}).json()["db_schema"] == "public"
    try:
        hidden = calls(stack, tmp_path, anon(stack, "add", args={"a": 1}))[0]
        assert hidden["status"] == 406 and hidden["error"]["code"] == "PGRST106"
    finally:
        postgrest(stack, "PATCH", {"db_schema": f"public,graphql_public,{SCHEMA}"})
    assert calls(stack, tmp_path, anon(stack, "add", args={"a": 1}))[0]["data"] == 11
    refused = postgrest(stack, "PATCH", {"max_rows": -1})
    assert refused.status_code == 400
