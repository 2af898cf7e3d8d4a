"""The Data API schema `supaqueue_api` (migration 0024): enqueue, batch enqueue and job status for
service_role always, for `authenticated` / `anon` only into queues whose `enqueue_roles` name
them; nothing else in the schema; the caller's role is the one it SET ROLE to (PostgREST's), not
a claim it could write itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from harness.engine import Engine


@pytest.fixture
def api(engine: Engine) -> Iterator[psycopg.Connection[Any]]:
    engine.queue(workers=0, name="internal")
    engine.queue(workers=0, name="signups", enqueue_roles=["authenticated"])
    engine.queue(workers=0, name="public-pings", enqueue_roles=["anon", "authenticated"])
    with psycopg.connect(engine.conn.info.dsn + f" password={engine.conn.info.password}") as conn:
        yield conn


def as_role(conn: psycopg.Connection[Any], role: str, query: str, params: Any = None) -> Any:
    """`query` in a transaction that SET LOCAL ROLE `role`, as PostgREST runs a request."""
    try:
        with conn.transaction():
            conn.execute("select set_config('role', %s, true)", (role,))
            row = conn.execute(query, params).fetchone()
            return None if row is None else row[0]
    finally:
        conn.rollback()


def refused(conn: psycopg.Connection[Any], role: str, query: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        with conn.transaction():
            conn.execute("select set_config('role', %s, true)", (role,))
            conn.execute(query)
    conn.rollback()
    return caught.value


def test_service_role_enqueues_into_every_queue(api: psycopg.Connection[Any]) -> None:
    for queue in ("internal", "signups", "public-pings"):
        job = as_role(api, "service_role",
                      "select supaqueue_api.enqueue(%s, '{\"a\": 1}')", (queue,))  # fmt: skip
        assert job is not None
    ids = as_role(api, "service_role",
                  "select supaqueue_api.enqueue_batch('internal', '[1, 2, 3]')")  # fmt: skip
    assert len(ids) == 3


def test_a_null_payload_is_json_null_an_omitted_one_the_default(
    api: psycopg.Connection[Any],
) -> None:
    """PostgREST passes a JSON `null` argument as SQL NULL: that payload is JSON null, as the
    typed client's SQL `enqueue` and `enqueue_batch('[null]')` store it; omitted, it is `{}`."""
    with api.transaction():
        api.execute("select set_config('role', 'service_role', true)")
        given = api.execute("select supaqueue_api.enqueue('internal', null)").fetchone()
        omitted = api.execute("select supaqueue_api.enqueue('internal')").fetchone()
    assert given is not None and omitted is not None
    stored = api.execute(
        "select id, payload::text from supaqueue.job where id = any(%s)", ([given[0], omitted[0]],)
    ).fetchall()
    assert dict(stored) == {given[0]: "null", omitted[0]: "{}"}


def test_authenticated_only_where_the_queue_allows(api: psycopg.Connection[Any]) -> None:
    assert as_role(api, "authenticated", "select supaqueue_api.enqueue('signups')") is not None
    error = refused(api, "authenticated", "select supaqueue_api.enqueue('internal', '{}')")
    assert error.sqlstate == "42501"
    assert "role authenticated may not use queue 'internal'" in str(error.diag.message_primary)
    assert "enqueue_roles" in (error.diag.message_hint or "")
    batch = refused(api, "authenticated", "select supaqueue_api.enqueue_batch('internal', '[1]')")
    assert batch.sqlstate == "42501"


def test_anon_never_unless_the_queue_says_so(api: psycopg.Connection[Any]) -> None:
    for queue in ("internal", "signups"):
        error = refused(api, "anon", f"select supaqueue_api.enqueue('{queue}')")
        assert error.sqlstate == "42501"
    assert as_role(api, "anon", "select supaqueue_api.enqueue('public-pings')") is not None


def test_a_claim_cannot_raise_the_role(api: psycopg.Connection[Any]) -> None:
    """request.jwt.claims is only what PostgREST writes; the check reads the SET ROLE."""
    with pytest.raises(psycopg.Error) as caught:
        with api.transaction():
            claims = '{"role": "service_role"}'
            api.execute(
                "select set_config('role', 'authenticated', true),"
                " set_config('request.jwt.claims', %s, true)",
                (claims,),
            )
            api.execute("select supaqueue_api.enqueue('internal')")
    api.rollback()
    assert caught.value.sqlstate == "42501"


