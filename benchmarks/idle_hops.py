"""Where an idle queue's enqueue → target time goes, hop by hop, on the local stack.

Jobs are enqueued one by one at a steady --rate (as e2e_bench.py's latency run) while a passive
capture on the loopback interface (loopback_capture.py: kernel send timestamps, no change to the
stack) records every segment between the parts: the enqueuing client, Postgres, the pg_net
stand-in sender, the gateway, the `supaqueue` dispatcher and the no-op target. For each job the
first segment of each step gives its time; the target's own clock (the job's result) gives the
arrival at its handler. Prints one JSON line per hop (p50/p95 ms over the jobs) and the total.

Needs root or CAP_NET_RAW (a packet socket); says so and exits 2 without it.

Usage: python benchmarks/idle_hops.py [--rate 20] [--seconds 10] [--workers 10]
                                      [--dispatcher DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
from e2e_bench import (
    DISPATCHER,
    DISPATCHER_DIR,
    TARGET,
    BenchError,
    Stack,
    check_succeeded,
    emit,
    install,
    local_stack,
    new_queue,
    wait_done,
    warm_up,
)
from loopback_capture import Capture, Owners, OwnerSampler, Segment, listening_ports

from harness.procs import children, cwd

# The steps of one job: (name, the step it follows, flow, what the payload starts with or None),
# each found as the first matching segment after the step it follows (the dispatcher may send
# its claim before its 202 goes out, so steps are not one chain). A flow is
# "<client role> > <server>" for requests and "<server> < <client role>" for answers.
STEPS: list[tuple[str, str | None, str, bytes | None]] = [
    ("insert_sent", None, "bench > postgres", None),
    ("insert_committed", "insert_sent", "postgres < bench", None),
    ("notify_at_sender", "insert_sent", "postgres < sender", b"A"),  # NotificationResponse
    ("sender_first_query", "notify_at_sender", "sender > postgres", None),
    ("sender_post", "sender_first_query", "sender > gateway", b"POST"),
    ("gateway_to_dispatcher", "sender_post", "gateway > dispatcher", b"POST"),
    ("dispatcher_202", "gateway_to_dispatcher", "dispatcher < gateway", b"HTTP/1.1 202"),
    ("claim_sent", "gateway_to_dispatcher", "dispatcher > postgres", None),
    ("target_call_sent", "claim_sent", "dispatcher > gateway", b"POST"),
    ("gateway_to_target", "target_call_sent", "gateway > target", b"POST"),
]

# Hops reported: (name, from step, to step, who owns it).
HOPS: list[tuple[str, str, str, str]] = [
    ("insert_and_commit", "insert_sent", "insert_committed", "engine SQL (pgcost)"),
    ("commit_to_notify", "insert_committed", "notify_at_sender", "Postgres"),
    ("sender_wakes", "notify_at_sender", "sender_first_query", "pg_net stand-in (gateway)"),
    ("sender_queries", "sender_first_query", "sender_post", "pg_net stand-in (gateway)"),
    ("gateway_in_to_dispatcher", "sender_post", "gateway_to_dispatcher", "gateway"),
    ("dispatcher_request_to_202", "gateway_to_dispatcher", "dispatcher_202", "function"),
    ("dispatcher_request_to_claim", "gateway_to_dispatcher", "claim_sent", "function"),
    ("claim_round_trip", "claim_sent", "claim_answered", "engine SQL (pgcost)"),
    ("claim_to_target_call", "claim_answered", "target_call_sent", "function"),
    ("dispatcher_request_to_target_call", "gateway_to_dispatcher", "target_call_sent", "function"),
    ("gateway_in_to_target", "target_call_sent", "gateway_to_target", "gateway"),
    ("target_socket_to_handler", "gateway_to_target", "target_handler", "target (Deno)"),
]


@dataclass
class Roles:
    postgres: int
    gateway: int
    dispatcher: set[int]
    target: set[int]
    owners: Owners

    def flow(self, s: Segment) -> str | None:
        servers = {"postgres": {self.postgres}, "gateway": {self.gateway}}
        servers |= {"dispatcher": self.dispatcher, "target": self.target}
        for name, ports in servers.items():
            if s.dst in ports:
                return f"{self.owners.ports.get(s.src, '?')} > {name}"
            if s.src in ports:
                return f"{name} < {self.owners.ports.get(s.dst, '?')}"
        return None


def processes(stack: Stack) -> dict[str, list[int]]:
    """The stack's parts by role: gateway, sender, and each function's Deno process."""
    daemon = int((stack.dir / "daemon.pid").read_text().strip())
    roles: dict[str, list[int]] = {}
    prefix = str(stack.dir / "functions") + "/"
    for part in children(daemon):
        cmdline = Path(f"/proc/{part}/cmdline").read_bytes().split(b"\0")
        role = "gateway" if b"gateway" in cmdline else "sender" if b"net-sender" in cmdline else ""
        if role:
            roles.setdefault(role, []).append(part)
        for child in children(part):
            where = cwd(child) or ""
            if where.startswith(prefix):
                slug = where[len(prefix) :].split("/", 1)[0]
                name = "dispatcher" if slug == DISPATCHER else "target" if slug == TARGET else slug
                roles.setdefault(name, []).append(child)
    missing = {"gateway", "sender", "dispatcher", "target"} - set(roles)
    if missing:
        raise BenchError(f"could not find the stack's {', '.join(sorted(missing))} process(es)")
    return roles


def timeline(
    segments: list[Segment], flow: Callable[[Segment], str | None], start: float, end: float
) -> tuple[dict[str, float], int]:
    """The time of each step of the job enqueued at `start` (segments before `end` only), and
    how many requests the dispatcher sent Postgres before calling the target (its claim's
    round trips); `claim_answered` is Postgres's last answer before that call."""
    window = [(s.at, flow(s), s.head) for s in segments if start <= s.at < end]
    found: dict[str, float] = {}
    for name, after, want, head in STEPS:
        since = start if after is None else found.get(after)
        if since is None:
            continue
        for at, f, h in window:
            if at >= since and f == want and (head is None or h.startswith(head)):
                found[name] = at
                break
    flights = 0
    if "claim_sent" in found and "target_call_sent" in found:
        between = [
            (at, f) for at, f, _h in window if found["claim_sent"] <= at < found["target_call_sent"]
        ]
        answers = [at for at, f in between if f == "postgres < dispatcher"]
        if answers:
            found["claim_answered"] = answers[-1]
        # consecutive segments to Postgres are one flight; an answer in between ends it
        previous = None
        for _at, f in between:
            if f == "dispatcher > postgres" and previous != f:
                flights += 1
            if f in ("dispatcher > postgres", "postgres < dispatcher"):
                previous = f
    return found, flights


