"""Only postgres and service_role may use supaqueue; anon, authenticated and PUBLIC get nothing."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from harness.engine import Engine

DENIED = ["anon", "authenticated"]


def _relations(engine: Engine) -> list[str]:
    rows = engine.conn.execute(
        "select c.relname::text as name from pg_class c"
        " join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'supaqueue' and c.relkind in ('r', 'v', 'p', 'm') order by 1"
    ).fetchall()
    return [r["name"] for r in rows]


def _routines(engine: Engine) -> list[dict[str, object]]:
    return list(engine.conn.execute(
        "select p.oid::regprocedure::text as signature, p.prokind::text as kind,"
        " p.prosecdef as definer, p.proconfig as config,"
        " pg_get_function_identity_arguments(p.oid) as args, p.proname::text as name"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'supaqueue' order by 1"
    ).fetchall())  # fmt: skip


def _call_with_nulls(routine: dict[str, object]) -> sql.Composed:
    args = str(routine["args"])
    count = 0 if not args else args.count(",") + 1
    nulls = sql.SQL(", ").join([sql.SQL("null")] * count)
    verb = sql.SQL("call") if routine["kind"] == "p" else sql.SQL("select")
    return sql.SQL("{} supaqueue.{}({})").format(verb, sql.Identifier(str(routine["name"])), nulls)


@pytest.mark.parametrize("role", DENIED)
def test_api_roles_are_denied_everything(engine: Engine, role: str) -> None:
    q = engine.queue(workers=1)
    engine.insert_job(q)
    relations = _relations(engine)
    routines = _routines(engine)
    assert {"queue", "job", "worker", "current_job", "settings", "queue_stats"} <= set(relations)
    assert len(routines) >= 10
    checked = 0
    with psycopg.connect(engine.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        statements: list[sql.Composed] = []
        for rel in relations:
            ident = sql.Identifier("supaqueue", rel)
            statements += [
                sql.SQL("select * from {}").format(ident),
                sql.SQL("delete from {}").format(ident),
                sql.SQL("insert into {} default values").format(ident),
            ]
        statements += [_call_with_nulls(r) for r in routines]
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
                conn.execute(statement)
            assert "permission denied" in str(info.value)
            checked += 1
    assert checked == 3 * len(relations) + len(routines)


def test_catalog_grants_nothing_to_public_or_api_roles(engine: Engine) -> None:
    for role in ["public", *DENIED]:
        rows = engine.conn.execute(
            "select c.oid::regclass::text as obj from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'supaqueue' and c.relkind in ('r', 'v', 'S')"
            "   and has_table_privilege(%(r)s, c.oid, 'select, insert, update, delete')"
            " union all select p.oid::regprocedure::text from pg_proc p"
            " join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = 'supaqueue' and has_function_privilege(%(r)s, p.oid, 'execute')"
            " union all select 'schema' where has_schema_privilege(%(r)s, 'supaqueue', 'usage')",
            {"r": role},
        ).fetchall()
        assert rows == [], (role, rows)


def test_a_new_role_with_only_public_rights_is_denied(engine: Engine) -> None:
    name = f"nobody_{uuid.uuid4().hex[:8]}"
    engine.conn.execute(sql.SQL("create role {}").format(sql.Identifier(name)))
    # postgres is not a superuser (as on Supabase): it may SET ROLE only to roles it is a member of.
    engine.conn.execute(sql.SQL("grant {} to current_user").format(sql.Identifier(name)))
    try:
        with psycopg.connect(engine.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(name)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select supaqueue.end_current_job(gen_random_uuid(), true, true)")
    finally:
        engine.conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def test_service_role_can_run_the_queue(engine: Engine) -> None:
    q = engine.queue(workers=1)
    with psycopg.connect(engine.dsn, autocommit=True) as conn:
        conn.execute("set role service_role")
        row = conn.execute("select supaqueue.enqueue(%s, '{\"a\": 1}')", (q,)).fetchone()
        assert row is not None
        conn.execute("insert into supaqueue.job (queue, payload) values (%s, '{}')", (q,))
        cj = conn.execute("select id from supaqueue.current_job").fetchone()
        assert cj is not None
        ended = conn.execute("select supaqueue.end_current_job(%s, true, true, 200)", cj)
        assert ended.fetchone() == (True,)
        stats = conn.execute("select pending, success from supaqueue.queue_stats").fetchone()
        assert stats == (0, 1) or stats == (1, 1)
        conn.execute("select supaqueue.tick()")
        # removing the installation stays the owner's business
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select supaqueue.uninstall()")


def test_security_definer_functions_pin_an_empty_search_path(engine: Engine) -> None:
    routines = _routines(engine)
    definers = [r for r in routines if r["definer"]]
    assert len(definers) >= 10
    for r in definers:
        # Planner settings are allowed besides: jit=off (the operator's read functions,
        # sql/0013_operator.sql), enable_seqscan=off (the function's hot calls, sql/0015) and
        # plan_cache_mode=force_generic_plan (_claimed_jobs: one plan for one lease or a batch).
        config: list[str] = r["config"]  # type: ignore[assignment]
        assert config[0] == 'search_path=""', r["signature"]
        allowed = {"jit=off", "enable_seqscan=off", "plan_cache_mode=force_generic_plan"}
        assert set(config[1:]) <= allowed, r["signature"]
    # the only routines allowed to run without SECURITY DEFINER + search_path are the tick loop
    # and retention (0029) (a procedure with either may not COMMIT); they qualify every name.
    invokers = {str(r["name"]) for r in routines if not r["definer"]}
    constants = {
        "max_payload_bytes",
        "max_result_bytes",
        "max_dependency_results_bytes",
        "max_dedup_key_bytes",
        "refuse_job_value",
        "max_hold_seconds",  # 0027: the longest hold a Retry-After may put on a queue or key
    }
    # _lease_deadline, _key_bucket: inlined into their callers, which a SET clause would prevent
    # (pure).
    inlined = {"_lease_deadline", "_key_bucket"}
    assert invokers <= {
        "tick_loop", "prune_history", "default_non_retryable_statuses", "backoff_ms", *constants,
        *inlined,
    } | (CRON_EVALUATOR | TABLE_TRIGGER_MANAGEMENT)  # fmt: skip
    # those run with the caller's rights on purpose, still under an empty search_path
    for r in routines:
        if r["name"] in CRON_EVALUATOR | TABLE_TRIGGER_MANAGEMENT:
            assert not r["definer"] and r["config"] == ['search_path=""'], r["signature"]


# Pure functions (no table read or written): the schedule evaluator.
CRON_EVALUATOR = {
    "_check_timezone", "_cron_day_matches", "_cron_field", "_cron_latest_slot", "_cron_next",
    "_cron_next_wall", "_utc_offset", "cron_next", "cron_next_runs", "cron_parse",
}  # fmt: skip
# Installs triggers on a user's table: with the caller's rights, so that only a role that may
# create triggers on that table can put one there.
TABLE_TRIGGER_MANAGEMENT = {
    "_check_table_trigger_condition", "_install_table_trigger_objects",
    "_remove_table_trigger_objects", "_table_trigger_names", "_table_trigger_parts",
    "drop_table_trigger", "set_table_trigger",
}  # fmt: skip
