"""`supaqueue ui`: the dashboard, served on 127.0.0.1 only.

Stack: aiohttp (already the project's HTTP library) serves Jinja2 pages and a small JSON API over
the operator API (console/api.py); the browser side is plain JavaScript polling that API (live
updates without reloading) and uPlot for the charts (vendored from npm into the package data by
toolchain/vendor-uplot.sh: nothing is fetched or built at run time).

Access: the printed URL carries a one-time token. Opening it trades the token for a session
cookie (HttpOnly, SameSite=Strict) and redirects to the same page without the token; the link
then no longer works. Every request needs that session and a Host of 127.0.0.1/localhost on our
port (no DNS rebinding); every state-changing request is a JSON POST that must also carry the
session's CSRF token in `X-CSRF-Token` and, when the browser sends one, our own Origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import signal
import sys
import threading
import webbrowser
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import psycopg
from aiohttp import web

from supaqueue.console import render
from supaqueue.console.api import (
    FINISHED_STATES,
    STATES,
    BadInputError,
    ConsoleError,
    NotFoundError,
    Operator,
    connect,
    parse_uuid,
)

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "supaqueue_session"
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
SINCE_CHOICES = {"15m": 15, "1h": 60, "24h": 1440, "7d": 10080}  # minutes
KEYS_SHOWN = 20  # the queue page's busiest keys (as `supaqueue keys`' default)


class Dashboard:
    """One dashboard: its token, sessions and database connection."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.token = secrets.token_urlsafe(32)
        self.token_used = False
        self.sessions: dict[str, str] = {}  # session id -> its CSRF token
        self.port = 0
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    # --- database ---------------------------------------------------------------------------

    def _run(self, fn: Callable[[Operator], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = connect(self.db_url, application_name="supaqueue-ui")
                try:
                    return fn(Operator(self._conn))
                except (psycopg.OperationalError, ConsoleError) as exc:
                    # the connection broke (server restart; the operator API reports it as a
                    # ConsoleError): once more on a new one, whose error says what is wrong
                    if not isinstance(exc, psycopg.OperationalError) and not self._conn.broken:
                        raise
                    self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise ConsoleError("lost the connection to the database") from None
        raise AssertionError("unreachable")

    async def db(self, fn: Callable[[Operator], T]) -> T:
        return await asyncio.to_thread(self._run, fn)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    # --- access -----------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self) -> str:
        return f"{self.origin}/?token={self.token}"

    def session_of(self, request: web.Request) -> str | None:
        sid = request.cookies.get(SESSION_COOKIE)
        return sid if sid and sid in self.sessions else None

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await self._guard(request, handler)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.host not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            return web.Response(status=421, text="supaqueue ui answers only on 127.0.0.1\n")
        token = request.query.get("token")
        if token is not None:
            return self._redeem(request, token)
        sid = self.session_of(request)
        if sid is None:
            return self.refusal(request, 401, "Open the link that `supaqueue ui` printed.")
        if request.method not in ("GET", "HEAD"):
            problem = self._csrf_problem(request, sid)
            if problem:
                return web.json_response({"error": problem}, status=403)
        return await handler(request)

    def _redeem(self, request: web.Request, token: str) -> web.StreamResponse:
        if self.token_used or not hmac.compare_digest(token, self.token):
            return self.refusal(
                request, 403, "This link was used already (or is wrong): restart `supaqueue ui`."
            )
        self.token_used = True
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = secrets.token_urlsafe(32)
        response = web.HTTPSeeOther(location=request.path)
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict", path="/")
        return response

    def _csrf_problem(self, request: web.Request, sid: str) -> str | None:
        sent = request.headers.get("X-CSRF-Token", "")
        if not hmac.compare_digest(sent, self.sessions[sid]):
            return "missing or wrong CSRF token"
        origin = request.headers.get("Origin")
        if origin is not None and origin not in (self.origin, f"http://localhost:{self.port}"):
            return f"cross-origin request from {origin} refused"
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return "cross-site request refused"
        if request.content_type != "application/json":
            return "state-changing requests must be JSON"
        return None

    def refusal(self, request: web.Request, status: int, message: str) -> web.Response:
        if request.path.startswith("/api/"):
            return web.json_response({"error": message}, status=status)
        return web.Response(status=status, text=message + "\n")

    # --- pages ------------------------------------------------------------------------------

    def page(self, request: web.Request, name: str, **context: Any) -> web.Response:
        sid = self.session_of(request)
        assert sid is not None
        html = self.templates.get_template(name).render(
            csrf=self.sessions[sid],
            states=STATES,
            finished_states=FINISHED_STATES,
            since_choices=list(SINCE_CHOICES),
            **context,
        )
        return web.Response(text=html, content_type="text/html")

    async def queues_page(self, request: web.Request) -> web.Response:
        return self.page(request, "queues.html", page="queues", title="Queues")

    async def queue_page(self, request: web.Request) -> web.Response:
        # the name only fills the template (escaped); the page reads the keys from the API
        name = request.match_info["name"]
        return self.page(request, "queue.html", page="queue", title=f"Queue {name}", queue=name)

    async def jobs_page(self, request: web.Request) -> web.Response:
        return self.page(request, "jobs.html", page="jobs", title="Jobs")

    async def job_page(self, request: web.Request) -> web.Response:
        try:
            job_id = parse_uuid(request.match_info["id"])
        except BadInputError:
            return await self.job_prefix_page(request)
        return self.page(request, "job.html", page="job", title="Job", job_id=job_id)

    # --- JSON API ---------------------------------------------------------------------------

    async def answer(self, fn: Callable[[Operator], Any]) -> web.Response:
        try:
            result = await self.db(fn)
        except NotFoundError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except BadInputError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except ConsoleError as exc:
            return web.json_response({"error": str(exc)}, status=500)
        return web.json_response(render.plain(result))

    async def api_figures(self, request: web.Request) -> web.Response:
        return await self.answer(lambda op: op.figures("1 hour"))

    async def api_series(self, request: web.Request) -> web.Response:
        return await self.answer(lambda op: op.series("1 hour", 60))

    async def api_jobs(self, request: web.Request) -> web.Response:
        q = request.query
        since = q.get("since") or None
        if since is not None and since not in SINCE_CHOICES:
            return web.json_response(
                {"error": f"since must be one of {list(SINCE_CHOICES)}"}, status=400
            )
        try:
            limit = min(max(int(q.get("limit", "50")), 1), 200)
        except ValueError:
            return web.json_response({"error": "limit must be a number"}, status=400)
        created_after = (
            datetime.now(UTC) - timedelta(minutes=SINCE_CHOICES[since]) if since else None
        )
        return await self.answer(
            lambda op: op.jobs(
                queue=q.get("queue") or None,
                states=[s for s in q.getall("state", []) if s] or None,
                created_after=created_after,
                error=q.get("error") or None,
                after_job=q.get("after") or None,
                limit=limit,
            )
        )

    async def api_job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        return await self.answer(lambda op: op.job(job_id))

    async def api_job_action(self, request: web.Request) -> web.Response:
        job_id, action = request.match_info["id"], request.match_info["action"]
        if action == "retry":
            return await self.answer(lambda op: {"changed": op.retry(job_id)})
        return await self.answer(lambda op: {"changed": op.cancel(job_id)})

    async def api_queue_keys(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return await self.answer(lambda op: op.queue_keys(name, KEYS_SHOWN))

    async def api_queue_action(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        if action == "pause":
            return await self.answer(lambda op: op.pause(name))
        if action == "resume":
            return await self.answer(lambda op: op.resume(name))
        parsed = purge_request(await request.read())
        if isinstance(parsed, str):
            return web.json_response({"error": parsed}, status=400)
        states, hours = parsed
        older = datetime.now(UTC) - timedelta(hours=hours) if hours is not None else None
        return await self.answer(lambda op: {"purged": op.purge(name, states, older)})

    async def api_queue_lift_hold(self, request: web.Request) -> web.Response:
        """POST /api/queues/<name>/lift-hold {key?, all_keys?}: ends a hold by a Retry-After now
        (the queue's; one key's; every key's) and dispatches the queue: `lift_hold`'s answer."""
        name = request.match_info["name"]
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict) or set(body) - {"key", "all_keys"}:
            return web.json_response(
                {"error": 'the body must be a JSON object, {"key": KEY} or {"all_keys": true}'},
                status=400,
            )
        key, all_keys = body.get("key"), body.get("all_keys", False)
        if not isinstance(key, str | None) or not isinstance(all_keys, bool):
            return web.json_response(
                {"error": "key must be text and all_keys true or false"}, status=400
            )
        return await self.answer(lambda op: op.lift_hold(name, key, all_keys))

    # --- issue 22: job id prefixes, run now, bulk actions on the jobs filter ----------------

    async def job_prefix_page(self, request: web.Request) -> web.Response:
        """/jobs/<start of an id> (the 8 characters the lists show): to the job when only one
        matches; else a page saying which match or that none does."""
        prefix = request.match_info["id"]
        try:
            job_id = await self.db(lambda op: op.resolve_job(prefix))
        except ConsoleError as exc:
            status = 404 if isinstance(exc, NotFoundError) else 400
            return web.Response(status=status, text=f"{exc}\n")
        raise web.HTTPSeeOther(location=f"/jobs/{job_id}")

    async def api_job_run_now(self, request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        return await self.answer(lambda op: {"changed": op.run_now(job_id)})

    async def api_bulk(self, request: web.Request) -> web.Response:
        """POST /api/bulk/{retry-failed|cancel-pending} {queue, since, error, dry_run}: the jobs
        page's filter; dry_run answers the count the page confirms with."""
        action = request.match_info["action"]
        body = await request.json()
        if not isinstance(body, dict):
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        since = body.get("since") or None
        if since is not None and since not in SINCE_CHOICES:
            return web.json_response(
                {"error": f"since must be one of {list(SINCE_CHOICES)}"}, status=400
            )
        queue, error = body.get("queue") or None, body.get("error") or None
        if not isinstance(queue, str | None) or not isinstance(error, str | None):
            return web.json_response({"error": "queue and error must be text"}, status=400)
        dry_run = body.get("dry_run") is True
        after = datetime.now(UTC) - timedelta(minutes=SINCE_CHOICES[since]) if since else None
        if action == "retry-failed":
            return await self.answer(
                lambda op: {"count": op.retry_matching(queue, error, after, dry_run=dry_run)}
            )
        return await self.answer(
            lambda op: {
                "count": op.cancel_matching(queue, ["pending"], error, after, dry_run=dry_run)
            }
        )

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard], client_max_size=64 * 1024)
        app.router.add_get("/", self.queues_page)
        app.router.add_get("/jobs", self.jobs_page)
        app.router.add_get("/queues/{name}", self.queue_page)  # issue #26: its busiest keys
        app.router.add_get("/api/queues/{name}/keys", self.api_queue_keys)
        app.router.add_get("/jobs/{id}", self.job_page)
        app.router.add_get("/api/figures", self.api_figures)
        app.router.add_get("/api/series", self.api_series)
        app.router.add_get("/api/jobs", self.api_jobs)
        app.router.add_get("/api/jobs/{id}", self.api_job)
        app.router.add_post("/api/jobs/{id}/{action:retry|cancel}", self.api_job_action)
        app.router.add_post("/api/queues/{name}/{action:pause|resume|purge}", self.api_queue_action)
        app.router.add_post("/api/queues/{name}/lift-hold", self.api_queue_lift_hold)
        app.router.add_post("/api/jobs/{id}/run-now", self.api_job_run_now)
        app.router.add_post("/api/bulk/{action:retry-failed|cancel-pending}", self.api_bulk)
        self.add_source_routes(app)
        app.router.add_static("/static/", HERE / "static", follow_symlinks=False)
        return app

    # --- schedules and triggers (migration 0021) -------------------------------------------

    def add_source_routes(self, app: web.Application) -> None:
        app.router.add_get("/schedules", self.schedules_page)
        app.router.add_get("/api/schedules", self.api_schedules)
        app.router.add_get("/api/triggers", self.api_triggers)
        app.router.add_get("/api/sources/{kind:schedule|trigger}/{name}/jobs", self.api_source_jobs)
        app.router.add_post("/api/schedules/{name}/run", self.api_run_schedule)

    async def schedules_page(self, request: web.Request) -> web.Response:
        return self.page(request, "schedules.html", page="schedules", title="Schedules")

    async def api_schedules(self, request: web.Request) -> web.Response:
        return await self.answer(lambda op: op.schedules())

    async def api_triggers(self, request: web.Request) -> web.Response:
        return await self.answer(lambda op: op.triggers())

    async def api_source_jobs(self, request: web.Request) -> web.Response:
        kind, name = request.match_info["kind"], request.match_info["name"]

        def made(op: Operator) -> dict[str, Any]:
            row = op.schedule(name) if kind == "schedule" else op.trigger(name)
            return {**row, "kind": kind, "jobs": op.source_jobs(kind, name, 50)}

        return await self.answer(made)

    async def api_run_schedule(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return await self.answer(lambda op: {"job": op.run_schedule_now(name)})


# The oldest cut-off a purge takes: 100 years (a larger one is no date).
MAX_PURGE_HOURS = 100 * 366 * 24


def purge_request(raw: bytes) -> tuple[list[str], int | None] | str:
    """(states, older_than_hours) of a purge's JSON body, or why it is refused (a 400)."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:  # UnicodeDecodeError included
        return (
            'the body must be a JSON object, {"states": [...], "older_than_hours": N}; '
            "it is not valid JSON"
        )
    if not isinstance(body, dict):
        return (
            'the body must be a JSON object, {"states": [...], "older_than_hours": N}; '
            f"got a JSON {type(body).__name__}"
        )
    unknown = sorted(set(body) - {"states", "older_than_hours"})
    if unknown:
        listed = ", ".join(map(repr, unknown))
        return f"unknown field(s) {listed}: known are states, older_than_hours"
    states = body.get("states")
    if states is None or states == []:
        states = list(FINISHED_STATES)
    if not isinstance(states, list) or not all(isinstance(state, str) for state in states):
        return f"states must be a list of {', '.join(FINISHED_STATES)}, got {states!r}"
    hours = body.get("older_than_hours")
    # bool is an int in Python: true must not mean 1 hour
    if hours is not None and (
        isinstance(hours, bool) or not isinstance(hours, int) or not 0 <= hours <= MAX_PURGE_HOURS
    ):
        return (
            f"older_than_hours must be a whole number of hours from 0 to {MAX_PURGE_HOURS} "
            f"(or left out: any age), got {json.dumps(hours)}"
        )
    return states, hours


async def run(dashboard: Dashboard, port: int, open_browser: bool) -> None:
    runner = web.AppRunner(dashboard.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    dashboard.port = int(runner.addresses[0][1])
    print(f"supaqueue ui: {dashboard.url()}", flush=True)
    print("(a one-time link: it opens one browser session; Ctrl-C stops)", flush=True)
    # without a display, webbrowser would start a text browser in this very terminal
    has_display = (
        sys.platform != "linux" or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if open_browser and has_display:
        webbrowser.open(dashboard.url())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(db_url: str, port: int = 0, open_browser: bool = True) -> None:
    dashboard = Dashboard(db_url)
    dashboard._run(lambda op: op.figures("1 minute"))  # fail now, not in the browser
    try:
        asyncio.run(run(dashboard, port, open_browser))
    except OSError as exc:
        raise ConsoleError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    finally:
        dashboard.close()
    with contextlib.suppress(ValueError):
        sys.stdout.flush()
