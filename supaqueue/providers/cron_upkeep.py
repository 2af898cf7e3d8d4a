"""supaqueue's pg_cron jobs kept right on every `pulumi up`, not only once by a migration.

The migrations resource's `check` records the drift (`supaqueue.cron_drift()`: a job missing,
changed behind supaqueue's back, or in the per-minute form after pg_cron was upgraded to >= 1.5)
as its input `cron_drift`; a non-empty drift is a diff, so `up` runs the update, which calls
`reconcile` (`supaqueue.reconcile_cron()`). Preview shows the drift, one line per job.
Which schedule a pg_cron version needs is decided in SQL only (`supaqueue.cron_jobs_for`).
"""

from __future__ import annotations

import psycopg

from supaqueue.clients.postgres import connect
from supaqueue.errors import DatabaseError
from supaqueue.sql_files import queries

SQL = "cron_upkeep.sql"
KEY = "cron_drift"  # the migrations resource's input and output


def drift_on(conn: psycopg.Connection) -> list[str]:
    """What differs now; empty before supaqueue (at a version that knows) is installed."""
    text = queries(SQL)
    known = conn.execute(text["drift_known"]).fetchone()
    if not known or not known[0]:
        return []
    row = conn.execute(text["drift"]).fetchone()
    return list(row[0]) if row and row[0] else []


def drift(db_url: str) -> list[str]:
    """As `drift_on`; an unreachable database has no known drift (update reports it)."""
    try:
        with connect(db_url) as conn:
            return drift_on(conn)
    except (DatabaseError, psycopg.Error):
        return []


def reconcile(conn: psycopg.Connection) -> list[str]:
    """Reschedule what drifted. Returns the drift left afterwards, which is none: what cannot
    be repaired is an error (supaqueue does not work without its tick)."""
    if drift_on(conn):
        conn.execute(queries(SQL)["reconcile"])
    left = drift_on(conn)
    if left:
        raise DatabaseError("supaqueue's pg_cron jobs could not be rescheduled: " + "; ".join(left))
    return left
