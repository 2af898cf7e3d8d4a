"""Provider tests run each provider's methods, as the dynamic-provider plugin would, against the
session's local stack (real Postgres with pg_cron, the Vault and Management API stand-ins, Deno)."""

from __future__ import annotations

import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from supaqueue.providers.migrations import MigrationsProvider, declared, declared_repeatables

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def db_url(local_stack: Any) -> str:
    return str(local_stack.env["DB_URL"])


@pytest.fixture(scope="session")
def api(local_stack: Any) -> dict[str, str]:
    env = local_stack.env
    return {
        "management_api_url": env["MANAGEMENT_API_URL"],
        "project_ref": env["PROJECT_REF"],
        "access_token": env["ACCESS_TOKEN"],
    }


STACK = "supaqueue/provider-tests"
# What a queue of the stack STACK receives as its `owner` input.
QUEUE_OWNER = {"stack": STACK, "stack_id": "queue-owner-of-provider-tests"}


STACK_ID = "stack-id-of-provider-tests"


def migrations_props(
    db_url: str,
    folder: Path = REPO / "supaqueue" / "sql",
    stack: str = STACK,
    stack_id: str = STACK_ID,
) -> dict[str, Any]:
    """The schema resource's inputs as the component declares them (the owner comes from the
    stack id resource, providers/stack_identity.py)."""
    return {
        "db_url": db_url,
        "migrations_dir": str(folder),
        "migrations": declared(folder),
        "repeatables": declared_repeatables(folder),
        "owner": {"stack": stack, "stack_id": stack_id},
    }


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    """A copy of the migrations a test may add to."""
    folder = tmp_path / "sql"
    shutil.copytree(REPO / "supaqueue" / "sql", folder)
    return folder


def uninstall(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute((REPO / "supaqueue" / "sql" / "uninstall.sql").read_text())


@pytest.fixture
def installed(db_url: str) -> Iterator[dict[str, Any]]:
    """supaqueue installed by the migrations provider; uninstalled afterwards."""
    uninstall(db_url)
    provider = MigrationsProvider()
    props = provider.check({}, migrations_props(db_url)).inputs
    outs = provider.create(props).outs
    assert outs is not None
    yield outs
    uninstall(db_url)


def failure_text(call: Callable[[], Any]) -> str:
    """What the dynamic-provider plugin would report for a failing call (it sends
    `traceback.format_exc()` to the engine)."""
    try:
        call()
    except Exception:
        # The plugin process runs with this limit (supaqueue/providers/base.py).
        sys.tracebacklimit = 0
        try:
            return traceback.format_exc()
        finally:
            del sys.tracebacklimit
    raise AssertionError("the call did not fail")


def sql_value(db_url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]
