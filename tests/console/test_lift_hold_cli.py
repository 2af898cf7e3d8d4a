"""`supaqueue lift-hold QUEUE [--key KEY | --all-keys]` through the real entry point: an operator
ends a hold by the target's Retry-After early, and what waited is dispatched at once."""

from __future__ import annotations

import json

from harness.engine import Engine
from tests.console.conftest import Jobs
from tests.console.test_cli import ok, one_line_error, supaqueue


def keyed_job(e: Engine, queue: str, key: str | None) -> str:
    query = (
        "insert into supaqueue.job (queue, payload, key) values (%s, '{}', %s) returning id::text"
    )
    return str(e.one(query, (queue, key)))


def held_queue(jobs: Jobs) -> tuple[str, str]:
    """Queue `busy` (hold_on_retry_after: key): key tenant-42 held and the queue held (a job
    without a key), each by a 429 with Retry-After: 3600; one job of each waits. Their ids."""
    e = jobs.engine
    q = e.queue(workers=2, name="busy", hold_on_retry_after="key", backoff_base_ms=0)
    first_keyed, first_plain = keyed_job(e, q, "tenant-42"), keyed_job(e, q, None)
    for job in (first_keyed, first_plain):
        e.end(e.current_job_of(job), success=False, _status_code=429,
              _retry_after_seconds=3600)  # fmt: skip
    return keyed_job(e, q, "tenant-42"), keyed_job(e, q, None)


def test_lift_hold_of_the_queue_then_of_a_key(jobs: Jobs) -> None:
    waiting_keyed, waiting_plain = held_queue(jobs)
    e, db = jobs.engine, ("--db-url", jobs.dsn)
    assert e.status(waiting_plain) == "pending" and e.status(waiting_keyed) == "pending"
    assert "held until" in ok("status", *db)

    # nothing held there: said, exit 4, with what does hold the queue
    other = supaqueue("lift-hold", "busy", "--key", "other", *db, "--yes")
    assert other.returncode == 4, other.stderr
    assert "nothing to do: key 'other' of queue busy is not held" in other.stdout
    assert "queue busy itself is held until" in other.stdout
    # asks first: no terminal and no --yes, nothing changes
    refused = supaqueue("lift-hold", "busy", *db)
    assert refused.returncode == 5 and "Lift the hold of queue busy" in refused.stderr
    assert "HTTP 429 with Retry-After: 3600 s" in refused.stderr
    assert e.status(waiting_plain) == "pending"

    out = ok("lift-hold", "busy", *db, "--yes")
    assert out.strip() == (
        "queue busy: hold lifted; 1 job(s) dispatched; 1 key(s) held (--key KEY or --all-keys)"
    )
    assert e.status(waiting_plain) == "in_progress"  # at once: no tick ran
    assert e.status(waiting_keyed) == "pending"  # its key is still held

    answer = json.loads(ok("lift-hold", "busy", "--key", "tenant-42", *db, "--yes", "--json"))
    assert answer["lifted"] == 1 and answer["lifted_keys"] == 1 and answer["key"] == "tenant-42"
    assert answer["dispatched"] == 1 and answer["held_keys"] == 0
    assert e.status(waiting_keyed) == "in_progress"

    again = supaqueue("lift-hold", "busy", *db, "--yes", "--json")
    assert again.returncode == 4 and json.loads(again.stdout)["lifted"] == 0
    assert "held until" not in ok("status", *db)


def test_lift_hold_of_every_key_and_bad_usage(jobs: Jobs) -> None:
    waiting_keyed, _ = held_queue(jobs)
    db = ("--db-url", jobs.dsn)
    out = ok("lift-hold", "busy", "--all-keys", *db, "--yes")
    assert out.startswith("queue busy: holds of 1 key(s) lifted; 0 job(s) dispatched; ")
    assert "queue busy itself is held until" in out and "`supaqueue lift-hold busy`" in out
    assert jobs.engine.status(waiting_keyed) == "pending"  # the queue's own hold still holds it
    nothing = supaqueue("lift-hold", "busy", "--all-keys", *db, "--yes")
    assert nothing.returncode == 4 and "no key of queue busy is held" in nothing.stdout
    both = supaqueue("lift-hold", "busy", "--key", "a", "--all-keys", *db, "--yes")
    assert both.returncode == 2 and "not both" in both.stderr and "Traceback" not in both.stderr
    missing = supaqueue("lift-hold", "nope", *db, "--yes")
    assert "no queue named 'nope'" in one_line_error(missing, 3)
    assert "  lift-hold " in ok("--help")
