"""The demo target (deployed by the dev stack only) in real Deno: echo, fail and slow on request."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from harness.function_process import FunctionProcess


@pytest.fixture(scope="module")
def demo(start_function: Callable[..., FunctionProcess]) -> FunctionProcess:
    return start_function({}, slug="demo-target")


def test_echoes_any_json_payload(demo: FunctionProcess) -> None:
    payload = {"hello": "world", "n": [1, 2, {"deep": True}]}
    response = httpx.post(
        demo.url, json=payload, headers={"supaqueue-job-id": "j1", "supaqueue-attempt": "2"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["echo"] == payload and body["method"] == "POST"
    assert body["job_id"] == "j1" and body["attempt"] == 2


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_other_body_methods(demo: FunctionProcess, method: str) -> None:
    response = httpx.request(method, demo.url, json={"a": 1})
    assert response.status_code == 200 and response.json()["echo"] == {"a": 1}


def test_non_object_json_is_echoed(demo: FunctionProcess) -> None:
    response = httpx.post(demo.url, json=[1, 2])
    assert response.status_code == 200 and response.json()["echo"] == {"value": [1, 2]}


def test_fail_true_answers_500(demo: FunctionProcess) -> None:
    response = httpx.post(demo.url, json={"fail": True})
    assert response.status_code == 500
    assert response.json()["ok"] is False and "as asked" in response.json()["error"]


@pytest.mark.parametrize("status", [201, 404, 429, 503])
def test_status_answers_that_status(demo: FunctionProcess, status: int) -> None:
    response = httpx.post(demo.url, json={"status": status})
    assert response.status_code == status


def test_get_and_delete_read_query_parameters(demo: FunctionProcess) -> None:
    assert httpx.get(demo.url, params={"status": "503"}).status_code == 503
    response = httpx.delete(demo.url, params={"x": "1"})
    assert response.status_code == 200 and response.json()["echo"] == {"x": "1"}
    assert httpx.get(demo.url, params={"fail": "true"}).status_code == 500


def test_sleep_ms_is_slow(demo: FunctionProcess) -> None:
    started = time.monotonic()
    response = httpx.post(demo.url, json={"sleep_ms": 600}, timeout=60)
    elapsed = time.monotonic() - started
    # at least the time asked for (how much longer is the machine's load, not behaviour)
    assert response.status_code == 200 and elapsed >= 0.6


def test_retry_after_header_on_request(demo: FunctionProcess) -> None:
    response = httpx.post(demo.url, json={"status": 429, "retry_after": 7})
    assert response.status_code == 429 and response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"status": 42}', b'{"status": "soon"}', b'{"sleep_ms": -1}'],
    ids=["bad-json", "status-out-of-range", "status-not-number", "negative-sleep"],
)
def test_bad_requests_are_400_with_a_reason(demo: FunctionProcess, body: bytes) -> None:
    response = httpx.post(demo.url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["ok"] is False and response.json()["error"]
