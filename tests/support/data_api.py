"""The local stack's Data API for tests: its PostgREST settings through the Management API, a
signed-in user's token, and supaqueue installed with some queues and `supaqueue_api` exposed
(undone afterwards), as the Data API tests and recipes need them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jwt
import psycopg
from psycopg.types.json import Jsonb

from harness.toolchain import REPO
from supaqueue import migrations
from tests.conftest import LocalStack


def postgrest(stack: LocalStack, method: str, body: Any = None) -> httpx.Response:
    """`GET` or `PATCH /v1/projects/{ref}/postgrest` (the Data API settings)."""
    url = f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}/postgrest"
    headers = {"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"}
    return httpx.request(method, url, headers=headers, json=body, timeout=30)


def user_token(stack: LocalStack, role: str = "authenticated", **claims: Any) -> str:
    """A signed-in user's access token as Supabase Auth issues it (HS256, the project's secret)."""
    now = int(time.time())
    payload = {"sub": str(uuid.uuid4()), "role": role, "aud": "authenticated",
               "iat": now, "exp": now + 3600, **claims}  # fmt: skip
    return jwt.encode(payload, stack.env["JWT_SECRET"], algorithm="HS256")


@contextmanager
def supaqueue_api_exposed(
    stack: LocalStack, queues: Iterable[tuple[str, dict[str, Any] | None, list[str]]]
) -> Iterator[LocalStack]:
    """supaqueue installed with `queues` (name, payload schema, enqueue_roles; no workers, so their
    jobs stay pending) and `supaqueue_api` added to the Data API's schemas; all undone after."""
    db_url = stack.env["DB_URL"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        migrations.apply(conn, migrations.load_migrations(REPO / "supaqueue" / "sql"))
        for name, schema, roles in queues:
            conn.execute(
                "insert into supaqueue.queue (name, edge_function_name, payload_schema,"
                " enqueue_roles) values (%s, 'nowhere', %s, %s)",
                (name, None if schema is None else Jsonb(schema), roles),
            )
    settings = postgrest(stack, "GET")
    assert settings.status_code == 200, settings.text
    before = settings.json()["db_schema"]
    patched = postgrest(stack, "PATCH", {"db_schema": before + ",supaqueue_api"})
    assert patched.status_code == 200, patched.text
    try:
        yield stack
    finally:
        postgrest(stack, "PATCH", {"db_schema": before})
        with psycopg.connect(db_url, autocommit=True) as conn:
            migrations.uninstall(conn, REPO / "supaqueue" / "sql")
