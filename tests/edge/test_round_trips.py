"""Each database call of the function is one round trip (issue #11's CPU and latency): a query
with bind parameters would make postgres.js (with `prepare: false`) send Parse + Describe, wait
for the parameter types, then Bind + Execute. A relay between the real function and the real
Postgres records what the function sends, flight by flight (all it sends before an answer)."""

from __future__ import annotations

import socket
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from harness.edge_engine import Engine
from harness.function_process import FunctionProcess
from harness.target_server import TargetServer
from tests.edge.conftest import deliver, function_env


class Relay:
    """Forwards 127.0.0.1 connections to Postgres; logs each connection's client bytes,
    split where Postgres answered in between."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.connections: list[list[bytearray]] = []  # per connection: its flights
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            flights: list[bytearray] = [bytearray()]
            with self._lock:
                self.connections.append(flights)
            threading.Thread(target=self._pump, args=(client, upstream, flights, True)).start()
            threading.Thread(target=self._pump, args=(upstream, client, flights, False)).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, flights: list[bytearray], up: bool
    ) -> None:
        with src, dst:
            while data := _recv(src):
                with self._lock:
                    if up:
                        flights[-1] += data
                    elif flights[-1]:
                        flights.append(bytearray())  # an answer: the next bytes are a new flight
                dst.sendall(data)

    def flights(self) -> list[list[bytes]]:
        """Each flight's message types (typed messages only: startup is skipped)."""
        out = []
        with self._lock:
            every = [bytes(f) for flights in self.connections for f in flights if f]
        for flight in every:
            if flight[0] == 0:  # StartupMessage / SSLRequest: length first, no type byte
                continue
            types, at = [], 0
            while at + 5 <= len(flight):
                types.append(flight[at : at + 1])
                at += 1 + struct.unpack("!I", flight[at + 1 : at + 5])[0]
            out.append(types)
        return out

    def close(self) -> None:
        self.server.close()


def _recv(s: socket.socket) -> bytes:
    try:
        return s.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def relay(edge_db: str) -> Iterator[Relay]:
    port = urlsplit(edge_db).port
    assert port is not None
    r = Relay(port)
    try:
        yield r
    finally:
        r.close()


def test_every_query_goes_in_one_round_trip(
    start_function: Callable[..., FunctionProcess],
    engine: Engine,
    target: TargetServer,
    relay: Relay,
    edge_db: str,
    dispatch_secret: str,
) -> None:
    parts = urlsplit(edge_db)
    via_relay = urlunsplit(
        parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{relay.port}"))
    )
    fn = start_function(function_env(target.url, via_relay, dispatch_secret))
    slug = f"round-trips-{uuid.uuid4().hex[:8]}"
    queue = engine.queue(slug, max_attempts=1)
    jobs = [engine.enqueue(queue, {"n": i}) for i in range(5)]
    assert deliver(fn, engine.dispatched(jobs[0])).status_code == 202
    for job in jobs:  # a claim, then five reports, each claiming the next job (a chain)
        assert engine.wait_attempts(job, timeout=60)[0]["outcome"] == "success"
    flights = relay.flights()
    queries = [f for f in flights if {b"P", b"B", b"Q"} & set(f)]
    # startup (postgres.js reads the type catalog), the claim, five reports
    assert len(queries) >= 7, flights
    # Parse, Bind and Execute in one flight: nothing waits for a Describe in between. The
    # extended protocol (not a simple Query): one statement per query, whatever the values say.
    assert [f for f in queries if f != [b"P", b"D", b"B", b"E", b"S"]] == [], flights
