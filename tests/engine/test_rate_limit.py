"""Per-queue rate limit: a token bucket refilled by elapsed time, spent by dispatches."""

from __future__ import annotations

import time

import psycopg

from harness.engine import Engine


def test_burst_then_rate(engine: Engine) -> None:
    q = engine.queue(workers=20, rate_limit_per_second=4, rate_limit_burst=3)
    before = time.monotonic()
    engine.conn.execute(
        "insert into supaqueue.job (queue) select %s from generate_series(1, 20)", (q,)
    )
    after = time.monotonic()
    # a full bucket allows the burst at once (one dispatch per statement), no more
    assert len(engine.new_requests()) == 3
    sent = 3
    tick_started = tick_ended = after
    while tick_started - after < 2.0:
        time.sleep(0.05)
        tick_started = time.monotonic()
        engine.tick()
        tick_ended = time.monotonic()
        sent += len(engine.new_requests())
    # 4 tokens a second since the bucket was filled (between `before` and `after`)
    low = 3 + 4 * (tick_started - after) - 1
    high = 3 + 4 * (tick_ended - before)
    assert low <= sent <= high, (sent, low, high)


def test_rate_limit_holds_across_completions_and_enqueues(engine: Engine) -> None:
    q = engine.queue(workers=5, rate_limit_per_second=1, rate_limit_burst=1)
    jobs = [engine.insert_job(q) for _ in range(5)]
    [first] = engine.new_requests()
    assert first.job == jobs[0]
    engine.end(first.current_job)
    assert engine.new_requests() == [], "completion must not bypass the rate limit"
    time.sleep(1.1)
    engine.tick()
    assert len(engine.new_requests()) == 1


def test_no_rate_limit_by_default(engine: Engine) -> None:
    q = engine.queue(workers=50)
    rate = engine.one("select rate_limit_per_second from supaqueue.queue where id = %s", (q,))
    assert rate is None
    engine.conn.execute(
        "insert into supaqueue.job (queue) select %s from generate_series(1, 50)", (q,)
    )
    assert len(engine.new_requests()) == 50


def test_open_enqueue_transaction_does_not_block_tick_or_completions(
    engine_dsn: str, engine: Engine
) -> None:
    # A user's transaction that enqueued into a rate-limited queue and is still open must not
    # make the tick (every queue's leases, dispatch, retention) or completions wait for it.
    q = engine.queue(workers=2, rate_limit_per_second=100)
    first = engine.insert_job(q)
    [req] = engine.new_requests()
    with psycopg.connect(engine_dsn) as other:
        other.execute("insert into supaqueue.job (queue) values (%s)", (q,))  # left open
        engine.conn.execute("set lock_timeout = '2s'")
        warnings: list[str] = []
        engine.conn.add_notice_handler(lambda diag: warnings.append(str(diag.message_primary)))
        engine.tick()
        assert warnings == [], "the tick waited for the open transaction"
        assert engine.end(req.current_job)
        other.rollback()
    assert engine.status(first) == "success"
