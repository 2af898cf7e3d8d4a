"""The function refuses what it must refuse, before anything reaches the target or the database."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from harness.edge_engine import Dispatched, Engine
from harness.function_process import FunctionProcess
from harness.target_server import TargetServer
from tests.edge.conftest import deliver, function_env

SETTLE_S = 1.0  # long enough for any background work a wrongly accepted request would start


def assert_untouched(
    engine: Engine, target: TargetServer, slug: str, job_id: str, before: dict[str, Any]
) -> None:
    time.sleep(SETTLE_S)
    assert engine.snapshot(job_id) == before
    assert before["status"] == "in_progress" and before["leases"] == 1
    assert target.requests_for(slug) == []


@pytest.mark.parametrize(
    "secret_header",
    [None, "", "wrong", "x" * 500],
    ids=["missing", "empty", "wrong", "long"],
)
def test_bad_secret_is_401_and_changes_nothing(
    supaqueue_fn: FunctionProcess,
    engine: Engine,
    target: TargetServer,
    secret_header: str | None,
) -> None:
    slug = f"auth-{len(secret_header or '')}-{secret_header is None}"
    d = engine.dispatch(slug)
    before = engine.snapshot(d.job_id)
    response = deliver(supaqueue_fn, d, headers={"supaqueue-secret": secret_header})
    assert response.status_code == 401
    assert "supaqueue-secret" in response.json()["error"]
    assert_untouched(engine, target, slug, d.job_id, before)


def test_near_miss_secret_is_401(
    supaqueue_fn: FunctionProcess, engine: Engine, dispatch_secret: str
) -> None:
    d = engine.dispatch("auth-near-miss")
    for near in (dispatch_secret[:-1], dispatch_secret + "x", dispatch_secret.upper()):
        if near != dispatch_secret:
            assert deliver(supaqueue_fn, d, headers={"supaqueue-secret": near}).status_code == 401


def test_only_post_is_accepted(supaqueue_fn: FunctionProcess, dispatch_secret: str) -> None:
    response = httpx.get(supaqueue_fn.url, headers={"supaqueue-secret": dispatch_secret})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    # Without the secret nobody learns even that.
    assert httpx.get(supaqueue_fn.url).status_code == 401


def _mutations() -> dict[str, Callable[[dict[str, Any]], object]]:
    def drop(key: str) -> Callable[[dict[str, Any]], object]:
        return lambda b: b["current_job"].pop(key)

    def put(key: str, value: object) -> Callable[[dict[str, Any]], object]:
        return lambda b: b["current_job"].__setitem__(key, value)

    return {
        "no current_job": lambda b: b.pop("current_job"),
        "current_job not an object": lambda b: b.__setitem__("current_job", "cj"),
        "no lease id": drop("id"),
        "bad lease id": put("id", "not-a-uuid"),
        "bad job id": put("job", "not-a-uuid"),
        "attempt not integer": put("attempt", "1"),
        "attempt zero": put("attempt", 0),
    }


MUTATIONS = _mutations()


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_malformed_body_is_400_and_changes_nothing(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer, case: str
) -> None:
    slug = "bad-" + "".join(c if c.isalnum() else "-" for c in case)
    d = engine.dispatch(slug)
    before = engine.snapshot(d.job_id)
    body = d.json()
    MUTATIONS[case](body)
    response = deliver(supaqueue_fn, d, body=json.dumps(body))
    assert response.status_code == 400, response.text
    reason = response.json()["error"]
    assert isinstance(reason, str) and reason
    assert_untouched(engine, target, slug, d.job_id, before)


def test_reference_to_another_attempt_claims_nothing(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """A well-formed dispatch whose lease is not current (here: it names an attempt the job is
    not in) is accepted by HTTP, then claims nothing: no target call, no change."""
    d = engine.dispatch("not-current")
    before = engine.snapshot(d.job_id)
    body = d.json()
    body["current_job"]["attempt"] += 1
    assert deliver(supaqueue_fn, d, body=json.dumps(body)).status_code == 202
    assert_untouched(engine, target, "not-current", d.job_id, before)
    assert any(
        e.get("event") == "dispatch_not_current" and e.get("current_job") == d.current_job_id
        for e in supaqueue_fn.events()
    )


def _old_body(d: Dispatched, payload: object, slug: str) -> str:
    """The whole job, as engines before the claim sent it through pg_net."""
    return json.dumps({
        "current_job": {"id": d.current_job_id, "worker": d.current_job_id, "job": d.job_id,
                        "lease_expires_at": "2026-11-28T01:00:00+00:00"},
        "job": {"id": d.job_id, "queue": d.queue_id, "payload": payload, "attempts": 1},
        "queue": {"id": d.queue_id, "name": "q", "edge_function_name": slug, "method": "POST",
                  "default_headers": {}, "timeout_ms": 10000},
    })  # fmt: skip


def test_whole_job_body_of_an_older_engine_is_claimed_by_its_lease(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """During an upgrade pg_net may still deliver the old body (the whole job): the function
    claims its lease like any other, so the job runs once, from the database's copy."""
    d = engine.dispatch("old-body", {"from": "database"})
    body = _old_body(d, {"from": "body"}, "old-body")
    assert deliver(supaqueue_fn, d, body=body).status_code == 202
    [seen] = target.wait_for("old-body")
    assert seen.json() == {"from": "database"}
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "success"


