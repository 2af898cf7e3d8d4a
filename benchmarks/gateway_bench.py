"""The Edge Functions gateway alone: requests through it to a no-op function. JSON lines.

Starts a local stack (`supaqueue dev up` in a temp dir), deploys benchmarks/noop_target with
`verify_jwt` on (so every request pays the JWT check, as the engine's target calls do), then for
each concurrency sends --requests POSTs (a small JSON body, the service-role Bearer token) from
this process over keep-alive connections and prints:

- requests/s (noisy on a shared machine: the client here and others' load take CPU too);
- CPU ms per request of the gateway process alone, of the whole daemon (supervisor, gateway and
  the pg_net stand-in sender, as benchmarks/e2e_bench.py counts it) and of the function's Deno
  process, from /proc (benchmarks/proc_cpu.py): figures others' load hardly distorts.

`--baseline REF` runs a second stack from the checkout of git REF (its local_stack/, under the
same venv) beside this one, and interleaves the rounds (A, B, A, B, ...) so before and after come
from the same run; each line says which (`"gateway": "current" | "<REF>"`), and a summary line per
concurrency gives the medians over --rounds.

Usage: python benchmarks/gateway_bench.py [--requests 3000] [--concurrency 1,10,50] [--rounds 3]
                                          [--baseline main]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from cli_args import int_list
from proc_cpu import own_seconds

from supaqueue.edge_source import source_files

REPO = Path(__file__).resolve().parents[1]
TARGET_DIR = Path(__file__).resolve().with_name("noop_target")
TARGET = "noop-target"
WARMUP_REQUESTS = 200
BODY = b'{"job": "00000000-0000-0000-0000-000000000000", "payload": {"i": 1}}'


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


class BenchError(RuntimeError):
    """Something the benchmark needs did not happen; the message says what."""


@dataclass
class Stack:
    name: str
    root: Path  # the checkout whose local_stack runs this stack
    dir: Path
    env: dict[str, str]

    def pids(self) -> dict[str, int]:
        parts = json.loads((self.dir / "parts.json").read_text())
        found = {"supervisor": int((self.dir / "daemon.pid").read_text().strip())}
        found.update({k: int(v) for k, v in parts.get("pids", {}).items() if v})
        return found

    def function_pids(self) -> list[int]:
        """The Deno processes (children of the gateway) serving functions."""
        gateway = self.pids()["gateway"]
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == gateway:
                found.append(int(entry.name))
        return found

    def cpu(self) -> dict[str, float]:
        pids = self.pids()
        daemon = sum(own_seconds(p) for p in pids.values())
        return {
            "gateway": own_seconds(pids["gateway"]),
            "daemon": daemon,
            "function": sum(own_seconds(p) for p in self.function_pids()),
        }


def _cli(root: Path, *args: str, timeout: float = 180) -> str:
    env = dict(os.environ)
    # The baseline checkout's modules first (the venv's .pth points at this checkout).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "supaqueue.local_stack.cli", "dev", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=root, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        raise BenchError(f"supaqueue dev {args[0]} ({root}) failed: {proc.stderr.strip()}")
    return proc.stdout


@contextmanager
def local_stack(name: str, root: Path) -> Iterator[Stack]:
    tmp = Path(tempfile.mkdtemp(prefix="supaqueue-gateway-bench-"))
    tmp.chmod(0o755)  # as root, Postgres runs as the postgres OS user and must reach pgdata
    state = tmp / "stack"
    try:
        _cli(root, "up", "--dir", str(state))
        out = _cli(root, "status", "-o", "env", "--dir", str(state))
        env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        yield Stack(name, root, state, env)
    finally:
        try:
            _cli(root, "destroy", "--dir", str(state))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The files of git REF (what the stack runs from) in a temp dir."""
    tmp = Path(tempfile.mkdtemp(prefix="supaqueue-gateway-bench-ref-"))
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", ref, "supaqueue"],
            cwd=REPO, capture_output=True, check=False, timeout=60,
        )  # fmt: skip
        if archive.returncode != 0:
            raise BenchError(f"git archive {ref}: {archive.stderr.decode().strip()}")
        tar_path = tmp / "ref.tar"
        tar_path.write_bytes(archive.stdout)
        with tarfile.open(tar_path) as tar:
            tar.extractall(tmp / "src", filter="data")
        yield tmp / "src"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def deploy(stack: Stack) -> None:
    metadata = {"entrypoint_path": "index.ts", "verify_jwt": True}
    parts: list[tuple[str, tuple[str | None, str | bytes, str]]] = [
        ("metadata", (None, json.dumps(metadata), "application/json"))
    ]
    parts += [("file", (name, data, "application/octet-stream"))
              for name, data in source_files(TARGET_DIR)]  # fmt: skip
    reply = httpx.post(
        f"{stack.env['MANAGEMENT_API_URL']}/v1/projects/{stack.env['PROJECT_REF']}"
        "/functions/deploy",
        params={"slug": TARGET},
        headers={"Authorization": f"Bearer {stack.env['ACCESS_TOKEN']}"},
        files=parts,
        timeout=120,
    )
    if reply.status_code != 201:
        raise BenchError(f"deploy {TARGET}: {reply.status_code} {reply.text}")


