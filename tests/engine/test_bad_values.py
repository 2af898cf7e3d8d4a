"""Bad values are refused where they enter the engine, with a message naming the field and what
to do (issue 21 item 4): a run_at no client can read, a dedup key over its limit, a table
trigger condition that is not one expression."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from harness.engine import Engine
from supaqueue import migrations
from tests.engine.test_table_triggers import hook_functions, our_triggers, set_trigger

# Any time a client library can hold (years 1..9999) is a run_at; beyond, `supaqueue jobs` and
# the dashboard failed on the row ("timestamp too small").
BAD_RUN_AT = ["-infinity", "infinity", "10000-01-01 00:00:00+00", "0001-12-31 23:59:59+00 BC"]


@pytest.mark.parametrize("run_at", BAD_RUN_AT)
def test_a_run_at_outside_the_readable_range_is_refused(engine: Engine, run_at: str) -> None:
    q = engine.queue(workers=0)
    for statement in (
        "select supaqueue.enqueue(%s, '{}', _run_at => %s::timestamptz)",
        "insert into supaqueue.job (queue, payload, run_at) values (%s, '{}', %s::timestamptz)",
    ):
        with pytest.raises(psycopg.errors.CheckViolation) as caught:
            engine.conn.execute(statement, (q, run_at))
        message = caught.value.diag.message_primary or ""
        assert message.startswith("run_at: "), message
        assert "between 0001-01-01 and 9999-12-31" in message
        assert caught.value.diag.constraint_name == "job_run_at_readable"
    assert engine.one("select count(*) from supaqueue.job") == 0
    # the range's own ends are fine, and so is the default (now)
    engine.enqueue(q, _run_at="9999-12-31 23:59:59+00")
    engine.enqueue(q, _run_at="0001-01-01 00:00:00+00")
    engine.enqueue(q)
    assert engine.one("select count(*) from supaqueue.job") == 3


def test_a_dedup_key_over_the_limit_is_refused_by_its_named_constraint(engine: Engine) -> None:
    q = engine.queue(workers=0)
    limit = engine.one("select supaqueue.max_dedup_key_bytes()")
    assert limit == 1024
    engine.enqueue(q, _dedup_key="k" * limit)  # at the limit: fine
    for key in ("é" * (limit // 2 + 1), "x" * (1024 * 1024)):
        for statement in (
            "select supaqueue.enqueue(%s, '{}', _dedup_key => %s)",
            "insert into supaqueue.job (queue, payload, dedup_key) values (%s, '{}', %s)",
        ):
            with pytest.raises(psycopg.errors.CheckViolation) as caught:
                engine.conn.execute(statement, (q, key))
            message = caught.value.diag.message_primary or ""
            assert message.startswith(f"dedup_key: {len(key.encode())} bytes, over the limit"), (
                message
            )
            assert "1024 bytes" in message and "index row" not in message
            assert key[:50] not in message  # never echoed
            assert caught.value.diag.constraint_name == "job_dedup_key_size"
    assert engine.one("select count(*) from supaqueue.job") == 1


def test_service_role_enqueueing_by_insert_gets_the_same_message(engine: Engine) -> None:
    """The constraints call functions: the role inserting must be allowed to run them."""
    q = engine.queue(workers=0)
    engine.conn.execute("set role service_role")
    try:
        engine.conn.execute(
            "insert into supaqueue.job (queue, payload, dedup_key) values (%s, '{}', 'k')", (q,)
        )
        with pytest.raises(psycopg.errors.CheckViolation) as caught:
            engine.conn.execute(
                "insert into supaqueue.job (queue, payload, run_at) values (%s, '{}', '-infinity')",
                (q,),
            )
        assert (caught.value.diag.message_primary or "").startswith("run_at: -infinity is outside")
    finally:
        engine.conn.execute("reset role")


def test_an_upgrade_brings_older_jobs_within_the_limits(pg_dsn: str) -> None:
    """Jobs enqueued before 0019 with values it refuses keep running: their run_at moves to the end
    of the range (same order), an over-long dedup key becomes its hash; the constraints then hold
    for every row, so no later UPDATE of such a job (its dispatch) is refused."""
    loaded = migrations.load_migrations()
    before = [m for m in loaded if m.version < 19]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.apply(conn, before)
        q = conn.execute(
            "insert into supaqueue.queue (name, edge_function_name) values ('old', 'f')"
            " returning id"
        ).fetchone()
        assert q is not None
        long_key = "k" * 2000
        for run_at, key in (("-infinity", None), ("infinity", "far"), ("now", long_key)):
            conn.execute(
                "insert into supaqueue.job (queue, payload, run_at, dedup_key)"
                " values (%s, '{}', %s::timestamptz, %s)",
                (q[0], run_at, key),
            )
        migrations.apply(conn, loaded)
        rows = conn.execute(
            "select to_char(run_at at time zone 'UTC', 'YYYY-MM-DD'), dedup_key"
            " from supaqueue.job order by run_at"
        ).fetchall()
        assert rows[0] == ("0001-01-01", None)
        assert rows[1][1] == "md5:" + hashlib.md5(long_key.encode()).hexdigest()
        assert rows[2] == ("9999-12-31", "far")
        valid = conn.execute(
            "select count(*) from pg_constraint where conname in"
            " ('job_run_at_readable', 'job_dedup_key_size') and convalidated"
        ).fetchone()
        assert valid == (2,)
        # every row can still change (what dispatch and completion do)
        conn.execute("update supaqueue.job set attempts = attempts")


@pytest.fixture
def victim(engine: Engine) -> str:
    engine.conn.execute("create table public.victim (id int)")
    engine.conn.execute(
        "create table public.orders (id bigint primary key, status text, total numeric)"
    )
    return "public.victim"


INJECTIONS = [
    # the reported one: a second statement after the expression
    "true)::boolean limit 0; drop table public.victim; select (true",
    # the expression closes early and comments out what follows
    "true) --",
    "true) /*",
    # balanced as text, but not one expression: its first `)` closes ours
    "true) or (true",
    # a line comment would swallow what follows the condition
    "NEW.id > 1 -- big ones",
]


@pytest.mark.parametrize("events", [["INSERT"], ["UPDATE"], ["DELETE"]])
@pytest.mark.parametrize("when", INJECTIONS)
def test_a_condition_cannot_add_a_statement(
    engine: Engine, victim: str, events: list[str], when: str
) -> None:
    q = engine.queue(workers=0)
    condition = when.replace("NEW.", "OLD.") if events == ["DELETE"] else when
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        set_trigger(engine, q, events, when=condition)
    message = caught.value.diag.message_primary or ""
    assert message.startswith("when: "), message
    assert "one SQL expression" in message
    assert engine.one("select to_regclass('public.victim') is not null") is True
    assert our_triggers(engine) == []
    assert hook_functions(engine) == 0
    assert engine.one("select count(*) from supaqueue.table_trigger") == 0


def test_one_expression_may_have_parentheses_and_a_block_comment(
    engine: Engine, victim: str
) -> None:
    q = engine.queue(workers=0)
    when = "(NEW.id > 1) or /* paid ones too */ (NEW.status = 'paid')"
    set_trigger(engine, q, ["INSERT", "UPDATE"], when=when)
    engine.conn.execute("insert into public.orders values (1, 'new', 1), (2, 'new', 1)")
    engine.conn.execute("update public.orders set status = 'paid' where id = 1")
    got = engine.conn.execute(
        "select payload->>'type' as t, payload->'record'->>'id' as id from supaqueue.job"
        " order by 1, 2"
    ).fetchall()
    assert [(r["t"], r["id"]) for r in got] == [("INSERT", "2"), ("UPDATE", "1")]


@pytest.mark.parametrize("events", [["INSERT"], ["UPDATE"], ["DELETE"]])
def test_a_subquery_is_refused_for_every_event(
    engine: Engine, victim: str, events: list[str]
) -> None:
    """UPDATE's condition is the row trigger's WHEN, where PostgreSQL allows no subquery; one
    rule for every event (the condition is a row condition)."""
    q = engine.queue(workers=0)
    row = "OLD" if events == ["DELETE"] else "NEW"
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        set_trigger(engine, q, events, when=f"{row}.id in (select id from public.victim)")
    message = caught.value.diag.message_primary or ""
    assert message.startswith("when: ") and "subquer" in message, message
    assert our_triggers(engine) == []
