"""`supaqueue lift-hold QUEUE [--key KEY | --all-keys]` through the real entry point: an operator
ends a hold by the target's Retry-After early, what waited is dispatched at once, and the jobs
whose 429 set the hold (their retry an hour away) are made due now with it (0033)."""

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


def held_queue(jobs: Jobs) -> tuple[str, str, str, str]:
    """Queue `busy` (hold_on_retry_after: key, 4 workers): key tenant-42 held and the queue held
    (a job without a key), each by a 429 with Retry-After: 3600, whose jobs retry in an hour;
    one more job of each waits. Ids: waiting keyed, waiting plain, answered keyed, answered
    plain."""
    e = jobs.engine
    q = e.queue(workers=4, name="busy", hold_on_retry_after="key", backoff_base_ms=0)
    first_keyed, first_plain = keyed_job(e, q, "tenant-42"), keyed_job(e, q, None)
    for job in (first_keyed, first_plain):
        e.end(e.current_job_of(job), success=False, _status_code=429,
              _retry_after_seconds=3600)  # fmt: skip
    return keyed_job(e, q, "tenant-42"), keyed_job(e, q, None), first_keyed, first_plain


def test_lift_hold_of_the_queue_then_of_a_key(jobs: Jobs) -> None:
    waiting_keyed, waiting_plain, answered_keyed, answered_plain = held_queue(jobs)
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
    # and how many jobs it makes due: the unkeyed one, not the keyed one (its key's hold)
    assert "and 1 job(s) its Retry-After delayed are due now" in refused.stderr
    assert e.status(waiting_plain) == "pending"

    out = ok("lift-hold", "busy", *db, "--yes")
    assert out.strip() == (
        "queue busy: hold lifted; 1 job(s) delayed by a Retry-After made due now;"
        " 2 job(s) dispatched; 1 key(s) held (--key KEY or --all-keys)"
    )
    # at once, no tick ran: the job that waited and the one whose 429 set the hold
    assert e.status(waiting_plain) == e.status(answered_plain) == "in_progress"
    # its key is still held: the keyed jobs wait, the answered one still an hour away
    assert e.status(waiting_keyed) == e.status(answered_keyed) == "pending"
    assert e.job(answered_keyed)["run_in_s"] > 3500

    asked = supaqueue("lift-hold", "busy", "--key", "tenant-42", *db)
    assert asked.returncode == 5
    assert "and 1 job(s) its Retry-After delayed are due now" in asked.stderr
    answer = json.loads(ok("lift-hold", "busy", "--key", "tenant-42", *db, "--yes", "--json"))
    assert answer["lifted"] == 1 and answer["lifted_keys"] == 1 and answer["key"] == "tenant-42"
    assert (answer["made_due"], answer["dispatched"], answer["held_keys"]) == (1, 2, 0)
    assert e.status(waiting_keyed) == e.status(answered_keyed) == "in_progress"

    again = supaqueue("lift-hold", "busy", *db, "--yes", "--json")
    assert again.returncode == 4 and json.loads(again.stdout)["lifted"] == 0
    assert "held until" not in ok("status", *db)


def test_lift_hold_of_every_key_and_bad_usage(jobs: Jobs) -> None:
    waiting_keyed, _, answered_keyed, answered_plain = held_queue(jobs)
    e, db = jobs.engine, ("--db-url", jobs.dsn)
    out = ok("lift-hold", "busy", "--all-keys", *db, "--yes")
    assert out.startswith(
        "queue busy: holds of 1 key(s) lifted; 1 job(s) delayed by a Retry-After made due now;"
        " 0 job(s) dispatched; "
    )
    assert "queue busy itself is held until" in out and "`supaqueue lift-hold busy`" in out
    assert e.status(waiting_keyed) == "pending"  # the queue's own hold still holds it
    # the key's answered job is due (behind the queue's hold); the unkeyed one is the queue's
    assert e.job(answered_keyed)["run_in_s"] <= 0 and e.job(answered_plain)["run_in_s"] > 3500
    nothing = supaqueue("lift-hold", "busy", "--all-keys", *db, "--yes")
    assert nothing.returncode == 4 and "no key of queue busy is held" in nothing.stdout
    both = supaqueue("lift-hold", "busy", "--key", "a", "--all-keys", *db, "--yes")
    assert both.returncode == 2 and "not both" in both.stderr and "Traceback" not in both.stderr
    missing = supaqueue("lift-hold", "nope", *db, "--yes")
    assert "no queue named 'nope'" in one_line_error(missing, 3)
    assert "  lift-hold " in ok("--help")