def test_database_without_the_claim_runs_old_bodies_as_before(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """The function is deployed before the migrations: until they ran, the database has no
    claim function and sends whole jobs, which the new function runs as the old one did."""
    old = engine.dispatch("no-claim-yet", {"from": "body"})
    new = engine.dispatch("no-claim-ref")
    engine.conn.execute(
        "alter function supaqueue.claim_current_job(uuid, integer) rename to claim_hidden"
    )
    try:
        body = _old_body(old, {"from": "body"}, "no-claim-yet")
        assert deliver(supaqueue_fn, old, body=body).status_code == 202
        [attempt] = engine.wait_attempts(old.job_id)
        assert attempt["outcome"] == "success"
        assert [s.json() for s in target.requests_for("no-claim-yet")] == [{"from": "body"}]
        # A reference alone cannot be run without the claim: nothing is called.
        assert deliver(supaqueue_fn, new).status_code == 202
        time.sleep(SETTLE_S)
        assert target.requests_for("no-claim-ref") == []
    finally:
        engine.conn.execute(
            "alter function supaqueue.claim_hidden(uuid, integer) rename to claim_current_job"
        )
    events = {e.get("event") for e in supaqueue_fn.events()}
    assert {"dispatch_unclaimed_legacy", "dispatch_not_claimable"} <= events


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (b"null", "JSON object"),
    ],
    ids=["empty", "truncated", "array", "not-utf8", "null"],
)
def test_non_json_body_is_400(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer, raw: bytes, reason: str
) -> None:
    slug = f"raw-{raw.hex() or 'empty'}"
    d = engine.dispatch(slug)
    before = engine.snapshot(d.job_id)
    response = deliver(supaqueue_fn, d, body=raw)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert_untouched(engine, target, slug, d.job_id, before)


def test_missing_secret_env_is_500_clearly(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    edge_db: str,
    engine: Engine,
) -> None:
    env = function_env(target.url, edge_db, "unused")
    env.pop("SUPAQUEUE_SECRET")
    fn = start_function(env)
    d = engine.dispatch("no-secret-env")
    response = deliver(fn, d)
    assert response.status_code == 500
    assert "SUPAQUEUE_SECRET is not set" in response.json()["error"]
    assert target.requests_for("no-secret-env") == []


def test_missing_platform_env_is_500_naming_it(
    start_function: Callable[..., FunctionProcess],
    target: TargetServer,
    edge_db: str,
    engine: Engine,
    dispatch_secret: str,
) -> None:
    env = function_env(target.url, edge_db, dispatch_secret)
    env.pop("SUPABASE_DB_URL")
    fn = start_function(env)
    d = engine.dispatch("no-db-env")
    response = deliver(fn, d)
    assert response.status_code == 500
    assert "SUPABASE_DB_URL" in response.json()["error"]
    assert target.requests_for("no-db-env") == []


def test_oversized_body_is_413(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    d = engine.dispatch("too-big")
    before = engine.snapshot(d.job_id)
    big = b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    assert deliver(supaqueue_fn, d, body=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while reading
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    response = httpx.post(supaqueue_fn.url, content=chunks(), headers=d.headers, timeout=30)
    assert response.status_code == 413
    assert_untouched(engine, target, "too-big", d.job_id, before)
