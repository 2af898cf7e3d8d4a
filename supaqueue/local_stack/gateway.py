"""The Edge Functions gateway: `/functions/v1/<slug>[/...]` proxied to the function's Deno
process, with `verify_jwt` enforced first, as Supabase's relay does.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
from aiohttp import web

from supaqueue.local_stack import jwt_keys
from supaqueue.local_stack.edge_runtime import BootError, EdgeRuntime
from supaqueue.local_stack.function_store import FunctionStore
from supaqueue.local_stack.state import StackState

log = logging.getLogger("supaqueue.gateway")
IDLE_TIMEOUT_S = 150  # Supabase answers 504 after 150 s without a response
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=IDLE_TIMEOUT_S)
# A function's answer that announces at most this many bytes is read whole and sent on in one
# write with its Content-Length; longer or unsized ones are streamed as they come.
WHOLE_BODY_MAX = 64 * 1024
NO_BODY_STATUSES = frozenset({204, 304})
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
RUNTIME_KEY = web.AppKey("edge_runtime", EdgeRuntime)
STORE_KEY = web.AppKey("function_store", FunctionStore)
STATE_KEY = web.AppKey("stack_state", StackState)
SESSION_KEY = web.AppKey("proxy_session", aiohttp.ClientSession)
# Requests that reached each function (past verify_jwt) since the daemon started: invocations;
# benchmarks read it at GET /_local/invocations.
INVOCATIONS_KEY = web.AppKey("invocations", dict[str, int])
TOKENS_KEY = web.AppKey("verified_tokens", jwt_keys.VerifiedTokens)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _jwt_rejection(
    request: web.Request, tokens: jwt_keys.VerifiedTokens, jwt_secret: str
) -> web.Response | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return _error(401, "UNAUTHORIZED_NO_AUTH_HEADER", "Missing authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(401, "UNAUTHORIZED_INVALID_AUTH_HEADER", "Invalid authorization header")
    if tokens.verify(token.strip(), jwt_secret) is None:
        return _error(401, "UNAUTHORIZED_LEGACY_JWT", "Invalid JWT")
    return None


async def invoke(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["slug"]
    store = request.app[STORE_KEY]
    record = store.get(slug)
    if record is None:
        return _error(404, "NOT_FOUND", "Requested function was not found")
    # Browsers send CORS preflights without credentials; functions answer them themselves.
    if record.verify_jwt and request.method != "OPTIONS":
        app = request.app
        rejection = _jwt_rejection(request, app[TOKENS_KEY], app[STATE_KEY].jwt_secret)
        if rejection is not None:
            return rejection
    counts = request.app[INVOCATIONS_KEY]
    counts[slug] = counts.get(slug, 0) + 1
    runtime = request.app[RUNTIME_KEY]
    body = await request.read()
    # A refused connection means the request never reached the function (its process just
    # exited or is draining), so one retry on a fresh process is safe.
    for attempt in (1, 2):
        try:
            worker = await runtime.worker_for(record)
        except BootError as exc:
            log.warning("%s", exc)
            return _error(503, "BOOT_ERROR", "Function failed to start (please check logs)")
        if client_gone(request):
            # Nobody waits for the answer (pg_net or the dispatcher gave up while this gateway
            # was busy or frozen): forwarding it now would start a call its caller has already
            # counted as failed. Not an invocation.
            counts[slug] -= 1
            log.info("function %s: client gone before forwarding, request dropped", slug)
            return _error(499, "CLIENT_CLOSED_REQUEST", "The client closed the request")
        try:
            return await _proxy(request, worker.port, slug, body)
        except aiohttp.ClientConnectorError:
            await runtime.discard(worker)
            if attempt == 2:
                break
    return _error(502, "WORKER_ERROR", "Function is not accepting connections")


def client_gone(request: web.Request) -> bool:
    """Whether the client has closed or reset its connection: a peek at its socket (end of
    stream or an error), as a proxy checks before forwarding (docs/architecture/local-stack.md,
    issue #21)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return True
    raw = transport.get_extra_info("socket")
    if raw is None:
        return False
    # asyncio's socket object offers no recv: a plain one over the same descriptor, detached
    # (never closed) afterwards
    sock = socket.socket(raw.family, raw.type, raw.proto, raw.fileno())
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # still connected, waiting for the answer
    except OSError:
        return True  # reset
    finally:
        sock.detach()


async def _proxy(request: web.Request, port: int, slug: str, body: bytes) -> web.StreamResponse:
    # Inside the function the path starts at the slug, as on Supabase.
    tail = request.match_info.get("tail", "")
    target = f"http://127.0.0.1:{port}/{slug}{tail}"
    if request.query_string:
        target += f"?{request.query_string}"
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    headers.append(("X-Forwarded-Host", request.host))
    session = request.app[SESSION_KEY]
    response: web.StreamResponse | None = None
    try:
        async with session.request(
            request.method,
            target,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
            timeout=UPSTREAM_TIMEOUT,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            out = response.headers
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    out.add(name, value)
            # The size the answer announces (none for HEAD, 204 and 304: they have no body).
            size = upstream.content_length
            if request.method == "HEAD" or upstream.status in NO_BODY_STATUSES:
                size = None
            if size is not None and size <= WHOLE_BODY_MAX:
                # The common small answer: one write, headers and body, no chunked framing.
                data = await upstream.read()
                response.content_length = len(data)
                await response.prepare(request)
                await response.write_eof(data)
                return response
            if size is not None:
                response.content_length = size  # passed on as it comes, without chunked framing
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
    except aiohttp.ClientConnectorError:
        raise
    except (TimeoutError, aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
        log.warning("function %s: %s", slug, exc or type(exc).__name__)
        if response is not None and response.prepared:
            # Headers already sent: end the client's connection without finishing the body (no
            # last chunk, fewer bytes than Content-Length), as a real proxy does (nginx on an
            # upstream reset mid-body), so the client sees an error, never a clean short answer.
            _abort(request)
            return response
        if isinstance(exc, TimeoutError):
            return _error(504, "IDLE_TIMEOUT", "Function did not respond in time")
        return _error(502, "WORKER_ERROR", "Function exited before responding")


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


async def invocations(request: web.Request) -> web.Response:
    return web.json_response(request.app[INVOCATIONS_KEY])


def add_routes(app: web.Application) -> None:
    app[INVOCATIONS_KEY] = {}
    app[TOKENS_KEY] = jwt_keys.VerifiedTokens()
    app.router.add_get("/_local/invocations", invocations)
    app.router.add_route("*", r"/functions/v1/{slug}", invoke)
    app.router.add_route("*", r"/functions/v1/{slug}{tail:/.*}", invoke)
