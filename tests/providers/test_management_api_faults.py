"""The client survives the Management API's transient failures, met for real: the local stack's
stand-in answers 5xx or drops the connection on demand (`PUT /_local/management-faults`), and
the client retries with capped backoff, as it does for 429. The client's sleep is replaced by
one that records each delay (the delays are asserted, not waited out)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from supaqueue.clients import management_api
from supaqueue.clients.management_api import ManagementApi
from supaqueue.errors import ManagementApiError
from supaqueue.providers.function_secret import FunctionSecretProvider

Fault = int | str


def plan_faults(api: dict[str, str], faults: list[Fault]) -> None:
    response = httpx.put(
        f"{api['management_api_url']}/_local/management-faults",
        json={"faults": faults},
        headers={"Authorization": f"Bearer {api['access_token']}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def faulty(api: dict[str, str]) -> Iterator[dict[str, str]]:
    try:
        yield api
    finally:
        plan_faults(api, [])


def client(api: dict[str, str], waits: list[float], **kwargs: int) -> ManagementApi:
    return ManagementApi(
        api["management_api_url"],
        api["access_token"],
        api["project_ref"],
        sleep=waits.append,
        **kwargs,  # type: ignore[arg-type]
    )


def test_5xx_answers_are_retried_with_capped_backoff(faulty: dict[str, str]) -> None:
    plan_faults(faulty, [503, 502, 500, 504])
    waits: list[float] = []
    with client(faulty, waits) as api:
        assert isinstance(api.list_secrets(), list)
    assert len(waits) == 4
    assert waits == sorted(waits), "backoff grows"
    assert all(0 < w <= management_api.MAX_WAIT_SECONDS for w in waits)


def test_a_dropped_connection_is_retried(faulty: dict[str, str]) -> None:
    plan_faults(faulty, ["drop", "drop"])
    waits: list[float] = []
    with client(faulty, waits) as api:
        assert isinstance(api.list_secrets(), list)
    assert len(waits) == 2


def test_a_secret_update_does_not_fail_half_way(faulty: dict[str, str]) -> None:
    """What `pulumi up` does: the function secret set through the provider, the API failing
    twice in between."""
    props = {**faulty, "name": "SUPAQUEUE_FAULTS_TEST", "value": "v-1"}
    provider = FunctionSecretProvider()
    plan_faults(faulty, [503, "drop"])
    created = provider.create(props)
    try:
        with client(faulty, []) as api:
            names = [s["name"] for s in api.list_secrets()]
        assert "SUPAQUEUE_FAULTS_TEST" in names
    finally:
        provider.delete(str(created.id), props)


def test_when_retries_run_out_the_last_answer_is_shown(faulty: dict[str, str]) -> None:
    plan_faults(faulty, [503, 503, 503])
    waits: list[float] = []
    with client(faulty, waits, max_attempts=3) as api, pytest.raises(ManagementApiError) as caught:
        api.list_secrets()
    assert str(caught.value) == "cannot list secrets: HTTP 503: injected fault: HTTP 503"
    assert caught.value.status_code == 503
    assert len(waits) == 2
    assert faulty["access_token"] not in str(caught.value)


def test_a_client_error_is_not_retried(faulty: dict[str, str]) -> None:
    waits: list[float] = []
    with client(faulty, waits) as api, pytest.raises(ManagementApiError) as caught:
        api.create_secrets([("SUPABASE_NOT_ALLOWED", "x")])
    assert caught.value.status_code == 400
    assert waits == []


def test_the_hook_refuses_a_bad_plan_and_a_bad_token(api: dict[str, str]) -> None:
    url = f"{api['management_api_url']}/_local/management-faults"
    auth = {"Authorization": f"Bearer {api['access_token']}"}
    bodies: list[object] = [{"faults": [404]}, {"faults": "drop"}, {"nope": []}]
    for body in bodies:
        response = httpx.put(url, json=body, headers=auth, timeout=30)
        assert response.status_code == 400, body
    response = httpx.put(url, json={"faults": [503]}, headers={"Authorization": "Bearer x"})
    assert response.status_code == 401
