"""Keys for operators (issue #26): `supaqueue status` counts each queue's active keys and
`supaqueue keys QUEUE` lists its busiest keys, through the real entry point."""

from __future__ import annotations

import json

from tests.console.conftest import Jobs
from tests.console.test_cli import ok, one_line_error, supaqueue

MARKUP_KEY = "[red]tenant-c[/red]"  # a tenant's own text, shown as it is


def tenants(jobs: Jobs) -> str:
    """Queue `tenants`: key a runs (1 worker a key) with 2 ready, b runs with 1 ready, and
    MARKUP_KEY is held by a Retry-After with 1 ready."""
    e = jobs.engine
    q = e.queue(workers=2, workers_per_key=1, name="tenants")
    for key, n in (("a", 3), ("b", 2)):
        for _ in range(n):
            e.enqueue(q, {}, _key=key)
    e.conn.execute(
        "insert into supaqueue.queue_key (queue, key, due_at, held_until, hold_reason)"
        " values (%s, %s, now() + interval '10 minutes', now() + interval '10 minutes',"
        " 'HTTP 429 with Retry-After: 600 s (job z)')",
        (q, MARKUP_KEY),
    )
    e.enqueue(q, {}, _key=MARKUP_KEY)
    return q


def test_status_counts_active_keys(jobs: Jobs) -> None:
    tenants(jobs)
    rows = {r["name"]: r for r in json.loads(ok("status", "--db-url", jobs.dsn, "--json"))}
    assert rows["tenants"]["active_keys"] == 3
    assert rows["emails"]["active_keys"] == 0  # a queue without keys
    table = ok("status", "--db-url", jobs.dsn)
    header = next(line for line in table.splitlines() if "queue" in line and "keys" in line)
    line = next(line for line in table.splitlines() if "tenants" in line)
    # the keys column holds 3, below its header
    at = header.index("keys")
    assert line[at : at + 4].strip() == "3", (header, line)


def test_keys_lists_the_busiest_keys_table_and_json(jobs: Jobs) -> None:
    tenants(jobs)
    view = json.loads(ok("keys", "tenants", "--db-url", jobs.dsn, "--json"))
    assert view["queue"] == "tenants" and view["active_keys"] == 3
    got = {k["key"]: (k["running"], k["ready"], k["ready_capped"]) for k in view["keys"]}
    assert got == {"a": (1, 2, False), "b": (1, 1, False), MARKUP_KEY: (0, 1, False)}
    assert [k["key"] for k in view["keys"]] == ["a", "b", MARKUP_KEY]
    held = view["keys"][2]
    assert held["held_until"] is not None
    assert held["hold_reason"] == "HTTP 429 with Retry-After: 600 s (job z)"

    table = ok("keys", "tenants", "--db-url", jobs.dsn)
    assert "keys of queue tenants: 3 active" in table
    assert MARKUP_KEY in table  # not taken as markup
    assert "HTTP 429 with Retry-After: 600 s (job z)" in table
    a_line = next(line for line in table.splitlines() if "│ a " in line)
    assert a_line.split("│")[2].strip() == "1" and a_line.split("│")[3].strip() == "2"

    one = json.loads(ok("keys", "tenants", "--limit", "1", "--db-url", jobs.dsn, "--json"))
    assert [k["key"] for k in one["keys"]] == ["a"] and one["active_keys"] == 3
    assert "the busiest 1 of 3" in ok("keys", "tenants", "--limit", "1", "--db-url", jobs.dsn)


def test_keys_of_a_queue_without_keys_and_bad_input(jobs: Jobs) -> None:
    view = json.loads(ok("keys", "emails", "--db-url", jobs.dsn, "--json"))
    assert view == {"queue": "emails", "active_keys": 0, "keys": []}
    assert "no key has work" in ok("keys", "emails", "--db-url", jobs.dsn)
    missing = one_line_error(supaqueue("keys", "nope", "--db-url", jobs.dsn), 3)
    assert "no queue named 'nope'" in missing
    bad = supaqueue("keys", "emails", "--limit", "101", "--db-url", jobs.dsn)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
