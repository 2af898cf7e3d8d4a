"""lease_grace_ms: a dispatch's lease is timeout + grace; queue_spec's bounds are the SQL's."""

from __future__ import annotations

import psycopg
import pytest

from components.queue_spec import MAX_LEASE_GRACE_MS, validate_queue
from tests.engine.harness import Engine


@pytest.mark.parametrize("grace_ms", [0, 1500, 30_000])
def test_the_lease_is_timeout_plus_grace(engine: Engine, grace_ms: int) -> None:
    q = engine.queue(workers=1, timeout_ms=2000, lease_grace_ms=grace_ms)
    job = engine.insert_job(q)
    lease = engine.one(
        "select extract(epoch from lease_expires_at - started_at) * 1000"
        " from supaqueue.current_job where job = %s",
        (job,),
    )
    assert float(lease) == pytest.approx(2000 + grace_ms)


def test_the_bounds_of_the_setting_are_the_engine_bounds(engine: Engine) -> None:
    for grace, accepted in [(0, True), (MAX_LEASE_GRACE_MS, True), (-1, False),
                            (MAX_LEASE_GRACE_MS + 1, False)]:  # fmt: skip
        spec_ok = not validate_queue({"name": "q", "edge_function_name": "f",
                                      "lease_grace_ms": grace})  # fmt: skip
        try:
            with engine.conn.transaction():
                engine.queue(workers=0, lease_grace_ms=grace)
                raise _RolledBack
        except (psycopg.errors.CheckViolation, psycopg.errors.NumericValueOutOfRange):
            sql_ok = False
        except _RolledBack:
            sql_ok = True
        assert (spec_ok, sql_ok) == (accepted, accepted), grace


class _RolledBack(Exception):
    pass