def run(args: argparse.Namespace) -> int:
    with local_stack(args.keep) as stack:
        install(stack, dispatcher_dir=args.dispatcher)
        with psycopg.connect(stack.env["DB_URL"], autocommit=True) as conn:
            warm_up(conn)
            pids = processes(stack)
            fn_ports = {r: set().union(*(listening_ports(p) for p in pids[r])) for r in pids}
            pg_port = urlsplit(stack.env["DB_URL"]).port
            gw_port = urlsplit(stack.env["API_URL"]).port
            assert pg_port is not None and gw_port is not None
            owners = Owners({r: ps for r, ps in pids.items()})
            roles = Roles(pg_port, gw_port, fn_ports["dispatcher"], fn_ports["target"], owners)
            queue = new_queue(conn, f"bench-hops-{uuid.uuid4().hex[:6]}", args.workers)
            count = max(2, int(args.rate * args.seconds))
            sent: list[tuple[str, float]] = []
            ports = [pg_port, gw_port, *roles.dispatcher, *roles.target]
            with Capture(ports) as capture, OwnerSampler(owners):
                bench_port = _local_port(conn)
                owners.ports[bench_port] = "bench"
                started = time.monotonic()
                with conn.cursor() as cur:
                    for i in range(count):
                        pause = started + i / args.rate - time.monotonic()
                        if pause > 0:
                            time.sleep(pause)
                        at = time.time()
                        cur.execute(
                            "insert into supaqueue.job (queue, payload) values (%s, '{}')"
                            " returning id::text",
                            (queue,),
                            prepare=True,
                        )
                        row = cur.fetchone()
                        assert row is not None
                        sent.append((str(row[0]), at))
                wait_done(conn, queue, timeout=120)
                time.sleep(0.2)
            owners.ports[bench_port] = "bench"  # the last sample may have re-read it
            check_succeeded(conn, queue, count)
            arrived: dict[str, float] = dict(
                conn.execute(
                    "select id::text, (result->>'received_at_ms')::float8 / 1000"
                    " from supaqueue.job where queue = %s",
                    (queue,),
                ).fetchall()
            )
            conn.execute("select supaqueue.drop_queue(%s, true)", (queue,))
    report(capture.segments, roles, sent, arrived, args)
    return 0


