"""Per-queue rate limit: a token bucket refilled by elapsed time, spent by dispatches."""

from __future__ import annotations

import time

from tests.engine.harness import Engine


def test_burst_then_rate(engine: Engine) -> None:
    q = engine.queue(workers=20, rate_limit_per_second=4, rate_limit_burst=3)
    engine.conn.execute(
        "insert into supaqueue.job (queue) select %s from generate_series(1, 20)", (q,)
    )
    # a full bucket allows the burst at once, no more
    assert len(engine.new_requests()) == 3
    assert engine.tick()["dispatched"] == 0
    started = time.monotonic()
    sent = 3
    elapsed = 0.0
    while elapsed < 2.0:
        time.sleep(0.05)
        elapsed = time.monotonic() - started
        engine.tick()
        sent += len(engine.new_requests())
    # 4 per second refill: about 8 more in 2 s (one token of slack for timing)
    assert 3 + 4 * elapsed - 1 <= sent <= 3 + 4 * elapsed + 1, (sent, elapsed)


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