def test_unknown_or_removed_queue_names_it(engine: Engine, api: psycopg.Connection[Any]) -> None:
    q = engine.queue(workers=0, name="gone-soon", enqueue_roles=["authenticated"])
    assert engine.one("select supaqueue.drop_queue(%s, false)", (q,)) is True
    error = refused(api, "service_role", "select supaqueue_api.enqueue('gone-soon')")
    assert error.sqlstate == "SQ020"
    assert "there is no queue named 'gone-soon'" in str(error.diag.message_primary)
    assert "internal" not in str(error.diag.message_primary)


def test_the_public_keys_learn_no_queue_names(engine: Engine, api: psycopg.Connection[Any]) -> None:
    """anon and authenticated: an unknown name answers as a queue they may not use (42501), and
    no hint lists the queues, so the public anon key tells nobody which queues exist."""
    engine.queue(workers=0, name="secret-payroll")
    for role in ("anon", "authenticated"):
        unknown = refused(api, role, "select supaqueue_api.enqueue('secret-payrol')")
        hidden = refused(api, role, "select supaqueue_api.enqueue('secret-payroll')")
        assert (unknown.sqlstate, hidden.sqlstate) == ("42501", "42501")
        assert unknown.diag.message_hint == hidden.diag.message_hint
        assert "secret-payroll" not in str(unknown.diag.message_primary)
        assert "secret-payroll" not in str(unknown.diag.message_hint)


def test_get_job_only_for_queues_the_role_may_use(api: psycopg.Connection[Any]) -> None:
    mine = as_role(api, "authenticated", "select supaqueue_api.enqueue('signups', '{}')")
    api.commit()
    other = as_role(api, "service_role", "select supaqueue_api.enqueue('internal', '{}')")
    api.commit()
    seen = as_role(api, "authenticated",
                   "select to_jsonb(s) from supaqueue_api.get_job(%s) s", (mine,))  # fmt: skip
    assert seen["queue"] == "signups" and seen["status"] == "pending"
    assert seen["attempts"] == 0 and seen["result"] is None
    # a read-only transaction (PostgREST's GET) may read a status: no row lock on the way
    with api.transaction():
        api.execute("set transaction read only")
        api.execute("select set_config('role', 'authenticated', true)")
        row = api.execute("select status from supaqueue_api.get_job(%s)", (mine,)).fetchone()
        assert row == ("pending",)
    error = refused(api, "authenticated", f"select supaqueue_api.get_job('{other}')")
    assert error.sqlstate == "42501"
    status = "select (supaqueue_api.get_job(%s)).queue"
    assert as_role(api, "service_role", status, (other,)) == "internal"


def test_the_schema_holds_only_the_three_wrappers(engine: Engine) -> None:
    rows = engine.conn.execute(
        "select p.proname, p.prosecdef from pg_proc p"
        " where p.pronamespace = 'supaqueue_api'::regnamespace order by 1"
    ).fetchall()
    assert [(r["proname"], r["prosecdef"]) for r in rows] == [
        ("enqueue", True), ("enqueue_batch", True), ("get_job", True)]  # fmt: skip
    others = engine.one(
        "select count(*) from pg_class where relnamespace = 'supaqueue_api'::regnamespace"
    )
    assert others == 0
    # anon/authenticated still reach nothing in supaqueue itself
    for role in ("anon", "authenticated"):
        assert engine.one("select has_schema_privilege(%s, 'supaqueue', 'usage')", (role,)) is False


def test_enqueue_roles_constraint_names_the_roles(engine: Engine) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        engine.queue(workers=0, name="bad", enqueue_roles=["service_role"])
    assert caught.value.diag.constraint_name == "queue_enqueue_roles_known"


def test_uninstall_drops_the_api_schema(engine: Engine) -> None:
    engine.conn.execute("select supaqueue.uninstall()")
    assert engine.one("select to_regnamespace('supaqueue_api') is null") is True