async def _load(stack: Stack, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """Send `requests` POSTs, `concurrency` at a time; returns the seconds it took and each
    request's milliseconds."""
    url = f"{stack.env['FUNCTIONS_URL']}/{TARGET}"
    headers = {
        "Authorization": f"Bearer {stack.env['SERVICE_ROLE_KEY']}",
        "Content-Type": "application/json",
    }
    remaining = requests
    failures: list[str] = []
    millis: list[float] = []

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0 and not failures:
            remaining -= 1
            began = time.perf_counter()
            async with http.post(url, data=BODY, headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    failures.append(f"{resp.status} {body[:200]!r}")
            millis.append((time.perf_counter() - began) * 1000)

    timeout = aiohttp.ClientTimeout(total=600)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        began = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        seconds = time.monotonic() - began
    if failures:
        raise BenchError(f"the gateway answered {failures[0]}")
    return seconds, millis


def measure(stack: Stack, requests: int, concurrency: int) -> dict[str, Any]:
    before = stack.cpu()
    seconds, millis = asyncio.run(_load(stack, requests, concurrency))
    after = stack.cpu()
    per = {k: round((after[k] - before[k]) * 1000 / requests, 4) for k in after}
    return {
        "bench": "gateway",
        "gateway": stack.name,
        "concurrency": concurrency,
        "requests": requests,
        "requests_per_s": round(requests / seconds, 1),
        # client → gateway → function → back, as this client sees it (at concurrency 1: the
        # latency a request pays for the gateway, plus the function and the client)
        "request_p50_ms": round(statistics.median(millis), 3),
        "gateway_cpu_ms_per_request": per["gateway"],
        "daemon_cpu_ms_per_request": per["daemon"],
        "function_cpu_ms_per_request": per["function"],
    }


def run(args: argparse.Namespace) -> int:
    with ExitStack() as stack_of:
        roots = [("current", REPO)]
        if args.baseline:
            roots.append((args.baseline, stack_of.enter_context(checkout(args.baseline))))
        stacks = [stack_of.enter_context(local_stack(name, root)) for name, root in roots]
        for stack in stacks:
            deploy(stack)
            asyncio.run(_load(stack, WARMUP_REQUESTS, 10))  # boots the function, fills pools
        emit({"bench": "gateway_setup", "requests": args.requests,
              "concurrency": args.concurrency, "rounds": args.rounds,
              "gateways": [s.name for s in stacks]})  # fmt: skip
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for concurrency in args.concurrency:
                for stack in stacks:  # interleaved: others' load hits both alike
                    figures = measure(stack, args.requests, concurrency)
                    emit(figures)
                    results.setdefault((stack.name, concurrency), []).append(figures)
        for (name, concurrency), rows in results.items():
            keys = ("requests_per_s", "request_p50_ms", "gateway_cpu_ms_per_request",
                    "daemon_cpu_ms_per_request", "function_cpu_ms_per_request")  # fmt: skip
            medians = {k: round(statistics.median(r[k] for r in rows), 4) for k in keys}
            emit({"bench": "gateway_median", "gateway": name, "concurrency": concurrency,
                  "rounds": len(rows), **medians})  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000, help="requests per measurement")
    parser.add_argument(
        "--concurrency",
        type=int_list("--concurrency", 1, 500),
        default=[1, 10, 50],
        help="e.g. 1,10,50",
    )
    parser.add_argument("--rounds", type=int, default=3, help="measurements per concurrency")
    parser.add_argument("--baseline", help="also run the gateway of this git ref, interleaved")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 1_000_000 or not 1 <= args.rounds <= 20:
        parser.error("1 <= --requests <= 1000000, 1 <= --rounds <= 20")
    try:
        return run(args)
    except (BenchError, httpx.HTTPError, aiohttp.ClientError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
