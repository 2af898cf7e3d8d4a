"""The end of `make up`: enqueue a demo job and a two-step pipeline on the dev stack, wait, print.

Uses only SQL, as a user's code would (DB_URL from `supaqueue dev status -o env`).
"""

from __future__ import annotations

import json
import os
import sys
import time

import psycopg

TIMEOUT_S = 60.0


def main() -> int:
    dsn = os.environ.get("DB_URL")
    if not dsn:
        print("demo: DB_URL is not set (run through `make up`)", file=sys.stderr)
        return 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        queues: dict[str, object] = {
            name: queue_id
            for name, queue_id in conn.execute("select name, id from supaqueue.queue").fetchall()
        }
        missing = {"demo-echo", "demo-pipeline"} - queues.keys()
        if missing:
            print(f"demo: queues {sorted(missing)} are not declared on this stack", file=sys.stderr)
            return 1

        def one(query: str, *params: object) -> object:
            row = conn.execute(query, params).fetchone()
            assert row is not None
            return row[0]

        # The seed's plain INSERT, and a two-step pipeline through supaqueue.enqueue.
        echo = one(
            "insert into supaqueue.job (queue, payload) values (%s, %s) returning id",
            queues["demo-echo"],
            json.dumps({"hello": "from make up"}),
        )
        step1 = one(
            "select supaqueue.enqueue(%s, %s)", queues["demo-pipeline"], json.dumps({"step": 1})
        )
        step2 = one(
            "select supaqueue.enqueue(%s, %s, _depends_on => array[%s]::uuid[])",
            queues["demo-pipeline"],
            json.dumps({"step": 2}),
            step1,
        )
        jobs = {"demo-echo job": echo, "pipeline step 1": step1, "pipeline step 2": step2}
        deadline = time.monotonic() + TIMEOUT_S
        rows: dict[str, tuple[object, ...]] = {}
        while time.monotonic() < deadline:
            rows = {}
            for label, job_id in jobs.items():
                row = conn.execute(
                    "select status::text, attempts, result from supaqueue.job where id = %s",
                    (job_id,),
                ).fetchone()
                assert row is not None
                rows[label] = tuple(row)
            if all(r[0] in ("success", "failed", "cancelled") for r in rows.values()):
                break
            time.sleep(0.2)
    ok = True
    for label, (status, attempts, result) in rows.items():
        ok = ok and status == "success"
        print(f"demo: {label}: {status} after {attempts} attempt(s); result {json.dumps(result)}")
    if not ok:
        print("demo: not every demo job succeeded; see `.local-stack/logs/`", file=sys.stderr)
        return 1
    print("demo: the dev stack is up and a demo job succeeded.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
