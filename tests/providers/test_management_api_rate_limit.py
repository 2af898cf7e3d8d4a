"""The client meets the local stack's real 429s (the stand-in enforces the per-minute limit with
Retry-After and X-RateLimit-* headers, as the API does). Waiting out a real window takes up to a
minute, so the client's sleep is replaced by one that records the delay and lifts the limit."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from supaqueue.clients.management_api import ManagementApi
from supaqueue.errors import ManagementApiError


def set_limit(api: dict[str, str], per_minute: int) -> None:
    response = httpx.put(
        f"{api['management_api_url']}/_local/management-rate-limit",
        json={"requests_per_minute": per_minute},
        headers={"Authorization": f"Bearer {api['access_token']}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def limited(api: dict[str, str]) -> Iterator[dict[str, str]]:
    set_limit(api, 1)
    try:
        yield api
    finally:
        set_limit(api, 120)


def test_a_real_429_is_waited_out_and_retried(limited: dict[str, str]) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        set_limit(limited, 120)  # the window "passes"

    client = ManagementApi(
        limited["management_api_url"], limited["access_token"], limited["project_ref"], sleep=sleep
    )
    with client:
        client.list_secrets()  # uses the one request this minute allows
        assert isinstance(client.list_secrets(), list)  # 429, wait, retry, 200
    assert len(waits) == 1 and 0 < waits[0] <= 60


def test_when_retries_run_out_the_api_message_is_shown(limited: dict[str, str]) -> None:
    client = ManagementApi(
        limited["management_api_url"],
        limited["access_token"],
        limited["project_ref"],
        max_attempts=1,
    )
    with client, pytest.raises(ManagementApiError) as caught:
        client.list_secrets()
        client.list_secrets()
    assert "cannot list secrets: HTTP 429" in str(caught.value)
    assert "rate limit" in str(caught.value).lower()
    assert limited["access_token"] not in str(caught.value)
