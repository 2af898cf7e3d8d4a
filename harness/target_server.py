"""A real loopback HTTP target (aiohttp) standing in for the queue's target Edge Function.

Served at `/functions/v1/<slug>`; the slug picks the behaviour, every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from aiohttp import web


@dataclass
class Seen:
    """One request the target received."""

    slug: str
    method: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    at: float
    # when the answer was written (monotonic); None while the call is in flight
    ended: float | None = None
    # the headers of the answer, once written (tests compare what the engine did with them)
    answer_headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> object:
        return json.loads(self.body)


BIG_BODY = "x" * 10_000
# Bodies the fan-in tests send: many dependency results of 1 MiB each.
MAX_REQUEST_BYTES = 64 * 1024 * 1024


def json_of_size(size: int) -> str:
    """A JSON object whose text is exactly `size` bytes."""
    return '{"x": "' + "y" * (size - len('{"x": ""}')) + '"}'


def max_in_flight(calls: list[Seen]) -> int:
    """The most calls that were in flight at the same time (a call still open counts)."""
    edges = sorted(
        [(c.at, 1) for c in calls] + [(c.ended, -1) for c in calls if c.ended is not None],
        key=lambda e: (e[0], e[1]),  # at equal times an end comes before a start
    )
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


RETRY_AFTER_DATE_SECONDS = 120
# The longest a `hold-<key>` call waits for release(key) before answering anyway.
HOLD_LIMIT_SECONDS = 120


@dataclass
class TargetServer:
    host: str = "127.0.0.1"
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: dict[str, threading.Event] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def requests_for(self, slug: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.slug == slug]

    def wait_for(self, slug: str, count: int = 1, timeout: float = 60.0) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.requests_for(slug)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"target {slug!r} got {len(self.requests_for(slug))} of {count} calls")

    def _release_event(self, key: str) -> threading.Event:
        with self._lock:
            return self._released.setdefault(key, threading.Event())

    def release(self, key: str) -> None:
        """Lets every `hold-<key>` call answer (those in flight and any later one)."""
        self._release_event(key).set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["slug"]
        body = await request.read()
        seen = Seen(
            slug,
            request.method,
            list(request.query.items()),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            time.monotonic(),
        )
        with self._lock:
            self.seen.append(seen)
        try:
            response = await self._answer(slug, request)
            seen.answer_headers = dict(response.headers)
            return response
        finally:
            seen.ended = time.monotonic()

    async def _answer(self, slug: str, request: web.Request) -> web.StreamResponse:
        if m := re.fullmatch(r"hold-([a-z0-9]+)", slug):
            # Answers only once the test calls release(key): an order, not a duration.
            released = self._release_event(m.group(1))
            deadline = time.monotonic() + HOLD_LIMIT_SECONDS
            while not released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return web.json_response({"held": True})
        if m := re.fullmatch(r"slow-(\d+)", slug):
            await asyncio.sleep(int(m.group(1)) / 1000)
            return web.json_response({"slow": True})
        if m := re.fullmatch(r"status-(\d+)", slug):
            return web.json_response({"status": int(m.group(1))}, status=int(m.group(1)))
        if slug.startswith("payload-status-"):  # the status the job's payload asks for
            status = int(json.loads(await request.read()).get("status", 200))
            return web.json_response({"status": status}, status=status)
        if slug == "text":
            return web.Response(text="plain words, not JSON", content_type="text/plain")
        if slug == "broken-json":
            return web.Response(text='{"truncated": ', content_type="application/json")
        if slug == "big":
            return web.Response(text=BIG_BODY, content_type="text/plain")
        if m := re.fullmatch(r"json-of-(\d+)-bytes", slug):
            return web.Response(text=json_of_size(int(m.group(1))), content_type="application/json")
        if slug == "lone-surrogate":  # a string cut in the middle of an emoji
            return web.Response(
                text='{"summary": "Great job \\ud83d"}', content_type="application/json"
            )
        if m := re.fullmatch(r"deep-json-(\d+)", slug):
            depth = int(m.group(1))
            return web.Response(text="[" * depth + "]" * depth, content_type="application/json")
        if slug == "nul-json":
            return web.Response(text='{"a": "x\\u0000y"}', content_type="application/json")
        if slug == "retry-after-seconds":
            return web.json_response({"slow down": True}, status=429, headers={"Retry-After": "17"})
        if slug == "retry-after-date":
            when = datetime.now(UTC) + timedelta(seconds=RETRY_AFTER_DATE_SECONDS)
            return web.json_response(
                {"unavailable": True},
                status=503,
                headers={"Retry-After": format_datetime(when, usegmt=True)},
            )
        # Default: a 2xx JSON echo of what arrived.
        return web.json_response(
            {"echo": True, "method": request.method, "query": list(request.query.items())}
        )

    def start(self) -> TargetServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            app = web.Application(client_max_size=MAX_REQUEST_BYTES)
            app.router.add_route("*", "/functions/v1/{slug}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            try:
                loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, self.host, 0)
                loop.run_until_complete(site.start())
                self.port = int(self._runner.addresses[0][1])
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="edge-test-target", daemon=True)
        self._thread.start()
        if not ready.wait(10) or errors:
            raise RuntimeError(f"target server did not start: {errors}")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
