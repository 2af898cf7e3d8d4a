"""The dashboard's actions refuse malformed bodies with a 400 naming the field (issue 21 item 4:
a purge with invalid JSON or a list answered 500, and `older_than_hours: true` purged as 1 hour).
Plain HTTP against a real `supaqueue ui`; no browser needed."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from supaqueue.console.dashboard.server import MAX_PURGE_HOURS
from tests.console.conftest import Jobs
from tests.console.test_dashboard import Ui

FINISHED = "select count(*) from supaqueue.job where finished_at is not null"


@pytest.fixture
def client(jobs: Jobs) -> Iterator[httpx.Client]:
    server = Ui(jobs.dsn)
    try:
        with httpx.Client(base_url=server.origin, timeout=30) as http:
            token = server.url.split("token=", 1)[1]
            http.get("/", params={"token": token}, follow_redirects=False)
            page = http.get("/").text
            found = re.search(r'name="csrf-token" content="([^"]+)"', page)
            assert found, page[:500]
            http.headers.update({"X-CSRF-Token": found.group(1), "Origin": server.origin})
            yield http
    finally:
        err = server.stop()
        assert "Traceback" not in err, err


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "it is not valid JSON"),
        (b"\xff\xfe{", "it is not valid JSON"),
        (b'["success"]', "got a JSON list"),
        (b'"success"', "got a JSON str"),
        (b'{"older_than_hours": true}', "older_than_hours must be a whole number"),
        (b'{"older_than_hours": 1.5}', "older_than_hours must be a whole number"),
        (b'{"older_than_hours": -1}', "older_than_hours must be a whole number"),
        (b'{"older_than_hours": NaN}', "got NaN"),
        (b'{"older_than_hours": 99999999999}', f"from 0 to {MAX_PURGE_HOURS}"),
        (b'{"states": "success"}', "states must be a list"),
        (b'{"states": [1]}', "states must be a list"),
        (b'{"states": ["pending"]}', "cannot be purged"),
        (b'{"state": ["success"]}', "unknown field(s) 'state'"),
    ],
)
def test_a_malformed_purge_is_a_400_naming_the_field(
    client: httpx.Client, jobs: Jobs, body: bytes, says: str
) -> None:
    before = jobs.engine.one(FINISHED)
    answer = client.post(
        "/api/queues/emails/purge", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"], answer.json()
    assert jobs.engine.one(FINISHED) == before


def test_a_well_formed_purge_still_purges(client: httpx.Client, jobs: Jobs) -> None:
    kept = client.post("/api/queues/emails/purge", json={"older_than_hours": 1})
    assert kept.status_code == 200 and kept.json() == {"purged": 0}  # all finished just now
    done = client.post("/api/queues/emails/purge", json={"states": ["success"]})
    assert done.status_code == 200 and done.json() == {"purged": 1}
