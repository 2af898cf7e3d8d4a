"""Stand-in for pg_net's background worker: sends the rows of `net.http_request_queue`.

Loop, as upstream (docs/reference/supabase-platform.md): purge at most `pg_net.batch_size` expired
responses, take up to `pg_net.batch_size` rows ORDER BY id, send them all concurrently, wait until
every one has finished or timed out, store the responses, commit, wait up to 1 s (early on a
wake), repeat while a round took requests or purged responses, then sleep until woken. Wakes are
NOTIFYs sent by the request functions, delivered only on COMMIT.

    python -m supaqueue.local_stack.net_sender DSN     # runs until SIGTERM/SIGINT
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psycopg
import uvloop
import yarl
from psycopg.types.json import Jsonb

from supaqueue.sql_files import named_queries

log = logging.getLogger("supaqueue.net_sender")

WAKE_CHANNEL = "pg_net_wake"
BETWEEN_BATCHES_S = 1.0
# Upstream sleeps until woken; we also look again now and then, so TTL purges happen when idle
# and a wake missed during a reconnect cannot strand a request.
IDLE_RECHECK_S = 30.0
RECONNECT_MAX_S = 10.0
USER_AGENT = "pg_net/0.20.4"
KEEPALIVE_S = 3.0

# curl_easy_strerror() texts, which pg_net stores in error_msg.
CURL_COULDNT_RESOLVE_HOST = "Couldn't resolve host name"
CURL_COULDNT_CONNECT = "Couldn't connect to server"
CURL_GOT_NOTHING = "Server returned nothing (no headers, no data)"
CURL_RECV_ERROR = "Failure when receiving data from the peer"
CURL_SEND_ERROR = "Failed sending data to the peer"
CURL_URL_MALFORMAT = "URL using bad/illegal format or missing URL"
CURL_UNSUPPORTED_PROTOCOL = "Unsupported protocol"
CURL_SSL_CONNECT_ERROR = "SSL connect error"


QUERIES = named_queries("supaqueue.local_stack", "net_sender.sql")


class NetSenderError(RuntimeError):
    """The sender cannot work on this database (e.g. no `net` schema)."""


@dataclass
class _Timings:
    """Per-request phase times (monotonic seconds) for pg_net's detailed timeout message."""

    start: float = field(default_factory=time.monotonic)
    dns_end: float | None = None
    connected: float | None = None
    request_sent: float | None = None


@dataclass
class Response:
    id: int
    status_code: int | None = None
    content_type: str | None = None
    headers: dict[str, str] | None = None
    content: str | None = None
    timed_out: bool = False
    error_msg: str | None = None

    @staticmethod
    def columns(responses: list[Response]) -> dict[str, list[Any]]:
        """insert_responses' parameters: one list per column."""
        return {
            "id": [r.id for r in responses],
            "status_code": [r.status_code for r in responses],
            "content_type": [r.content_type for r in responses],
            "headers": [Jsonb(r.headers) if r.headers is not None else None for r in responses],
            "content": [r.content for r in responses],
            "timed_out": [r.timed_out for r in responses],
            "error_msg": [r.error_msg for r in responses],
        }


def _trace_config() -> aiohttp.TraceConfig:
    tc = aiohttp.TraceConfig()

    async def dns_end(_s: Any, ctx: Any, _p: Any) -> None:
        if ctx.trace_request_ctx is not None:
            ctx.trace_request_ctx.dns_end = time.monotonic()

    async def conn_end(_s: Any, ctx: Any, _p: Any) -> None:
        if ctx.trace_request_ctx is not None:
            ctx.trace_request_ctx.connected = time.monotonic()

    async def headers_sent(_s: Any, ctx: Any, _p: Any) -> None:
        if ctx.trace_request_ctx is not None:
            ctx.trace_request_ctx.request_sent = time.monotonic()

    tc.on_dns_resolvehost_end.append(dns_end)
    tc.on_connection_create_end.append(conn_end)
    tc.on_request_headers_sent.append(headers_sent)
    return tc


