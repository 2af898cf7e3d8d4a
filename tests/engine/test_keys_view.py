"""The operator's view of keys (issue #26): `queue_keys` and `active_key_count`
(functions/75_operator.sql, docs/architecture/console.md). Counts with running, held and
delayed keys; output bounded by its limit and its ready cap."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from harness.engine import Engine


def _keys(engine: Engine, q: str, **args: Any) -> list[dict[str, Any]]:
    named = "".join(f", {k} => %({k})s" for k in args)
    return list(
        engine.conn.execute(
            f"select * from supaqueue.queue_keys(%(q)s{named})", {"q": q, **args}
        ).fetchall()
    )


def _hold(engine: Engine, q: str, key: str) -> None:
    # as _hold_on_retry_after (50_completion.sql) holds a key: the row, its turn at the hold's end
    engine.conn.execute(
        "insert into supaqueue.queue_key (queue, key, due_at, held_until, hold_reason)"
        " values (%s, %s, now() + interval '1 hour', now() + interval '1 hour', 'test hold')",
        (q, key),
    )


def test_queue_keys_counts_running_ready_and_held_keys(engine: Engine) -> None:
    q = engine.queue(workers=2, workers_per_key=2)
    for _ in range(5):
        engine.enqueue(q, {}, _key="A")  # 2 run (every worker), 3 wait
    _hold(engine, q, "B")
    for _ in range(3):
        engine.enqueue(q, {}, _key="B")
    engine.enqueue(q, {}, _key="C")
    engine.conn.execute(
        "select supaqueue.enqueue(%s, '{}'::jsonb, _key => 'C',"
        " _run_at => now() + interval '1 hour')",
        (q,),
    )
    engine.enqueue(q, {})  # no key: not a key's
    assert len(engine.new_requests()) == 2

    rows = _keys(engine, q)
    view = {r["key"]: (r["running"], r["ready"], r["ready_capped"]) for r in rows}
    assert view == {
        "A": (2, 3, False),
        "B": (0, 3, False),
        "C": (0, 1, False),
    }  # its delayed job is not ready
    assert [r["key"] for r in rows] == ["A", "B", "C"]  # most running, then most ready
    b = next(r for r in rows if r["key"] == "B")
    assert b["held_until"] is not None and b["hold_reason"] == "test hold"
    assert all(r["held_until"] is None for r in rows if r["key"] != "B")
    assert {r["active_keys"] for r in rows} == {3}
    assert engine.one("select supaqueue.active_key_count(%s)", (q,)) == 3

    # bounded: the limit cuts the rows, the cap cuts the count (and says so)
    capped = _keys(engine, q, _limit=1, _ready_cap=2)
    assert [(r["key"], r["ready"], r["ready_capped"]) for r in capped] == [("A", 2, True)]


def test_queue_keys_is_bounded_with_many_keys(engine: Engine) -> None:
    q = engine.queue(workers=1, paused=True)
    engine.conn.execute(
        "select supaqueue.enqueue_batch((select name from supaqueue.queue where id = %s),"
        " (select jsonb_agg('{}'::jsonb) from generate_series(1, 300)),"
        " _keys => array(select 'k' || n from generate_series(1, 300) n))",
        (q,),
    )
    rows = _keys(engine, q, _limit=5)
    assert len(rows) == 5
    assert all(r["ready"] == 1 and r["running"] == 0 for r in rows)
    assert rows[0]["active_keys"] == 300


def test_queue_keys_refuses_bad_arguments_and_unknown_queues(engine: Engine) -> None:
    q = engine.queue(workers=1)
    assert _keys(engine, q) == []  # no keys: no rows
    assert engine.one("select supaqueue.active_key_count(%s)", (q,)) == 0
    for args in ({"_limit": 0}, {"_limit": 101}, {"_ready_cap": 0}):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="out of range"):
            _keys(engine, q, **args)
    with pytest.raises(psycopg.Error, match="no queue") as exc:
        _keys(engine, "00000000-0000-0000-0000-000000000000")
    assert exc.value.diag.sqlstate == "SQ005"
    assert engine.one(
        "select has_function_privilege('service_role',"
        " 'supaqueue.queue_keys(uuid, integer, integer)', 'execute')"
    )
    assert not engine.one(
        "select has_function_privilege('anon',"
        " 'supaqueue.queue_keys(uuid, integer, integer)', 'execute')"
    )
