"""Where each job came from (sql/0021_sources_and_metrics.sql): a trigger or a schedule names
itself, a Data API request is `api`, anything else `sql`; triggers installed before the migration
are rewritten in place; an operator runs a schedule now; the overviews and `source_jobs` list
what each made; `queue_rates` counts the last minute only."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from harness.engine import Engine, install
from supaqueue import migrations


def sources(engine: Engine) -> list[tuple[str, str | None]]:
    rows = engine.conn.execute(
        "select source, source_name from supaqueue.job order by created_at, id"
    ).fetchall()
    return [(r["source"], r["source_name"]) for r in rows]


def add_schedule(engine: Engine, queue: str, name: str = "nightly") -> str:
    return str(
        engine.one(
            "insert into supaqueue.schedule (name, queue, cron, timezone, payload, next_run_at)"
            " values (%s, %s, '0 3 * * *', 'UTC', %s, now() - interval '1 second')"
            " returning id::text",
            (name, queue, Jsonb({"report": "daily"})),
        )
    )


def test_sql_api_schedule_and_trigger_jobs_name_their_source(engine: Engine) -> None:
    q = engine.queue(workers=0, name="reports")
    engine.insert_job(q, {"n": 1})
    engine.enqueue(q, {"n": 2})
    with engine.conn.transaction():
        # what PostgREST sets for each Data API request (REST insert or RPC enqueue)
        engine.conn.execute("select set_config('request.method', 'POST', true)")
        engine.enqueue(q, {"n": 3})
    assert sources(engine) == [("sql", None), ("sql", None), ("api", None)]

    add_schedule(engine, q)
    engine.one("select supaqueue.enqueue_due_schedules()")
    engine.conn.execute("create table public.orders (id bigint primary key, status text)")
    engine.one(
        "select supaqueue.set_table_trigger(null, 'new-orders', %s, 'public', 'orders',"
        " array['INSERT', 'UPDATE'], null)",
        (q,),
    )
    engine.conn.execute("insert into public.orders values (1, 'new'), (2, 'new')")
    engine.conn.execute("update public.orders set status = 'paid' where id = 1")
    assert sources(engine)[3:] == [("schedule", "nightly")] + [("trigger", "new-orders")] * 3


def test_a_trigger_installed_before_the_migration_names_itself_after_it(pg_dsn: str) -> None:
    everything = migrations.load_migrations()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrations.apply(conn, [m for m in everything if m.version < 21])
    e = Engine(pg_dsn)
    try:
        q = e.queue(workers=0, name="orders-q")
        e.conn.execute("create table public.orders (id bigint primary key)")
        e.one(
            "select supaqueue.set_table_trigger(null, 'old-trigger', %s, 'public', 'orders',"
            " array['INSERT', 'UPDATE', 'DELETE'], null)",
            (q,),
        )
        e.conn.execute("insert into public.orders values (1)")
        install(pg_dsn)  # the rest, 0021 among them
        e.conn.execute("insert into public.orders values (2)")
        e.conn.execute("update public.orders set id = 3 where id = 2")
        e.conn.execute("delete from public.orders where id = 3")
        # the job from before keeps `sql` (it cannot be told apart); the new ones are the trigger's
        assert sources(e) == [("sql", None)] + [("trigger", "old-trigger")] * 3
    finally:
        e.close()


def test_run_a_schedule_now_and_what_each_source_made(engine: Engine) -> None:
    q = engine.queue(workers=0, name="reports")
    schedule = add_schedule(engine, q)
    slot_before = engine.one(
        "select next_run_at from supaqueue.schedule where id = %s", (schedule,)
    )
    job = str(engine.one("select supaqueue.run_schedule_now(%s)::text", (schedule,)))
    row = engine.conn.execute(
        "select payload, source, source_name, dedup_key, status::text from supaqueue.job"
        " where id = %s",
        (job,),
    ).fetchone()
    assert row is not None
    assert row["payload"] == {"report": "daily"} and row["status"] == "pending"
    assert (row["source"], row["source_name"]) == ("schedule", "nightly")
    assert row["dedup_key"].startswith("schedule:nightly:now:")
    # its slots stay as they were
    assert (
        engine.one("select next_run_at from supaqueue.schedule where id = %s", (schedule,))
        == slot_before
    )
    with pytest.raises(psycopg.Error) as missing:
        engine.one("select supaqueue.run_schedule_now(gen_random_uuid())")
    assert missing.value.diag.sqlstate == "SQ005"

    engine.one("select supaqueue.enqueue_due_schedules()")
    overview = engine.conn.execute("select * from supaqueue.schedule_overview()").fetchall()
    assert len(overview) == 1
    assert overview[0]["name"] == "nightly" and overview[0]["queue_name"] == "reports"
    assert overview[0]["jobs_last_day"] == 2 and overview[0]["last_slot"] is not None
    made = engine.conn.execute(
        "select id::text from supaqueue.source_jobs('schedule', 'nightly')"
    ).fetchall()
    assert len(made) == 2 and job in {r["id"] for r in made}
    assert overview[0]["last_job"] is not None and str(overview[0]["last_job"]) == made[0]["id"]
    with pytest.raises(psycopg.Error) as bad:
        engine.one("select * from supaqueue.source_jobs('sql', 'x')")
    assert bad.value.diag.sqlstate == "22023"

    engine.conn.execute("create table public.orders (id bigint primary key)")
    engine.one(
        "select supaqueue.set_table_trigger(null, 'new-orders', %s, 'public', 'orders',"
        " array['INSERT'], 'new.id > 1')",
        (q,),
    )
    engine.conn.execute("insert into public.orders values (1), (2), (3)")
    triggers = engine.conn.execute("select * from supaqueue.trigger_overview()").fetchall()
    assert [(t["name"], t["table_name"], t["events"], t["jobs_last_day"]) for t in triggers] == [
        ("new-orders", "orders", ["INSERT"], 2)
    ]


def test_queue_rates_count_the_last_minute_only(engine: Engine) -> None:
    q = engine.queue(workers=0, name="emails")
    with engine.conn.transaction():  # one now() for the rows and both reads
        engine.conn.execute(
            "insert into supaqueue.job (queue, status, finished_at, created_at)"
            " select %s, 'success', now() - g * interval '1 second', now() - interval '2 hours'"
            " from generate_series(1, 90) g",
            (q,),
        )
        rate = engine.conn.execute("select * from supaqueue.queue_rates()").fetchone()
        hour = engine.conn.execute(
            "select succeeded_per_minute from supaqueue.queue_figures('1 hour')"
        ).fetchone()
    assert rate is not None
    # 59 finished within the last minute (1..59 s ago); 60..90 s ago are outside it
    assert rate["succeeded"] == 59 and rate["succeeded_per_minute"] == pytest.approx(59)
    assert hour is not None and hour["succeeded_per_minute"] == pytest.approx(1.5)