def timeout_message(timeout_ms: int, t: _Timings, now: float) -> str:
    """pg_net's text: which phase the time went to (DNS, TCP/SSL handshake, HTTP)."""
    total = now - t.start
    dns = (t.dns_end - t.start) if t.dns_end else 0.0
    if t.connected is None and t.request_sent is None:
        # Timed out before a connection existed: at DNS if no lookup finished, else handshake.
        handshake, http = (0.0, 0.0) if t.dns_end is None else (total - dns, 0.0)
        if t.dns_end is None:
            dns = total
    else:
        began = t.request_sent or t.connected or t.start
        handshake = max(0.0, (t.connected or began) - (t.dns_end or t.start))
        http = now - began
    return (
        f"Timeout of {timeout_ms} ms reached. Total time: {total * 1000:f} ms "
        f"(DNS time: {dns * 1000:f} ms, TCP/SSL handshake time: {handshake * 1000:f} ms, "
        f"HTTP Request/Response time: {http * 1000:f} ms)"
    )


def curl_error_text(exc: BaseException) -> str:
    """The curl error text pg_net would store for a transport failure."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return CURL_COULDNT_RESOLVE_HOST
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return CURL_SSL_CONNECT_ERROR
    if isinstance(exc, aiohttp.ClientConnectorError):
        return CURL_COULDNT_CONNECT
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return CURL_GOT_NOTHING
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return CURL_RECV_ERROR
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return CURL_URL_MALFORMAT
    if isinstance(exc, aiohttp.ClientOSError):
        return CURL_SEND_ERROR
    return f"{type(exc).__name__}: {exc}"


def _header_value(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _clean(text: str) -> str:
    """Storable in Postgres: no NUL, no undecodable bytes (aiohttp keeps them as surrogates)."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _text(raw: bytes, charset: str | None) -> str:
    # Postgres text cannot hold NUL; a bad charset name falls back to UTF-8.
    try:
        text = raw.decode(charset or "utf-8", errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd")


def wire_url(url: str) -> yarl.URL:
    """The URL as pg_net's curl sends it: after the host, bytes curl may not send as they are
    (non-ASCII, DEL, control characters, spaces) percent-encoded with lower-case hex digits
    (`%c3%bc`: lib/url.c gets the path with CURLU_URLENCODE, lib/urlapi.c `urlencode_str`), and
    escapes already in the URL left exactly as written (yarl alone would upper-case them and
    encode in upper case). curl sends such bytes of the query raw; HTTP has no raw non-ASCII, so
    here they are encoded the same way as the path's."""
    start = url.find("//")
    start = start + 2 if start >= 0 else 0
    cut = min((i for i in (url.find("/", start), url.find("?", start)) if i >= 0), default=len(url))
    head, tail = url[:cut], url[cut:].split("#", 1)[0]  # curl never sends the fragment
    out = []
    for char in tail:
        if char == " ":
            out.append("%20")
        elif " " < char < "\x7f":
            out.append(char)
        else:
            out.extend(f"%{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    return yarl.URL(head + "".join(out), encoded=True)


async def send_one(http: aiohttp.ClientSession, row: tuple[Any, ...]) -> Response:
    """Send one queued request; never raises (every outcome is a response row)."""
    req_id, method, url, headers, body, timeout_ms = row
    result = Response(id=req_id)
    timings = _Timings()
    if not re.match(r"^https?://", url or "", flags=re.IGNORECASE):
        result.error_msg = CURL_UNSUPPORTED_PROTOCOL if "://" in (url or "") else CURL_URL_MALFORMAT
        return result
    send_headers = {str(k): _header_value(v) for k, v in (headers or {}).items()}
    if not any(k.lower() == "user-agent" for k in send_headers):
        send_headers["User-Agent"] = USER_AGENT
    try:
        async with asyncio.timeout(max(timeout_ms, 1) / 1000):
            async with http.request(
                method.upper(),
                wire_url(url),
                headers=send_headers,
                data=bytes(body) if body is not None else None,
                allow_redirects=False,  # curl does not follow redirects unless told to
                trace_request_ctx=timings,
            ) as resp:
                raw = await resp.read()
                result.status_code = resp.status
                content_type = resp.headers.get("Content-Type")
                result.content_type = _clean(content_type) if content_type is not None else None
                result.headers = {_clean(k): _clean(v) for k, v in resp.headers.items()}
                result.content = _text(raw, resp.charset)
    except TimeoutError:
        result.status_code = result.content_type = result.headers = result.content = None
        result.timed_out = True
        result.error_msg = timeout_message(timeout_ms, timings, time.monotonic())
    except (aiohttp.ClientError, ValueError, OSError) as exc:
        result.status_code = result.content_type = result.headers = result.content = None
        result.error_msg = curl_error_text(exc)
    except Exception as exc:  # a malformed row must not wedge the queue: record it and go on
        result.status_code = result.content_type = result.headers = result.content = None
        result.error_msg = f"{type(exc).__name__}: {exc}"
    return result


class SettingsChanged(Exception):
    """The server reloaded its configuration since the sender read its settings."""


async def process_batch(
    conn: psycopg.AsyncConnection[Any], http: aiohttp.ClientSession, settings: _Settings
) -> tuple[int, int]:
    """One upstream iteration: purge expired responses, take a batch, send it, store the
    responses, commit: four round trips (BEGIN, take_batch, insert_responses, COMMIT) whatever
    the batch size. Returns (requests taken, responses purged); raises SettingsChanged
    (everything rolled back) when the server's settings are no longer those the sender holds."""
    params = {"ttl": settings.ttl, "batch_size": settings.batch_size,
              "loaded_at": settings.loaded_at}  # fmt: skip
    async with conn.transaction():
        cur = await conn.execute(QUERIES["take_batch"], params)
        found = await cur.fetchall()
        loaded_at, purged = found[0][0], int(found[0][1])
        if loaded_at != settings.loaded_at:
            raise SettingsChanged
        rows = sorted((r[2:] for r in found if r[2] is not None), key=lambda r: r[0])
        if rows:
            responses = await asyncio.gather(*(send_one(http, row) for row in rows))
            await conn.execute(QUERIES["insert_responses"], Response.columns(responses))
    return len(rows), purged


async def _listen(conn: psycopg.AsyncConnection[Any], wake: asyncio.Event) -> None:
    """Set `wake` on every notification, until the connection fails (then raise).

    Waits on the socket itself: psycopg's `notifies()` wakes every 0.1 s to look, which was most
    of an idle sender's CPU. The connection does nothing else once it listens."""
    loop = asyncio.get_running_loop()
    pgconn = conn.pgconn
    failed: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            pgconn.consume_input()
        except psycopg.Error as exc:  # the server went away
            if not failed.done():
                failed.set_exception(psycopg.OperationalError(str(exc)))
            return
        while pgconn.notifies() is not None:
            wake.set()

    fd = pgconn.socket
    loop.add_reader(fd, readable)
    try:
        readable()  # anything that came with the LISTEN itself
        await failed
    finally:
        loop.remove_reader(fd)


async def _wait_first(timeout: float, *events: asyncio.Event, guard: asyncio.Task[None]) -> None:
    """Wait until any event is set, `guard` (the listener) ends, or `timeout` passes."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait([*waiters, guard], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    if guard.done():
        guard.result()  # re-raise the listener's connection error
        raise psycopg.OperationalError("the LISTEN connection closed")


class _Settings:
    """`pg_net.batch_size` / `pg_net.ttl` as pg_net takes them: from the server configuration,
    read again only after the server reloads it (`ALTER SYSTEM SET …; SELECT pg_reload_conf()`);
    each batch checks `pg_conf_load_time()` in the statements it runs anyway."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.loaded_at: Any = None
        self.batch_size = 200
        self.ttl: Any = "6 hours"
        self.query: str | None = None

    async def load(self) -> None:
        if self.query is None:
            cur = await self.conn.execute(QUERIES["is_superuser"])
            row = await cur.fetchone()
            superuser = bool(row and row[0])
            self.query = QUERIES["settings_from_config" if superuser else "settings_in_session"]
        cur = await self.conn.execute(QUERIES["conf_load_time"])
        row = await cur.fetchone()
        self.loaded_at = row[0] if row else None
        cur = await self.conn.execute(self.query)
        values = await cur.fetchone()
        assert values is not None
        self.batch_size, self.ttl = int(values[0]), values[1]


async def _serve(dsn: str, stop: asyncio.Event, ready: asyncio.Event | None) -> None:
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listen_conn,
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as work_conn,
    ):
        cur = await work_conn.execute(QUERIES["has_net_schema"])
        found = await cur.fetchone()
        if not found or found[0] is None:
            raise NetSenderError(
                "this database has no net.http_request_queue: install pg_net or the stand-in"
                " (supaqueue.local_stack.standins.install_standins) first"
            )
        cur = await work_conn.execute(QUERIES["net_is_the_extension"])
        real = await cur.fetchone()
        if real and real[0]:
            raise NetSenderError(
                "net belongs to the real pg_net extension, whose worker sends: not starting the"
                " stand-in sender beside it"
            )
        await listen_conn.execute(f"LISTEN {WAKE_CHANNEL}")
        wake = asyncio.Event()
        listener = asyncio.create_task(_listen(listen_conn, wake))
        # The whole batch at once, like curl multi. Idle connections are dropped after 3 s, before
        # any common server's keep-alive timeout (5 s), so a POST never goes out on a connection
        # the server is closing (aiohttp retries only idempotent requests on one).
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S)
        try:
            async with aiohttp.ClientSession(
                connector=connector,
                trace_configs=[_trace_config()],
                auto_decompress=True,
                timeout=aiohttp.ClientTimeout(total=None),  # each row's own timeout governs
                skip_auto_headers=("Content-Type",),
            ) as http:
                log.info("net sender ready")
                settings = _Settings(work_conn)
                await settings.load()
                while not stop.is_set():
                    wake.clear()
                    try:
                        taken, purged = await process_batch(work_conn, http, settings)
                    except SettingsChanged:
                        await settings.load()  # as upstream on SIGHUP, then the same iteration
                        continue
                    if taken:
                        log.debug("sent %d requests", taken)
                    # Upstream goes on (1 s apart) while a round took requests or purged rows.
                    pause = BETWEEN_BATCHES_S if taken or purged else IDLE_RECHECK_S
                    if ready is not None:
                        ready.set()  # listening, and the backlog found at start is handled
                    await _wait_first(pause, stop, wake, guard=listener)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener


async def run_sender(dsn: str, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Send queued pg_net requests until `stop` is set. Reconnects if the database goes away.

    `ready` (optional) is set once the sender listens for wakes and has taken its first batch.
    """
    psycopg.conninfo.conninfo_to_dict(dsn)  # a malformed DSN is an error now, not a retry loop
    backoff = 0.2
    while not stop.is_set():
        began = time.monotonic()
        try:
            await _serve(dsn, stop, ready)
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() - began > RECONNECT_MAX_S:
                backoff = 0.2  # it had been working: retry soon
            # psycopg's messages name host and user, never the password.
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
            log.warning("net sender: database unavailable (%s); retrying", reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=backoff)
        backoff = min(backoff * 2, RECONNECT_MAX_S)


async def _main_async(dsn: str) -> int:
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=10)
        await conn.close()
    except psycopg.Error as exc:
        print(f"net_sender: cannot connect to the database: {exc}".strip(), file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run_sender(dsn, stop)
    except NetSenderError as exc:
        print(f"net_sender: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m supaqueue.local_stack.net_sender DSN", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return uvloop.run(_main_async(args[0]))  # as the daemon runs it
    except psycopg.ProgrammingError as exc:
        print(f"net_sender: invalid DSN: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
