"""Enqueue from Python with psycopg, then wait for the job's result."""

import json
import os
import time

import psycopg
from psycopg.types.json import Jsonb

with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    # By name: a misspelled or removed queue raises (SQLSTATE SQ020) instead of losing the job.
    [(job_id,)] = conn.execute(
        "select supaqueue.enqueue(%s, %s)", ("emails", Jsonb({"to": "ada@example.com"}))
    ).fetchall()
    # Many jobs in one statement; the ids come back in the payloads' order.
    [(ids,)] = conn.execute(
        "select supaqueue.enqueue_batch(%s, %s)",
        ("emails", Jsonb([{"to": "bob@example.com"}, {"to": "eve@example.com"}])),
    ).fetchall()
    for _ in range(600):  # wait at most about a minute for the first job
        [(status, result, error)] = conn.execute(
            "select status, result, last_error from supaqueue.get_job(%s)", (job_id,)
        ).fetchall()
        if status in ("success", "failed", "cancelled"):
            break
        time.sleep(0.1)
    print(json.dumps({"job": str(job_id), "batch": [str(i) for i in ids], "status": status,
                      "result": result, "error": error}))  # fmt: skip
