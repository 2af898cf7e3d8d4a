"""lease_grace_ms: a lease is timeout + grace (bounds: tests/engine/test_queue_limits.py)."""

from __future__ import annotations

import pytest

from harness.engine import Engine


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
