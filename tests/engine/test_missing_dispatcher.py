"""A dispatcher that answers HTTP 404 (deleted behind the stack's back: issue 21 item 6) burns no
attempts: the tick gives the lease back and holds dispatch, one probe at a time, until a probe is
claimed (sql/0018, docs/architecture.md "Missing dispatcher"). pg_net's answers are written here
as pg_net writes them into net._http_response."""

from __future__ import annotations

from harness.engine import FUNCTIONS_URL, Engine, Request

NOT_FOUND = '{"code":"NOT_FOUND","message":"Requested function was not found"}'


def _answer(engine: Engine, request: Request, status: int, content: str = NOT_FOUND) -> None:
    engine.conn.execute(
        "insert into net._http_response (id, status_code, content_type, headers, content,"
        " timed_out) values (%s, %s, 'application/json', '{}', %s, false)",
        (request.id, status, content),
    )


def _leases(engine: Engine) -> int:
    return int(engine.one("select count(*) from supaqueue.current_job"))


def _hold(engine: Engine) -> dict[str, object] | None:
    row = engine.conn.execute("select * from supaqueue.dispatch_hold").fetchone()
    return None if row is None else dict(row)


def test_a_404_gives_the_lease_back_and_holds_dispatch_to_one_probe(engine: Engine) -> None:
    q = engine.queue(workers=3)
    jobs = [engine.insert_job(q) for _ in range(3)]
    requests = engine.new_requests()
    assert len(requests) == 3
    for request in requests:
        _answer(engine, request, 404)
    engine.tick()
    # no attempt counted, nothing recorded as an attempt: the jobs are as before their dispatch...
    assert engine.one("select count(*) from supaqueue.job_attempt") == 0
    rows = engine.conn.execute(
        "select status::text, attempts from supaqueue.job where id = any(%s::uuid[])", (jobs,)
    ).fetchall()
    assert sorted((r["status"], r["attempts"]) for r in rows) == [
        ("in_progress", 1),
        ("pending", 0),
        ("pending", 0),
    ]
    # ...but for the one probe the same tick sent: dispatch is held to one call at a time
    hold = _hold(engine)
    assert hold is not None and hold["returned"] == 3 and hold["probe_lease"] is not None
    assert "HTTP 404" in str(hold["reason"]) and f"{FUNCTIONS_URL}/supaqueue" in str(hold["reason"])
    [probe] = engine.new_requests()
    assert _leases(engine) == 1
    assert engine.one("select count(*) from supaqueue.worker where locked") == 1
    # while the probe is out nothing else goes, whatever is enqueued or ticked
    engine.insert_job(q)
    engine.tick()
    assert engine.new_requests() == [] and _leases(engine) == 1
    # the probe meets another 404: given back too, and the next tick probes again
    _answer(engine, probe, 404)
    engine.tick()
    [again] = engine.new_requests()
    assert again.current_job != probe.current_job and _leases(engine) == 1
    hold = _hold(engine)
    assert hold is not None and hold["returned"] == 4
    assert engine.one("select count(*) from supaqueue.job_attempt") == 0
    assert engine.one("select max(attempts) from supaqueue.job") == 1


def test_a_claimed_probe_ends_the_hold_and_dispatch_goes_on(engine: Engine) -> None:
    q = engine.queue(workers=3)
    for _ in range(4):
        engine.insert_job(q)
    for request in engine.new_requests():
        _answer(engine, request, 404)
    engine.tick()
    [probe] = engine.new_requests()
    assert _hold(engine) is not None
    claimed = engine.claim(probe.current_job, probe.attempt)
    assert claimed["current_job"]["id"] == probe.current_job  # the dispatcher is back
    engine.tick()
    assert _hold(engine) is None
    # the two free workers take the next jobs at once
    assert len(engine.new_requests()) == 2 and _leases(engine) == 3


def test_other_answers_do_not_hold(engine: Engine) -> None:
    q = engine.queue(workers=2)
    engine.insert_job(q)
    engine.insert_job(q)
    first, second = engine.new_requests()
    _answer(engine, first, 500, '{"error": "boom"}')
    _answer(engine, second, 202, '{"accepted": true}')
    engine.tick()
    assert _hold(engine) is None and _leases(engine) == 2  # leases run their course as before


def test_an_idle_hold_probes_without_a_job_and_ends_when_answered(engine: Engine) -> None:
    """Nothing to send (the queue paused by the operator): the tick probes with a request of no
    lease every 5 s, and any answer but a 404 ends the hold."""
    q = engine.queue(workers=1)
    engine.insert_job(q)
    [request] = engine.new_requests()
    _answer(engine, request, 404)
    engine.tick()
    [probe] = engine.new_requests()  # the job itself, as the first probe
    _answer(engine, probe, 404)
    engine.conn.execute("select supaqueue.pause_queue(%s)", (q,))
    engine.tick()  # the probe's lease went back; nothing may go; the last probe was just now
    assert engine.new_requests() == [] and _hold(engine) is not None
    engine.conn.execute("update supaqueue.dispatch_hold set probed_at = now() - interval '6 s'")
    engine.tick()
    [idle] = engine.new_requests()
    assert idle.body == {"probe": "supaqueue dispatch hold"} and idle.url.endswith("/supaqueue")
    engine.tick()  # no answer yet: still held, no second probe
    assert engine.new_requests() == [] and _hold(engine) is not None
    _answer(engine, idle, 400, '{"error": "current_job must be an object"}')
    engine.tick()
    assert _hold(engine) is None
    assert engine.one("select count(*) from supaqueue.job_attempt") == 0


def test_a_keyed_job_given_back_is_dispatched_again_by_its_key(engine: Engine) -> None:
    # Its key went idle when its only job was taken; given back (pending again), the key must be
    # due again (_450_job_key_ready, which fires on updates naming run_at or
    # pending_dependencies), or the probe finds nothing and the job waits for ever.
    q = engine.queue(workers=1, workers_per_key=1)
    job = engine.enqueue(q, {}, _key="A")
    [request] = engine.new_requests()
    assert engine.one("select due_at from supaqueue.queue_key where key = 'A'") is None
    _answer(engine, request, 404)
    engine.tick()
    [probe] = engine.new_requests()
    assert probe.job == job and probe.current_job != request.current_job
    assert engine.one("select count(*) from supaqueue.job_attempt") == 0
