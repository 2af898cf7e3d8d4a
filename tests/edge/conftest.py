"""Fixtures of the Edge Function tests: the real engine in a real Postgres, the real function in
real Deno, and a real loopback target. Nothing here is mocked; a missing part fails loudly."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Callable, Iterator, Mapping

import httpx
import pytest
from psycopg import sql

from harness.edge_engine import Dispatched, Engine
from harness.engine import install, uninstall
from harness.function_process import DISPATCHER, FunctionProcess, free_port
from harness.target_server import TargetServer
from supaqueue.edge_source import source_files
from supaqueue.local_stack.postgres import Cluster
from tests.conftest import LocalStack

TEMPLATE_DB = "supaqueue_test_template"  # built by the pg_cluster fixture in tests/conftest.py
SERVICE_ROLE_KEY = "test-service-role-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
def target() -> Iterator[TargetServer]:
    server = TargetServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dispatch_secret() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def edge_db(pg_cluster: Cluster, dispatch_secret: str) -> Iterator[str]:
    """A database of its own for this module, with every supaqueue migration applied."""
    name = f"edge_{uuid.uuid4().hex[:12]}"
    with pg_cluster.connect() as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE_DB)
            )
        )
    dsn = pg_cluster.dsn(name)
    try:
        install(dsn, "http://127.0.0.1:1/functions/v1", dispatch_secret)
        yield dsn
    finally:
        with pg_cluster.connect() as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module")
def engine(edge_db: str) -> Iterator[Engine]:
    eng = Engine(edge_db)
    try:
        yield eng
    finally:
        eng.close()


def function_env(supabase_url: str, db_url: str, secret: str) -> dict[str, str]:
    return {
        "SUPAQUEUE_SECRET": secret,
        "SUPABASE_URL": supabase_url,
        "SUPABASE_DB_URL": db_url,
        "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY,
    }


@pytest.fixture(scope="module")
def start_function() -> Iterator[Callable[..., FunctionProcess]]:
    """Starts `edge/<slug>` in Deno; every process started is stopped after the module."""
    started: list[FunctionProcess] = []

    def start(env: dict[str, str], slug: str = "supaqueue", plain: bool = False) -> FunctionProcess:
        fn = FunctionProcess(slug, env, plain=plain)
        started.append(fn)
        return fn.start()

    try:
        yield start
    finally:
        for fn in started:
            fn.stop()


@pytest.fixture(scope="module")
def supaqueue_fn(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    edge_db: str,
    dispatch_secret: str,
) -> FunctionProcess:
    """The supaqueue function in the local stack's Edge runtime (EdgeRuntime.waitUntil present)."""
    return start_function(function_env(target.url, edge_db, dispatch_secret))


@pytest.fixture(scope="module")
def refused_fn(
    start_function: Callable[..., FunctionProcess], edge_db: str, dispatch_secret: str
) -> FunctionProcess:
    """The supaqueue function whose SUPABASE_URL points at a port where nothing listens."""
    return start_function(function_env(f"http://127.0.0.1:{free_port()}", edge_db, dispatch_secret))


def deliver(
    fn: FunctionProcess,
    d: Dispatched,
    body: bytes | str | None = None,
    headers: dict[str, str | None] | None = None,
) -> httpx.Response:
    """POST a dispatch to the function exactly as pg_net would (its queued headers and body);
    `headers` overrides some (None removes one), `body` replaces the body."""
    sent = dict(d.headers)
    for name, value in (headers or {}).items():
        sent.pop(name, None)
        if value is not None:
            sent[name] = value
    content = d.body if body is None else body if isinstance(body, bytes) else body.encode()
    return httpx.post(fn.url, content=content, headers=sent, timeout=10)


def management_api(
    stack: LocalStack, method: str, path: str, body: object = None
) -> httpx.Response:
    """A call to the local stack's Management API stand-in for its project."""
    url = f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}{path}"
    headers = {"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"}
    return httpx.request(method, url, headers=headers, json=body, timeout=60)


@contextlib.contextmanager
def dispatcher_installed(
    stack: LocalStack, target: str, target_files: Mapping[str, str]
) -> Iterator[str]:
    """The dispatcher (a slug of its own) and a target deployed to the local stack, its secret
    set, supaqueue installed and configured for them; all of it removed afterwards. Yields the
    dispatcher's slug."""
    dispatcher = f"supaqueue-{uuid.uuid4().hex[:8]}"
    secret = secrets.token_urlsafe(32)
    db_url = stack.env["DB_URL"]
    try:
        stack.deploy(
            dispatcher, dict(source_files(DISPATCHER)), verify_jwt=False, import_map="deno.json"
        )
        stack.deploy(target, dict(target_files))
        created = management_api(
            stack, "POST", "/secrets", [{"name": "SUPAQUEUE_SECRET", "value": secret}]
        )
        assert created.status_code == 201, created.text
        install(db_url, stack.env["FUNCTIONS_URL"], secret, dispatcher_slug=dispatcher)
        yield dispatcher
    finally:
        uninstall(db_url)
        management_api(stack, "DELETE", "/secrets", ["SUPAQUEUE_SECRET"])
        for slug in (dispatcher, target):
            management_api(stack, "DELETE", f"/functions/{slug}")
