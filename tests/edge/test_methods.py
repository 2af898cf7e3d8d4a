"""The target is called with the queue's method, headers and payload encoding."""

from __future__ import annotations

import json

import pytest

from harness.edge_engine import Engine
from harness.function_process import FunctionProcess
from harness.target_server import TargetServer
from tests.edge.conftest import SERVICE_ROLE_KEY, deliver

PAYLOAD = {"n": 1, "text": "a b&c", "flag": True, "list": [1, "two"], "obj": {"k": "v"}}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_body_methods_send_the_payload_as_json(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer, method: str
) -> None:
    slug = f"echo-{method.lower()}"
    d = engine.dispatch(slug, PAYLOAD, method=method)
    assert deliver(supaqueue_fn, d).status_code == 202
    [seen] = target.wait_for(slug)
    assert seen.method == method
    assert seen.json() == PAYLOAD
    assert seen.headers["content-type"] == "application/json"
    assert seen.query == []
    assert seen.headers["supaqueue-job-id"] == d.job_id
    assert seen.headers["supaqueue-attempt"] == "1"
    [attempt] = engine.wait_attempts(d.job_id)
    assert attempt["outcome"] == "success" and attempt["status_code"] == 200
    job = engine.job(d.job_id)
    assert job["status"] == "success"
    assert job["result"] == {"echo": True, "method": method, "query": []}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_query_methods_send_the_payload_as_query_parameters(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer, method: str
) -> None:
    slug = f"echo-{method.lower()}"
    d = engine.dispatch(slug, PAYLOAD, method=method)
    assert deliver(supaqueue_fn, d).status_code == 202
    [seen] = target.wait_for(slug)
    assert seen.method == method
    assert seen.body == b""
    # jsonb orders keys its own way; the values and repeats are what count.
    assert sorted(seen.query) == sorted(
        [
            ("n", "1"),
            ("text", "a b&c"),
            ("flag", "true"),
            ("list", "1"),
            ("list", "two"),
            ("obj", json.dumps({"k": "v"}, separators=(",", ":"))),
        ]
    )
    assert "content-type" not in seen.headers
    engine.wait_attempts(d.job_id)
    assert engine.job(d.job_id)["status"] == "success"


def test_default_authorization_is_the_service_role_key(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    d = engine.dispatch("auth-default", headers={"x-team": "blue"})
    assert deliver(supaqueue_fn, d).status_code == 202
    [seen] = target.wait_for("auth-default")
    assert seen.headers["authorization"] == f"Bearer {SERVICE_ROLE_KEY}"
    assert seen.headers["x-team"] == "blue"
    # The dispatcher's own secret never travels on to the target.
    assert "supaqueue-secret" not in seen.headers


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION"])
def test_queue_authorization_overrides_the_default(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer, name: str
) -> None:
    slug = f"auth-override-{name}"
    d = engine.dispatch(slug, headers={name: "Bearer queue-own-token"})
    assert deliver(supaqueue_fn, d).status_code == 202
    [seen] = target.wait_for(slug)
    assert seen.headers["authorization"] == "Bearer queue-own-token"
    assert SERVICE_ROLE_KEY not in json.dumps(seen.headers)


def test_queue_content_type_is_kept(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    d = engine.dispatch("ctype", {"a": 1}, headers={"Content-Type": "application/vnd.api+json"})
    assert deliver(supaqueue_fn, d).status_code == 202
    [seen] = target.wait_for("ctype")
    assert seen.headers["content-type"] == "application/vnd.api+json"


def test_pipeline_step_receives_its_dependency_results(
    supaqueue_fn: FunctionProcess, engine: Engine, target: TargetServer
) -> None:
    """A step's JSON result, recorded through end_current_job, reaches the step after it."""
    first_q = engine.queue("step-one")
    second_q = engine.queue("step-two")
    first = engine.enqueue(first_q, {"step": 1})
    row = engine.conn.execute(
        "select supaqueue.enqueue(%s, '{\"step\": 2}'::jsonb, _depends_on => array[%s]::uuid[])"
        " as id",
        (second_q, first),
    ).fetchone()
    assert row is not None
    second = str(row["id"])
    assert deliver(supaqueue_fn, engine.dispatched(first)).status_code == 202
    engine.wait_attempts(first)
    d2 = engine.dispatched(second)  # dispatched by end_current_job of the first step
    assert deliver(supaqueue_fn, d2).status_code == 202
    [seen] = target.wait_for("step-two")
    assert seen.json() == {
        "step": 2,
        "dependency_results": {first: {"echo": True, "method": "POST", "query": []}},
    }
    engine.wait_attempts(second)
    assert engine.job(second)["status"] == "success"
