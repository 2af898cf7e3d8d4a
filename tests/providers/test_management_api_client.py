"""The Management API client against real HTTP servers on 127.0.0.1: 429s waited out (Retry-After,
X-RateLimit-Reset, backoff) and retried a bounded number of times, the deploy multipart exactly
as the API wants it, errors carrying the API's message and never the token."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from supaqueue.clients import management_api
from supaqueue.clients.management_api import ManagementApi, retry_delay
from supaqueue.errors import ManagementApiError

TOKEN = "sbp_" + "9" * 40
REF = "abcdefghijklmnopqrst"
Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Server:
    """Answers requests from a script of (status, headers, body); records what it received."""

    script: list[Answer]
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def serve() -> Iterator[Callable[[list[Answer]], Server]]:
    started: list[ThreadingHTTPServer] = []

    def start(script: list[Answer]) -> Server:
        state = Server(list(script))

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                state.requests.append(
                    Recorded(
                        self.command,
                        self.path,
                        dict(self.headers),
                        self.rfile.read(length),
                        time.monotonic(),
                    )
                )
                status, headers, body = (
                    state.script.pop(0) if len(state.script) > 1 else state.script[0]
                )
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        return state

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


OK: Answer = (200, {}, b"[]")


def client(server: Server, **kwargs: Any) -> ManagementApi:
    return ManagementApi(server.url, TOKEN, REF, **kwargs)


def test_429_with_retry_after_is_waited_out(serve: Callable[[list[Answer]], Server]) -> None:
    limited: Answer = (429, {"Retry-After": "1"}, b'{"message": "Too many requests"}')
    server = serve([limited, limited, (200, {}, b'[{"name": "A", "value": "d"}]')])
    with client(server) as api:
        assert api.list_secrets() == [{"name": "A", "value": "d"}]
    assert len(server.requests) == 3
    gaps = [b.at - a.at for a, b in zip(server.requests, server.requests[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), gaps
    assert server.requests[0].path == f"/v1/projects/{REF}/secrets"
    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_429_with_ratelimit_reset_then_backoff(serve: Callable[[list[Answer]], Server]) -> None:
    server = serve(
        [
            (429, {"X-RateLimit-Reset": "1", "X-RateLimit-Remaining": "0"}, b"{}"),
            (429, {}, b"{}"),  # no hint: backoff (0.5 s * 2**attempt)
            OK,
        ]
    )
    with client(server) as api:
        api.list_secrets()
    first, second, third = server.requests
    assert second.at - first.at >= 0.95
    assert third.at - second.at >= 0.95  # attempt 1 → 1 s


def test_retries_are_bounded(serve: Callable[[list[Answer]], Server]) -> None:
    server = serve([(429, {"Retry-After": "0"}, b'{"message": "slow down"}')])
    with client(server, max_attempts=4) as api, pytest.raises(ManagementApiError) as caught:
        api.get_function("f")
    assert len(server.requests) == 4
    assert str(caught.value) == "cannot get function 'f': HTTP 429: slow down"
    assert caught.value.status_code == 429


def test_errors_carry_the_api_message_never_the_token(
    serve: Callable[[list[Answer]], Server],
) -> None:
    server = serve([(400, {}, json.dumps({"message": f"bad slug; token {TOKEN[:3]}"}).encode())])
    with client(server) as api, pytest.raises(ManagementApiError) as caught:
        api.deploy_function("f", [("index.ts", b"x")])
    assert "cannot deploy function 'f': HTTP 400: bad slug" in str(caught.value)
    assert TOKEN not in str(caught.value)
    server = serve([(500, {"Content-Type": "text/plain"}, b"upstream exploded")])
    waits: list[float] = []
    with client(server, sleep=waits.append) as api, pytest.raises(ManagementApiError) as caught:
        api.delete_secrets(["A"])
    assert str(caught.value) == "cannot delete secrets: HTTP 500: upstream exploded"
    # a 5xx is transient: retried with capped, growing backoff until the attempts run out
    assert len(server.requests) == management_api.MAX_ATTEMPTS
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_unreachable_api_is_a_clear_error(serve: Callable[[list[Answer]], Server]) -> None:
    server = serve([OK])
    url = server.url
    waits: list[float] = []
    with ManagementApi(url.rsplit(":", 1)[0] + ":1", TOKEN, REF, sleep=waits.append) as api:
        with pytest.raises(ManagementApiError) as caught:
            api.list_secrets()
    assert "cannot list secrets: ConnectError reaching http://127.0.0.1:1" in str(caught.value)
    assert "(6 attempts)" in str(caught.value) and len(waits) == 5
    assert TOKEN not in str(caught.value)


def test_501_is_not_retried(serve: Callable[[list[Answer]], Server]) -> None:
    server = serve([(501, {}, b'{"message": "not implemented"}')])
    with client(server) as api, pytest.raises(ManagementApiError) as caught:
        api.list_secrets()
    assert caught.value.status_code == 501 and len(server.requests) == 1


def test_missing_function_is_none_and_delete_is_idempotent(
    serve: Callable[[list[Answer]], Server],
) -> None:
    server = serve([(404, {}, b'{"message": "Function not found"}')])
    with client(server) as api:
        assert api.get_function("gone") is None
        assert api.delete_function("gone") is False


def test_deploy_sends_metadata_first_then_relative_files(
    serve: Callable[[list[Answer]], Server],
) -> None:
    deployed = {
        "id": "1",
        "slug": "supaqueue",
        "name": "supaqueue",
        "status": "ACTIVE",
        "version": 1,
    }
    server = serve([(201, {}, json.dumps(deployed).encode())])
    files = [("deno.json", b"{}"), ("index.ts", b"export {};"), ("lib/util.ts", b"//")]
    with client(server) as api:
        result = api.deploy_function(
            "supaqueue", files, import_map_path="deno.json", verify_jwt=False
        )
    assert result == deployed
    (request,) = server.requests
    assert request.method == "POST"
    assert request.path == f"/v1/projects/{REF}/functions/deploy?slug=supaqueue"
    content_type = request.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request.body,
        policy=email.policy.HTTP,
    )
    parts = list(message.iter_parts())
    names = [p.get_param("name", header="content-disposition") for p in parts]
    assert names == ["metadata", "file", "file", "file"]
    metadata = json.loads(parts[0].get_content())
    assert metadata == {
        "entrypoint_path": "index.ts",
        "import_map_path": "deno.json",
        "verify_jwt": False,
        "name": "supaqueue",
    }
    assert [p.get_filename() for p in parts[1:]] == ["deno.json", "index.ts", "lib/util.ts"]
    assert parts[3].get_payload(decode=True) == b"//"


def test_retry_delay_reads_every_header_form() -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")

    def delay(headers: dict[str, str], attempt: int = 0, now: float = 1_000.0) -> float:
        return retry_delay(httpx.Response(429, headers=headers, request=request), attempt, now)

    assert delay({"Retry-After": "7"}) == 7
    now = time.time()
    assert 9 <= delay({"Retry-After": formatdate(now + 10, usegmt=True)}, now=now) <= 10
    assert delay({"X-RateLimit-Reset": "3"}) == 3
    assert delay({"X-RateLimit-Reset": str(int(now) + 5)}, now=now) == pytest.approx(5, abs=1)
    assert delay({}, attempt=2) == 2.0
    assert delay({"Retry-After": "100000"}) == management_api.MAX_WAIT_SECONDS


def test_retry_delay_survives_a_retry_after_that_is_no_date() -> None:
    """An unparseable Retry-After falls back to the other headers or backoff: it must not turn
    a 429 into a failed deployment (Python's date parser raises ValueError on it)."""
    request = httpx.Request("GET", "http://127.0.0.1/")

    def delay(headers: dict[str, str], attempt: int = 0, now: float = 1_000.0) -> float:
        return retry_delay(httpx.Response(429, headers=headers, request=request), attempt, now)

    assert delay({"Retry-After": "soon"}, attempt=1) == 1.0
    assert delay({"Retry-After": "soon", "X-RateLimit-Reset": "4"}) == 4
    # A date without a zone is GMT, as HTTP dates are.
    now = time.time()
    naive = formatdate(now + 10, usegmt=True).replace(" GMT", "")
    assert 9 <= delay({"Retry-After": naive}, now=now) <= 10
