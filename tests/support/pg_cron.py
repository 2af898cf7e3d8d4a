"""pg_cron facts for tests, and the one loud warning for what this machine cannot run.

Supabase ships pg_cron 1.6 (seconds schedules); this machine can install only Debian's 1.4, so
the >= 1.5 branch of supaqueue's tick schedule is asserted as far as 1.4 allows and named here.
"""

from __future__ import annotations

import warnings

import psycopg


def pg_cron_version(conn: psycopg.Connection) -> str:
    row = conn.execute("select extversion from pg_extension where extname = 'pg_cron'").fetchone()
    assert row is not None, "pg_cron is not installed in this database"
    return str(row[0])


def has_seconds_schedules(version: str) -> bool:
    """pg_cron >= 1.5 accepts '1 seconds'; a test's own reading, checked against supaqueue's."""
    return tuple(int(p) for p in version.split("-")[0].split(".")[:2]) >= (1, 5)


def warn_not_tested_here(version: str, what: str) -> None:
    """Say loudly that `what` (the pg_cron >= 1.5 branch) did not run here."""
    warnings.warn(
        f"NOT TESTED HERE: pg_cron {version} is installed, so {what} did not run; "
        "that branch (Supabase's pg_cron 1.6) needs a pg_cron >= 1.5 this machine cannot install",
        UserWarning,
        stacklevel=2,
    )
