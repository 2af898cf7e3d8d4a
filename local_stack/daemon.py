"""The local stack's one background process: the HTTP server (Edge gateway + Management API
stand-in), the pg_net sender and the Deno children. SIGTERM stops the children, then exits.

Run by `supaqueue dev up` as `python -m local_stack.daemon --dir <state>`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from local_stack import gateway, management_api
from local_stack.api_faults import FaultPlan
from local_stack.edge_runtime import EdgeRuntime
from local_stack.function_store import FunctionStore
from local_stack.rate_limit import RateLimiter, limit_from_env
from local_stack.secret_store import SecretStore
from local_stack.state import StackState, StateError, load

log = logging.getLogger("supaqueue.daemon")


@dataclass
class SenderStatus:
    state: str = "starting"


NET_SENDER_KEY = web.AppKey("net_sender_status", SenderStatus)
EXIT_PORT_TAKEN = 3


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "net_sender": request.app[NET_SENDER_KEY].state})


def create_app(state: StackState, runtime: EdgeRuntime, store: FunctionStore,
               secrets: SecretStore) -> web.Application:  # fmt: skip
    app = web.Application(
        middlewares=[management_api.guard], client_max_size=management_api.MAX_BODY_BYTES
    )
    app[gateway.STATE_KEY] = state
    app[gateway.STORE_KEY] = store
    app[gateway.RUNTIME_KEY] = runtime
    app[management_api.SECRETS_KEY] = secrets
    app[management_api.LIMITER_KEY] = RateLimiter(limit_from_env())
    app[management_api.FAULTS_KEY] = FaultPlan()
    app[NET_SENDER_KEY] = SenderStatus()

    async def proxy_session(app: web.Application):  # type: ignore[no-untyped-def]
        # Raw bytes both ways: the gateway must not re-encode what functions send.
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            app[gateway.SESSION_KEY] = session
            yield

    app.cleanup_ctx.append(proxy_session)
    app.router.add_get("/_local/health", health)
    gateway.add_routes(app)
    management_api.add_routes(app)
    return app


async def _run_net_sender(state: StackState, stop: asyncio.Event, status: SenderStatus) -> None:
    try:
        from local_stack.net_sender import run_sender
    except ImportError as exc:
        status.state = "missing"
        log.error("net sender unavailable: %s", exc)
        return
    status.state = "running"
    try:
        await run_sender(state.db_url, stop)
        status.state = "stopped"
    except Exception:
        status.state = "failed"
        log.exception("net sender failed")


async def serve(state: StackState) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    store = FunctionStore(state.functions_dir)
    secrets = SecretStore(state.secrets_file)
    runtime = EdgeRuntime(state, store, secrets.values)
    app = create_app(state, runtime, store, secrets)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", state.api_port)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on 127.0.0.1:%s: %s", state.api_port, exc.strerror or exc)
        await runner.cleanup()
        return EXIT_PORT_TAKEN
    log.info("serving on %s", state.api_url)

    sender = asyncio.create_task(_run_net_sender(state, stop, app[NET_SENDER_KEY]))
    for record in store.all():  # deployed functions come back on `up`
        runtime.warm(record)

    await stop.wait()
    log.info("stopping")
    await runtime.stop_all()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(sender, 10)
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack.daemon")
    parser.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        state = load(args.dir.resolve())
    except StateError as exc:
        log.error("%s", exc)
        return 1
    if state is None or not state.api_port:
        log.error("no stack in %s: run `supaqueue dev up`", args.dir)
        return 1
    return asyncio.run(serve(state))


if __name__ == "__main__":
    sys.exit(main())
