"""Schedules (sql/*_hooks.sql), evaluated by supaqueue.tick(): one job per due slot with a dedup key
per slot, never twice for a slot (repeated or concurrent ticks), only the latest missed slot
after downtime, and firing on the pg_cron 1.4 path (the looping tick) here."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from harness.engine import Engine, wait_for_room_in_the_minute


def add_schedule(
    engine: Engine, queue: str, cron: str, payload: Any = None, tz: str = "UTC", name: str = "s"
) -> str:
    return str(
        engine.one(
            "insert into supaqueue.schedule (name, queue, cron, timezone, payload, next_run_at)"
            " values (%s, %s, %s, %s, %s, supaqueue.cron_next(%s, now(), %s)) returning id::text",
            (name, queue, cron, tz, Jsonb(payload or {}), cron, tz),
        )
    )


def make_due(engine: Engine, schedule: str, ago: str) -> None:
    """As if the tick had last run `ago` (instead of waiting): the next slot is the latest one
    at or before then."""
    engine.conn.execute(
        "update supaqueue.schedule set next_run_at = supaqueue._cron_latest_slot("
        " supaqueue.cron_parse(cron), timezone, now() - interval '400 days', now() - %s::interval)"
        " where id = %s",
        (ago, schedule),
    )


def jobs(engine: Engine) -> list[dict[str, Any]]:
    return list(
        engine.conn.execute(
            "select dedup_key, payload, run_at, queue::text from supaqueue.job order by run_at"
        ).fetchall()
    )


def test_a_due_slot_enqueues_one_job_once(engine: Engine) -> None:
    q = engine.queue(workers=0)
    s = add_schedule(engine, q, "*/5 * * * *", {"kind": "report"}, name="report")
    assert engine.tick()  # not due yet
    assert jobs(engine) == []
    make_due(engine, s, "10 seconds")
    slot = engine.one("select next_run_at from supaqueue.schedule where id = %s", (s,))
    engine.tick()
    engine.tick()  # a repeated tick finds nothing due
    assert engine.one("select supaqueue.enqueue_due_schedules()") == 0
    [job] = jobs(engine)
    assert job["payload"] == {"kind": "report"} and job["queue"] == q
    # The latest due slot: `slot`, or the next one when a five-minute boundary passed between
    # make_due and the tick (only the latest missed slot runs).
    assert job["run_at"] in (slot, slot + timedelta(minutes=5)), (job["run_at"], slot)
    slot = job["run_at"]
    assert job["dedup_key"] == f"schedule:report:{slot.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    row = engine.conn.execute(
        "select last_slot, next_run_at - last_slot as step from supaqueue.schedule"
    ).fetchone()
    assert row is not None and row["last_slot"] == slot
    assert row["step"].total_seconds() == 300


def test_after_downtime_only_the_latest_missed_slot(engine: Engine) -> None:
    q = engine.queue(workers=0)
    s = add_schedule(engine, q, "*/15 * * * *")
    make_due(engine, s, "3 hours")  # 12 slots missed
    engine.tick()
    [job] = jobs(engine)
    now = engine.one("select now()")
    assert 0 <= (now - job["run_at"]).total_seconds() < 15 * 60, "the latest slot <= now"
    assert job["run_at"].minute % 15 == 0 and job["run_at"].second == 0
    assert engine.one("select next_run_at > now() from supaqueue.schedule") is True
    # a daily schedule missed for ten days: one job, for the latest day
    d = add_schedule(engine, q, "0 3 * * *", name="daily")
    make_due(engine, d, "10 days")
    engine.tick()
    daily = [j for j in jobs(engine) if j["dedup_key"].startswith("schedule:daily:")]
    assert len(daily) == 1
    assert 0 <= (now - daily[0]["run_at"]).total_seconds() < 86400
    assert (daily[0]["run_at"].hour, daily[0]["run_at"].minute) == (3, 0)


def test_concurrent_ticks_never_enqueue_a_slot_twice(engine: Engine) -> None:
    q = engine.queue(workers=0)
    s = add_schedule(engine, q, "* * * * *")
    make_due(engine, s, "5 seconds")
    with psycopg.connect(engine.dsn) as first, psycopg.connect(engine.dsn) as second:
        got = first.execute("select supaqueue.enqueue_due_schedules()").fetchone()
        assert got == (1,)
        # the second tick skips the locked schedule instead of enqueuing its slot again
        assert second.execute("select supaqueue.enqueue_due_schedules()").fetchone() == (0,)
        first.commit()
        assert second.execute("select supaqueue.enqueue_due_schedules()").fetchone() == (0,)
        second.commit()
    assert len(jobs(engine)) == 1


def test_a_broken_schedule_does_not_stop_the_others(engine: Engine) -> None:
    q = engine.queue(workers=0)
    good = add_schedule(engine, q, "* * * * *", name="good")
    bad = add_schedule(engine, q, "* * * * *", name="bad")
    engine.conn.execute("update supaqueue.schedule set cron = 'nonsense' where id = %s", (bad,))
    make_due(engine, good, "1 second")
    engine.conn.execute(
        "update supaqueue.schedule set next_run_at = now() - interval '1 minute' where id = %s",
        (bad,),
    )
    result = engine.tick()
    assert set(result) == {"expired", "dispatched", "pruned"}
    assert [j["dedup_key"].split(":")[1] for j in jobs(engine)] == ["good"]


def test_a_queue_fed_by_a_schedule_cannot_be_dropped(engine: Engine) -> None:
    q = engine.queue(workers=0)
    add_schedule(engine, q, "* * * * *")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="schedule"):
        engine.conn.execute("select supaqueue.drop_queue(%s)", (q,))


def test_schedule_in_a_time_zone_enqueues_at_its_wall_clock(engine: Engine) -> None:
    q = engine.queue(workers=0)
    s = add_schedule(engine, q, "30 9 * * *", tz="Asia/Kolkata", name="ist")
    make_due(engine, s, "1 hour")
    engine.tick()
    [job] = jobs(engine)
    local = engine.one("select %s::timestamptz at time zone 'Asia/Kolkata'", (job["run_at"],))
    assert (local.hour, local.minute) == (9, 30)


@pytest.mark.clock
def test_schedules_fire_on_the_looping_tick(engine: Engine) -> None:
    """The pg_cron 1.4 path here: `call supaqueue.tick_loop()` (what the per-minute cron job
    runs) ticks every second; a '1 seconds' schedule gets one job per second, each slot once,
    dispatched to the queue's worker."""
    wait_for_room_in_the_minute(engine, 4)
    q = engine.queue(workers=1)
    add_schedule(engine, q, "1 seconds", {"ping": True}, name="ping")
    done = threading.Event()

    def loop() -> None:
        with psycopg.connect(engine.dsn, autocommit=True) as conn:
            conn.execute("call supaqueue.tick_loop(4)")
        done.set()

    ticker = threading.Thread(target=loop)
    started = time.monotonic()
    ticker.start()
    ticker.join(timeout=60)
    assert done.is_set(), "tick_loop(4) did not return within 60 s"
    keys = [j["dedup_key"] for j in jobs(engine)]
    assert len(keys) == len(set(keys)), "a slot was enqueued twice"
    assert len(keys) >= 3, (keys, time.monotonic() - started)
    assert all(k.startswith("schedule:ping:") for k in keys)
    # the worker took the first job: dispatched like any other job
    assert engine.in_flight(q) == 1