def _local_port(conn: psycopg.Connection) -> int:
    with socket.socket(fileno=os.dup(conn.pgconn.socket)) as s:
        return int(s.getsockname()[1])


def report(
    segments: list[Segment],
    roles: Roles,
    sent: list[tuple[str, float]],
    arrived: dict[str, float],
    args: argparse.Namespace,
) -> None:
    segments.sort(key=lambda s: s.at)
    if args.dump is not None:
        with args.dump.open("w") as out:
            for job, at in sent:
                out.write(json.dumps({"job": job, "enqueued": at, "target": arrived[job]}) + "\n")
            for s in segments:
                out.write(json.dumps({"at": s.at, "flow": roles.flow(s),
                                      "head": s.head[:24].decode("latin-1")}) + "\n")  # fmt: skip
    starts = [at for _job, at in sent] + [float("inf")]
    per_hop: dict[str, list[float]] = {name: [] for name, *_ in HOPS}
    totals: list[float] = []
    flights: list[int] = []
    complete = 0
    for (job, at), end in zip(sent, starts[1:], strict=True):
        steps, claim_flights = timeline(segments, roles.flow, at, end)
        if claim_flights:
            flights.append(claim_flights)
        steps["target_handler"] = arrived[job]
        if len(steps) == len(STEPS) + 2:
            complete += 1
        for name, a, b, _owner in HOPS:
            if a in steps and b in steps:
                per_hop[name].append((steps[b] - steps[a]) * 1000)
        if "insert_sent" in steps:
            totals.append((arrived[job] - steps["insert_sent"]) * 1000)
    label = {"rate_per_s": args.rate, "workers": args.workers, "dispatcher": str(args.dispatcher)}
    emit({"bench": "idle_hops_setup", **label, "jobs": len(sent), "jobs_fully_traced": complete,
          "segments": len(segments)})  # fmt: skip
    for name, a, b, owner in HOPS:
        values = per_hop[name]
        emit({"bench": "idle_hop", **label, "hop": name, "from": a, "to": b, "owner": owner,
              "jobs": len(values), **_stats(values)})  # fmt: skip
    emit({"bench": "idle_hop_total", **label, "hop": "insert_sent_to_target_handler",
          "jobs": len(totals), **_stats(totals),
          "claim_round_trips_p50": statistics.median(flights) if flights else None})  # fmt: skip


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None}
    p95 = statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]
    return {"p50_ms": round(statistics.median(values), 3), "p95_ms": round(p95, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=20.0, help="jobs/s, one at a time")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--dispatcher", type=Path, default=DISPATCHER_DIR,
                        help="the supaqueue function folder to deploy")  # fmt: skip
    parser.add_argument("--dump", type=Path, help="write every job and segment there (JSON lines)")
    parser.add_argument("--keep", action="store_true", help="keep the local stack (debugging)")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 200 or not 0 < args.seconds <= 600 or not 1 <= args.workers <= 1000:
        parser.error("0 < --rate <= 200, 0 < --seconds <= 600, 1 <= --workers <= 1000")
    try:
        return run(args)
    except PermissionError:
        print("error: a packet socket needs root or CAP_NET_RAW; no hops measured", file=sys.stderr)
        return 2
    except (BenchError, psycopg.Error, httpx.HTTPError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
