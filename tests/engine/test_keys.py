"""Keys (issue 26 items 1 and 2): per-key worker and rate limits beside the queue's, and fair
(round-robin) service across keys; docs/architecture/dispatch.md, "Keys and fairness"."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from harness.engine import Engine


def _key(engine: Engine, job: str) -> str | None:
    return engine.one("select key from supaqueue.job where id = %s", (job,))  # type: ignore[no-any-return]


def _running_keys(engine: Engine, queue: str) -> list[str | None]:
    rows = engine.conn.execute(
        "select j.key from supaqueue.current_job c join supaqueue.job j on j.id = c.job"
        " where j.queue = %s order by j.key",
        (queue,),
    ).fetchall()
    return [r["key"] for r in rows]


def _busy_by_key(engine: Engine, queue: str) -> dict[str | None, int]:
    rows = engine.conn.execute(
        "select key, count(*)::int as n from supaqueue.worker where queue = %s and locked"
        " group by key",
        (queue,),
    ).fetchall()
    return {r["key"]: r["n"] for r in rows}


def test_workers_per_key_limits_each_key_and_the_queue_limits_all(engine: Engine) -> None:
    q = engine.queue(workers=4, workers_per_key=2)
    for _ in range(5):
        engine.enqueue(q, {}, _key="A")
    for _ in range(2):
        engine.enqueue(q, {}, _key="B")
    engine.enqueue(q, {}, _key="C")
    sent = engine.new_requests()
    assert len(sent) == 4  # the queue's workers
    keys = sorted(_key(engine, r.job) or "" for r in sent)
    assert keys.count("A") == 2  # A has 5 ready jobs, but only 2 workers of its own
    assert _busy_by_key(engine, q) == {k: keys.count(k) for k in set(keys)}

    # an A job ends: its worker does not chain another A job past the limit... it may (A is at 1)
    a_jobs = [r for r in sent if _key(engine, r.job) == "A"]
    out = engine.report_and_claim(a_jobs[0].current_job)
    assert out["current"] is True
    assert max(_busy_by_key(engine, q).get("A", 0), 0) <= 2
    # run everything to the end: never over either limit
    _drain(engine, q, limits={"A": 2, "B": 2, "C": 2}, workers=4)


def _drain(engine: Engine, q: str, limits: dict[str, int], workers: int) -> None:
    for _ in range(200):
        leases = engine.conn.execute(
            "select c.id::text from supaqueue.current_job c join supaqueue.job j on j.id = c.job"
            " where j.queue = %s",
            (q,),
        ).fetchall()
        if not leases:
            engine.tick()
            if not engine.conn.execute(
                "select 1 from supaqueue.current_job c join supaqueue.job j on j.id = c.job"
                " where j.queue = %s",
                (q,),
            ).fetchall():
                break
            continue
        for row in leases:
            engine.report_and_claim(row["id"])
            busy = _busy_by_key(engine, q)
            assert sum(busy.values()) <= workers
            for k, n in busy.items():
                assert k is None or n <= limits[k], busy
    left = engine.one(
        "select count(*) from supaqueue.job where queue = %s and status <> 'success'", (q,)
    )
    assert left == 0


def test_jobs_without_a_key_run_as_before_beside_keyed_ones(engine: Engine) -> None:
    q = engine.queue(workers=3, workers_per_key=1)
    plain = [engine.enqueue(q, {"n": n}) for n in range(3)]
    keyed = [engine.enqueue(q, {"n": n}, _key="A") for n in range(3)]
    sent = engine.new_requests()
    # the jobs of no key have no per-key limit; key A has one worker at most
    assert len(sent) == 3
    assert sum(1 for r in sent if r.job in keyed) <= 1
    _drain(engine, q, limits={"A": 1}, workers=3)
    assert all(engine.status(j) == "success" for j in plain + keyed)


def test_key_from_takes_the_key_from_the_payload_and_an_explicit_key_wins(engine: Engine) -> None:
    q = engine.queue(workers=1, key_from="$.tenant.id")
    assert _key(engine, engine.enqueue(q, {"tenant": {"id": "t1"}})) == "t1"
    assert _key(engine, engine.enqueue(q, {"tenant": {"id": 42}})) == "42"
    assert _key(engine, engine.enqueue(q, {"tenant": {}})) is None
    assert _key(engine, engine.enqueue(q, {"tenant": {"id": "t1"}}, _key="x")) == "x"
    # a plain INSERT (table triggers, schedules, dead letters insert so) gets it too
    assert _key(engine, engine.insert_job(q, {"tenant": {"id": "t2"}})) == "t2"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("key_from", "tenant_id"),
        ("key_from", "$.a b"),
        ("key_from", "$.a\n"),
        ("workers_per_key", 0),
        ("workers_per_key", 1001),
        ("rate_limit_per_key", 0),
        ("rate_limit_per_key", float("nan")),
        ("rate_limit_per_key", float("inf")),
        ("rate_limit_burst_per_key", 0),
    ],
)
def test_queue_key_settings_out_of_bounds_are_refused(
    engine: Engine, column: str, value: Any
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        engine.queue(workers=0, **{column: value})


def test_a_key_over_1024_bytes_is_refused_naming_the_field(engine: Engine) -> None:
    q = engine.queue(workers=0)
    with pytest.raises(psycopg.errors.CheckViolation, match="key: 1025 bytes"):
        engine.enqueue(q, {}, _key="k" * 1025)
    assert _key(engine, engine.enqueue(q, {}, _key="k" * 1024)) == "k" * 1024


def test_the_batch_and_data_api_forms_take_keys(engine: Engine) -> None:
    q = engine.queue(workers=0)
    name = engine.one("select name from supaqueue.queue where id = %s", (q,))
    ids = engine.one(
        "select supaqueue.enqueue_batch(%s, %s, _keys => %s)::text[]",
        (name, Jsonb([{}, {}, {}]), ["a", None, "c"]),
    )
    assert [_key(engine, i) for i in ids] == ["a", None, "c"]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="_keys has 1 keys for 3"):
        engine.one(
            "select supaqueue.enqueue_batch(%s, %s, _keys => %s)",
            (name, Jsonb([{}, {}, {}]), ["a"]),
        )
    by_name = engine.one("select supaqueue.enqueue(%s, '{}'::jsonb, _key => 'n')::text", (name,))
    assert _key(engine, by_name) == "n"


def test_rate_limit_per_key_holds_each_key_to_its_bucket(engine: Engine) -> None:
    # one token an hour, burst 2: each key gets exactly 2 calls now, whatever its backlog
    q = engine.queue(workers=10, rate_limit_per_key=1 / 3600, rate_limit_burst_per_key=2)
    for k in ("A", "B"):
        for _ in range(4):
            engine.enqueue(q, {}, _key=k)
    sent = engine.new_requests()
    for r in sent:
        engine.end(r.current_job)
    engine.tick()
    sent += engine.new_requests()
    keys = sorted(_key(engine, r.job) or "" for r in sent)
    assert keys == ["A", "A", "B", "B"]
    # the key waits for its next token: due in about an hour
    due = engine.one(
        "select min(extract(epoch from due_at - now()))::float from supaqueue.queue_key"
        " where queue = %s",
        (q,),
    )
    assert 3000 < due <= 3600


def test_a_held_worker_counts_against_its_calls_key_until_released(engine: Engine) -> None:
    q = engine.queue(workers=2, workers_per_key=1, timeout_ms=1000, target_wall_clock_ms=1000)
    a1 = engine.enqueue(q, {}, _key="A")
    a2 = engine.enqueue(q, {}, _key="A")
    [req] = engine.new_requests()
    assert req.job == a1
    assert engine.claim(req.current_job) is not None
    # the call was abandoned at its deadline: it may still run, its worker is held
    assert engine.end(req.current_job, success=False, complete=False)
    assert engine.status(a1) == "pending"
    engine.make_due(a1)
    engine.tick()
    # a free worker, ready A jobs, but A's one worker is held for the abandoned call
    assert engine.new_requests() == []
    assert _busy_by_key(engine, q) == {"A": 1}
    engine.conn.execute(
        "update supaqueue.worker set held_until = now() - interval '1 second'"
        " where queue = %s and held_until is not null",
        (q,),
    )
    engine.tick()
    [nxt] = engine.new_requests()
    assert nxt.job in (a1, a2)


def test_a_chained_claim_respects_the_key_limit(engine: Engine) -> None:
    q = engine.queue(workers=2, workers_per_key=1, timeout_ms=2000)
    a = [engine.enqueue(q, {}, _key="A") for _ in range(3)]
    b = engine.enqueue(q, {}, _key="B")
    sent = engine.new_requests()
    assert sorted(r.job for r in sent) == sorted([a[0], b])
    for r in sent:
        assert engine.claim(r.current_job) is not None
    # B's worker reports and chains: the next ready job is A's, but A is at its limit
    rb = next(r for r in sent if r.job == b)
    out = engine.report_and_claim(rb.current_job)
    assert out["next"] is None
    # A's worker reports and chains A's next job (its own call is over, so A is at 0 then 1)
    ra = next(r for r in sent if r.job == a[0])
    out = engine.report_and_claim(ra.current_job)
    assert out["next"]["job"]["id"] == a[1]
    assert _busy_by_key(engine, q) == {"A": 1}


# -- property: random keys, outcomes, resizes and limit changes; limits hold at every step --------


class _Model:
    """Drives one queue through random steps and checks the limits after each."""

    def __init__(self, engine: Engine, seed: int, rate: bool) -> None:
        import random

        self.e = engine
        self.rnd = random.Random(seed)
        self.rate = rate
        self.burst = 2
        self.wpk: int | None = 2
        self.q = engine.queue(
            workers=4,
            workers_per_key=self.wpk,
            max_attempts=3,
            backoff_base_ms=0,
            backoff_jitter=0,
            timeout_ms=2000,
            target_wall_clock_ms=1000,
            **({"rate_limit_per_key": 1 / 3600, "rate_limit_burst_per_key": 2} if rate else {}),
        )
        self.keys = [f"k{i}" for i in range(self.rnd.randint(1, 12))]
        self.seen: set[str] = set()
        self.dispatched: dict[str | None, int] = {}
        self.jobs: list[str] = []

    def leases(self) -> list[dict[str, Any]]:
        return self.e.conn.execute(
            "select c.id::text, c.claimed_at is not null as claimed, j.key"
            " from supaqueue.current_job c join supaqueue.job j on j.id = c.job"
            " where j.queue = %s order by c.id",
            (self.q,),
        ).fetchall()

    def check(self) -> None:
        leases = self.leases()
        new = [lease for lease in leases if lease["id"] not in self.seen]
        self.seen.update(lease["id"] for lease in leases)
        busy = _busy_by_key(self.e, self.q)
        workers = self.e.one("select count(*) from supaqueue.worker where queue = %s", (self.q,))
        assert sum(busy.values()) <= workers
        # every call in flight or held is on a locked worker that names its key
        for k in {lease["key"] for lease in leases}:
            assert busy.get(k, 0) >= sum(1 for lease in leases if lease["key"] == k)
        for lease in new:
            k = lease["key"]
            self.dispatched[k] = self.dispatched.get(k, 0) + 1
            if k is not None and self.wpk is not None:
                assert busy[k] <= self.wpk, (k, busy, self.wpk)
            if k is not None and self.rate:
                assert self.dispatched[k] <= self.burst, (k, self.dispatched)

    def step(self) -> None:
        r = self.rnd.random()
        leases = self.leases()
        if r < 0.3 or not leases:
            for _ in range(self.rnd.randint(1, 5)):
                key = self.rnd.choice([*self.keys, None])
                self.jobs.append(
                    self.e.enqueue(self.q, {}, _key=key, _priority=self.rnd.randint(0, 2))
                )
        elif r < 0.75:
            lease = self.rnd.choice(leases)
            if not lease["claimed"] and self.e.claim(lease["id"]) is None:
                return
            outcome = self.rnd.random()
            if outcome < 0.1:  # abandoned at its deadline: the worker is held
                self.e.end(lease["id"], success=False, complete=False)
            else:
                self.e.report_and_claim(
                    lease["id"],
                    chain_jobs=self.rnd.choice([1, 1, 1, None]),
                    elapsed_ms=0,
                    success=outcome > 0.3,
                    _status_code=200 if outcome > 0.3 else 500,
                )
        elif r < 0.82:
            self.e.one(
                "select supaqueue.set_worker_count(%s, %s)", (self.q, self.rnd.randint(1, 6))
            )
        elif r < 0.88:
            self.wpk = self.rnd.choice([1, 2, 3, None])
            self.e.conn.execute(
                "update supaqueue.queue set workers_per_key = %s where id = %s", (self.wpk, self.q)
            )
        elif r < 0.94:
            self.release_holds()
        else:
            lease = self.rnd.choice(leases)
            self.e.expire_lease(lease["id"])
            self.e.tick()
        self.check()

    def release_holds(self) -> None:
        self.e.conn.execute(
            "update supaqueue.worker set held_until = now() - interval '1 millisecond'"
            " where queue = %s and held_until is not null",
            (self.q,),
        )
        # retries wait for no backoff here, but their run_at may be a moment ahead
        self.e.conn.execute(
            "update supaqueue.job set run_at = now() - interval '1 millisecond'"
            " where queue = %s and status = 'pending' and run_at > now()",
            (self.q,),
        )
        self.e.tick()

    def drain(self) -> None:
        if self.rate:  # lifted, so that every job can end
            self.rate = False
            self.e.conn.execute(
                "update supaqueue.queue set rate_limit_per_key = null where id = %s", (self.q,)
            )
        for _ in range(500):
            leases = self.leases()
            if not leases:
                self.release_holds()
                self.check()
                if not self.leases():
                    break
                continue
            for lease in leases:
                if lease["claimed"] or self.e.claim(lease["id"]) is not None:
                    self.e.report_and_claim(lease["id"], chain_jobs=1, elapsed_ms=0)
                self.check()
        states = self.e.conn.execute(
            "select status::text, count(*)::int as n from supaqueue.job where queue = %s"
            " group by 1",
            (self.q,),
        ).fetchall()
        assert {s["status"] for s in states} <= {"success", "failed"}, states
        assert sum(s["n"] for s in states) == len(self.jobs)
        assert (
            self.e.one(
                "select count(*) from supaqueue.worker"
                " where queue = %s and (locked or key is not null)",
                (self.q,),
            )
            == 0
        )


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("rate", [False, True], ids=["workers_per_key", "rate_limit_per_key"])
def test_limits_hold_at_every_step_and_every_job_ends(
    engine: Engine, seed: int, rate: bool
) -> None:
    model = _Model(engine, seed, rate)
    for _ in range(120):
        model.step()
    model.drain()


# -- fairness ------------------------------------------------------------------------------------


def _run_chained(engine: Engine, q: str, n: int) -> list[str | None]:
    """Plays the dispatcher for n reports (each chains the worker's next job, as at saturation);
    returns the keys of the jobs dispatched, in order."""
    order: list[str | None] = []
    for _ in range(n):
        leases = engine.conn.execute(
            "select c.id::text, j.key from supaqueue.current_job c"
            " join supaqueue.job j on j.id = c.job where j.queue = %s"
            " order by c.started_at, c.id limit 1",
            (q,),
        ).fetchall()
        if not leases:
            break
        lease = leases[0]
        if engine.one(
            "select claimed_at is null from supaqueue.current_job where id = %s", (lease["id"],)
        ):
            engine.claim(lease["id"])
        out = engine.report_and_claim(lease["id"], chain_jobs=1, elapsed_ms=0)
        if out["next"] is not None:
            order.append(_key(engine, out["next"]["job"]["id"]))
        for r in engine.new_requests():
            order.append(_key(engine, r.job))
    return order


def test_a_big_backlog_of_one_key_does_not_delay_another_beyond_a_round(engine: Engine) -> None:
    q = engine.queue(workers=2)
    engine.conn.execute(
        "select supaqueue.enqueue_batch(name, %s, _keys => array_fill('A'::text, array[300]))"
        " from supaqueue.queue where id = %s",
        (Jsonb([{}] * 300), q),
    )
    assert len(engine.new_requests()) == 2
    for _ in range(5):
        engine.enqueue(q, {}, _key="B")
    order = _run_chained(engine, q, 12)
    # A and B take turns: B's five jobs are among the first ten dispatched after they came
    assert order[:10].count("B") == 5, order
    assert all(order[i] != order[i + 1] for i in range(9)), order


def test_among_many_busy_keys_a_new_key_waits_one_round_at_most(engine: Engine) -> None:
    q = engine.queue(workers=3, workers_per_key=3)
    for k in range(10):
        engine.conn.execute(
            "select supaqueue.enqueue_batch(name, %s, _keys => array_fill(%s::text, array[20]))"
            " from supaqueue.queue where id = %s",
            (Jsonb([{}] * 20), f"busy{k}", q),
        )
    _run_chained(engine, q, 25)
    engine.enqueue(q, {}, _key="new")
    order = _run_chained(engine, q, 15)
    # one turn each for the 10 keys with a backlog at most, then the new key
    assert "new" in order[:11], order


def test_priority_orders_jobs_within_a_key_and_keys_take_turns(engine: Engine) -> None:
    q = engine.queue(workers=1)
    first = engine.enqueue(q, {}, _key="A")  # takes the only worker
    [req] = engine.new_requests()
    assert req.job == first
    low = engine.enqueue(q, {}, _key="A", _priority=0)
    high = engine.enqueue(q, {}, _key="A", _priority=5)
    b = engine.enqueue(q, {}, _key="B", _priority=-5)
    engine.claim(req.current_job)
    got = []
    cj = req.current_job
    for _ in range(3):
        out = engine.report_and_claim(cj, chain_jobs=1, elapsed_ms=0)
        got.append(out["next"]["job"]["id"])
        cj = out["next"]["current_job"]["id"]
    # A's turn came before B's (A was last served before B's job came), then B's whatever its
    # priority, then A's again; within A by priority
    assert got == [high, b, low]


def test_a_keys_last_job_selected_when_no_worker_is_left_is_not_stranded(engine: Engine) -> None:
    # One INSERT, two keys of one job each, one worker: the dispatch takes A's job, selects B's,
    # finds no worker left. B's key must stay due (it was made idle, its job never ran: keys
    # bench, 10,000 keys).
    q = engine.queue(workers=1, workers_per_key=1)
    engine.conn.execute(
        "select supaqueue.enqueue_batch(name, %s, _keys => array['A', 'B'])"
        " from supaqueue.queue where id = %s",
        (Jsonb([{}, {}]), q),
    )
    [first] = engine.new_requests()
    assert engine.end(first.current_job)
    [second] = engine.new_requests()
    assert _key(engine, second.job) != _key(engine, first.job)


def test_the_tick_forgets_idle_keys_once_their_bucket_is_full_again(engine: Engine) -> None:
    q = engine.queue(workers=2, rate_limit_per_key=1 / 3600, rate_limit_burst_per_key=1)
    for k in ("A", "B"):
        engine.enqueue(q, {}, _key=k)
        [req] = engine.new_requests()
        assert engine.end(req.current_job)
    engine.tick()  # both keys found idle
    rows = engine.conn.execute(
        "select key, due_at from supaqueue.queue_key where queue = %s order by key", (q,)
    ).fetchall()
    assert rows == [{"key": "A", "due_at": None}, {"key": "B", "due_at": None}]
    # idle for 11 minutes; A's last token was taken 11 minutes ago, B's two hours ago
    engine.conn.execute(
        "update supaqueue.queue_key set served_at = now() - interval '11 minutes',"
        " refilled_at = now() - case key when 'A' then interval '11 minutes'"
        " else interval '2 hours' end where queue = %s",
        (q,),
    )
    engine.tick()
    keys = engine.conn.execute(
        "select key from supaqueue.queue_key where queue = %s", (q,)
    ).fetchall()
    # B's bucket is full again: its state goes; A's is not: kept, or A could run again now
    assert keys == [{"key": "A"}]
    engine.enqueue(q, {}, _key="A")
    assert engine.new_requests() == []


def _serve_one(engine: Engine, q: str) -> None:
    """One keyed selection, in its own transaction (the job stays pending, its key moves on)."""
    engine.conn.execute(
        "select n._job from supaqueue.queue q, supaqueue._next_keyed_job(q, null, '{}') n"
        " where q.id = %s",
        (q,),
    )


def test_one_insert_over_new_known_and_contended_keys_makes_every_key_due(engine: Engine) -> None:
    # The insert trigger makes new keys due in one statement, under one insert lock per bucket
    # (_key_bucket), and leaves the rest to _key_ready: a key with a row already, and the new keys
    # of a bucket another transaction is inserting into (a wake row each, applied later).
    q = engine.queue(workers=0)
    engine.enqueue(q, {}, _key="known")
    bucket = engine.one("select supaqueue._key_bucket('k1')")
    keys = ["known", *(f"k{i}" for i in range(1, 1000))]
    contended = {
        r["k"]
        for r in engine.conn.execute(
            "select k from unnest(%s::text[]) k where supaqueue._key_bucket(k) = %s",
            (keys[1:], bucket),
        ).fetchall()
    }
    with psycopg.connect(engine.dsn, autocommit=True) as other:
        with other.transaction():
            other.execute("select pg_advisory_xact_lock(hashtext(%s), %s)", (q, bucket))
            # two jobs per key: its row is due at the earlier one's run_at
            engine.conn.execute(
                "insert into supaqueue.job (queue, payload, key, run_at)"
                " select %s, '{}', k, now() + d * interval '1 hour'"
                " from unnest(%s::text[]) k, (values (1), (2)) v(d)",
                (q, keys),
            )
            rows = engine.conn.execute(
                "select k.key, k.due_at = (select min(j.run_at) from supaqueue.job j"
                " where j.queue = k.queue and j.key = k.key and j.status = 'pending') as exact"
                " from supaqueue.queue_key k where k.queue = %s",
                (q,),
            ).fetchall()
            wakes = engine.conn.execute(
                "select key from supaqueue.queue_key_wake where queue = %s", (q,)
            ).fetchall()
        assert {r["key"] for r in rows} == set(keys) - contended
        assert all(r["exact"] for r in rows if r["key"] != "known")
        assert sorted(w["key"] for w in wakes) == sorted(contended)
        assert contended
    assert engine.one("select supaqueue._key_wakes(%s)", (q,)) == len(contended)
    assert engine.one(
        "select count(*) from supaqueue.queue_key where queue = %s and due_at is not null", (q,)
    ) == len(keys)


def test_one_insert_keyed_by_key_from_makes_every_key_due(engine: Engine) -> None:
    # key_from's keys are set after the INSERT (new_rows has the jobs without them): they take
    # the same set-based path as keys given explicitly, an idle key's row included.
    q = engine.queue(workers=0, key_from="$.tenant")
    engine.enqueue(q, {"tenant": "t0"})
    engine.conn.execute("update supaqueue.queue_key set due_at = null where key = 't0'")
    engine.conn.execute(
        "insert into supaqueue.job (queue, payload, key)"
        " select %s::uuid, jsonb_build_object('tenant', 't' || (g %% 100)),"
        " case when g = 7 then 'own' end from generate_series(1, 300) g"
        " union all select %s::uuid, '{}', null",
        (q, q),
    )
    rows = engine.conn.execute(
        "select key, due_at is not null as due from supaqueue.queue_key where queue = %s", (q,)
    ).fetchall()
    assert sorted(r["key"] for r in rows) == sorted([*(f"t{i}" for i in range(100)), "own"])
    assert all(r["due"] for r in rows)
    assert engine.one("select count(*) from supaqueue.queue_key_wake") == 0


def test_a_keyed_job_ready_again_makes_its_idle_key_due(engine: Engine) -> None:
    # _450_job_key_ready fires on updates naming run_at or pending_dependencies (not status
    # alone): a dependency done, an operator's retry, run now; each finds the key idle here.
    q = engine.queue(workers=1, max_attempts=1)
    first = engine.enqueue(q, {}, _key="A")
    [req] = engine.new_requests()
    then = engine.enqueue(q, {}, _key="B", _depends_on=[first])
    later = engine.enqueue(q, {}, _key="C", _run_at="2999-01-01T00:00:00Z")

    def due(key: str) -> Any:
        return engine.one("select due_at from supaqueue.queue_key where key = %s", (key,))

    assert due("A") is None and due("C") is not None
    engine.conn.execute("update supaqueue.queue_key set due_at = null where key = 'C'")
    assert engine.end(req.current_job, success=False)  # final: B's job is cancelled
    assert engine.status(first) == "failed" and engine.status(then) == "cancelled"
    # the operator retries A's job (and so revives B's): A due, and served
    assert engine.one("select supaqueue.retry_job(%s)", (first,))
    [again] = engine.new_requests()
    assert again.job == first
    assert engine.end(again.current_job)
    # its dependency done, B's job is ready: B due, and served
    [dependent] = engine.new_requests()
    assert dependent.job == then
    assert engine.end(dependent.current_job)
    # run now: C due, and served
    assert engine.one("select supaqueue.run_job_now(%s)", (later,))
    [now] = engine.new_requests()
    assert now.job == later


def test_a_key_goes_idle_only_when_no_enqueue_of_it_is_open(engine: Engine) -> None:
    # The selection takes a key's only visible job and makes the key idle in the same statement
    # as its FOR UPDATE lock; an enqueue of the key that has not committed holds the key
    # row KEY SHARE, so the key goes to the back instead, and its new job is served once
    # committed: no wake-up lost.
    q = engine.queue(workers=0, workers_per_key=1)
    first = engine.enqueue(q, {}, _key="A")
    with psycopg.connect(engine.dsn, autocommit=True) as other:
        with other.transaction():
            second = other.execute(
                "select supaqueue.enqueue(%s::uuid, '{}'::jsonb, _key => 'A')::text", (q,)
            ).fetchone()
            _serve_one(engine, q)  # takes `first` (the only job it sees) and cannot idle A
            due = engine.one(
                "select due_at from supaqueue.queue_key where queue = %s and key = 'A'", (q,)
            )
            assert due is not None
        assert second is not None
    engine.conn.execute(
        "update supaqueue.job set status = 'cancelled', finished_at = now() where id = %s", (first,)
    )
    job = engine.one(
        "select n._job::text from supaqueue.queue q, supaqueue._next_keyed_job(q, null, '{}') n"
        " where q.id = %s",
        (q,),
    )
    assert job == second[0]
    # its last job taken, nothing open: A goes idle now
    assert (
        engine.one("select due_at from supaqueue.queue_key where queue = %s and key = 'A'", (q,))
        is None
    )


def _held_key_report(engine: Engine, current_job: str) -> tuple[psycopg.Connection, Any]:
    """A chaining report in a transaction left open (as one that has not committed yet): it
    holds its key's row, as concurrent reports of a busy key do all the time."""
    other = psycopg.connect(engine.dsn)
    row = other.execute(
        "select supaqueue.report_and_claim(%s, true, true, 200, _chain_jobs => 1,"
        " _chain_elapsed_ms => 0)",
        (current_job,),
    ).fetchone()
    assert row is not None
    return other, row[0]


def test_a_chain_goes_on_with_its_key_while_another_report_holds_the_keys_row(
    engine: Engine,
) -> None:
    # keys_bench's fairness run: two thirds of one busy key's jobs went through pg_net, as each
    # chain ended whenever another report of that key held the key's row
    q = engine.queue(workers=4, workers_per_key=2)
    engine.conn.execute(
        "select supaqueue.enqueue_batch(name, %s, _keys => array_fill('A'::text, array[10]))"
        " from supaqueue.queue where id = %s",
        (Jsonb([{}] * 10), q),
    )
    first, second = engine.new_requests()
    engine.claim(first.current_job)
    engine.claim(second.current_job)
    other, theirs = _held_key_report(engine, first.current_job)
    try:
        assert theirs["next"] is not None
        mine = engine.report_and_claim(second.current_job)
        assert mine["current"] is True
        assert mine["next"] is not None, "the chain ended: the other report held its key's row"
        assert mine["next"]["job"]["id"] != theirs["next"]["job"]["id"]
        assert _key(engine, mine["next"]["job"]["id"]) == "A"
        other.commit()
    finally:
        other.close()
    assert _busy_by_key(engine, q) == {"A": 2}
    assert engine.new_requests() == []  # both went on chained: nothing through pg_net
    _drain(engine, q, limits={"A": 2}, workers=4)


def test_a_fresh_keys_jobs_are_dispatched_in_their_enqueue_while_another_keys_report_is_open(
    engine: Engine,
) -> None:
    # keys_bench's fairness run: B's enqueue → lease stays under 2 ms behind A's chains, so B
    # waits for no tick, turn or lock of A's; the enqueue itself hands B's jobs to free workers
    q = engine.queue(workers=4, workers_per_key=2)
    engine.conn.execute(
        "select supaqueue.enqueue_batch(name, %s, _keys => array_fill('A'::text, array[10]))"
        " from supaqueue.queue where id = %s",
        (Jsonb([{}] * 10), q),
    )
    first, _ = engine.new_requests()
    engine.claim(first.current_job)
    other, theirs = _held_key_report(engine, first.current_job)  # A's row held, A at its limit
    try:
        assert theirs["next"] is not None
        b_jobs = [engine.enqueue(q, {}, _key="B") for _ in range(2)]
        sent = engine.new_requests()
        assert sorted(r.job for r in sent) == sorted(b_jobs)
        other.commit()
    finally:
        other.close()
    assert _busy_by_key(engine, q) == {"A": 2, "B": 2}


def test_a_chain_does_not_go_on_with_its_key_over_a_lowered_limit_or_a_token(
    engine: Engine,
) -> None:
    for columns in ({"workers_per_key": 2}, {"rate_limit_per_key": 1000}):
        q = engine.queue(workers=4, **columns)
        engine.conn.execute(
            "select supaqueue.enqueue_batch(name, %s, _keys => array_fill('A'::text, array[10]))"
            " from supaqueue.queue where id = %s",
            (Jsonb([{}] * 10), q),
        )
        first, second = engine.new_requests()[:2]
        engine.claim(first.current_job)
        engine.claim(second.current_job)
        if "workers_per_key" in columns:
            engine.conn.execute(
                "update supaqueue.queue set workers_per_key = 1 where id = %s", (q,)
            )
        other, _ = _held_key_report(engine, first.current_job)
        try:
            # above the lowered limit (the other worker still counts), or a token to take
            # from the key's row that the other report holds: the chain ends
            assert engine.report_and_claim(second.current_job)["next"] is None, columns
            other.commit()
        finally:
            other.close()
        engine.conn.execute("select supaqueue.cancel_jobs(%s)", (q,))


# -- concurrency: enqueuers, chaining completers and a monitor on their own connections ---------


def test_key_limits_hold_under_concurrent_enqueuers_and_chaining_reports(engine_dsn: str) -> None:
    import random
    import threading
    import time

    workers, per_key, enqueuers, per_enqueuer = 4, 2, 6, 30
    engine = Engine(engine_dsn)
    q = engine.queue(workers=workers, workers_per_key=per_key)
    name = engine.one("select name from supaqueue.queue where id = %s", (q,))
    stop = threading.Event()
    errors: list[BaseException] = []
    worst: dict[str, int] = {"total": 0, "key": 0}
    keys = ["a", "b", "c", None]

    def enqueuer(n: int) -> None:
        rnd = random.Random(n)
        try:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                for i in range(0, per_enqueuer, 3):
                    if i % 2:
                        conn.execute(
                            "select supaqueue.enqueue_batch(%s, %s, _keys => %s)",
                            (name, Jsonb([{}] * 3), [rnd.choice(keys) for _ in range(3)]),
                        )
                    else:
                        with conn.transaction():
                            for _ in range(3):
                                conn.execute(
                                    "select supaqueue.enqueue(%s, '{}'::jsonb, _key => %s)",
                                    (name, rnd.choice(keys)),
                                )
        except BaseException as exc:
            errors.append(exc)

    def completer() -> None:
        try:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                while not stop.is_set():
                    rows = conn.execute(
                        "select c.id::text, c.claimed_at is not null from supaqueue.current_job c"
                        " join supaqueue.worker w on w.id = c.worker where w.queue = %s",
                        (q,),
                    ).fetchall()
                    for cj, claimed in rows:
                        if not claimed and conn.execute(
                            "select supaqueue.claim_current_job(%s) is not null", (cj,)
                        ).fetchone() != (True,):
                            continue
                        while cj is not None:  # the chain goes on while it claims a next job
                            out = conn.execute(
                                "select supaqueue.report_and_claim(%s, true, true, 200,"
                                " _chain_jobs => 1, _chain_elapsed_ms => 0)",
                                (cj,),
                            ).fetchone()
                            nxt = out[0]["next"] if out else None
                            cj = nxt["current_job"]["id"] if nxt else None
                    if not rows:
                        time.sleep(0.002)
        except BaseException as exc:
            errors.append(exc)

    def monitor() -> None:
        try:
            with psycopg.connect(engine_dsn, autocommit=True) as conn:
                while not stop.is_set():
                    rows = conn.execute(
                        "select coalesce(key, ''), count(*) from supaqueue.worker"
                        " where queue = %s and locked group by key",
                        (q,),
                    ).fetchall()
                    worst["total"] = max(worst["total"], sum(n for _, n in rows))
                    worst["key"] = max([worst["key"], *(n for k, n in rows if k)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enqueuer, args=(n,)) for n in range(enqueuers)]
    helpers = [threading.Thread(target=completer) for _ in range(3)]
    helpers.append(threading.Thread(target=monitor))
    try:
        for t in [*helpers, *threads]:
            t.start()
        for t in threads:
            t.join(timeout=120)
        expected = enqueuers * per_enqueuer
        deadline = time.monotonic() + 90
        done = 0
        while time.monotonic() < deadline and not errors:
            done = engine.one(
                "select count(*) from supaqueue.job where queue = %s and status = 'success'", (q,)
            )
            if done == expected:
                break
            engine.tick()  # covers a commit that raced a dispatch, as in production
            time.sleep(0.05)
    finally:
        stop.set()
        for t in helpers:
            t.join(timeout=30)
        engine.close()
    assert not errors, errors
    assert done == expected, f"{done} of {expected} jobs succeeded"
    assert worst["total"] <= workers
    assert worst["key"] <= per_key, worst
    assert worst["key"] >= 1, "the monitor should have seen keys at work"
