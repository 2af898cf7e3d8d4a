"""How long `supaqueue dev up` takes: cold (a new state folder: initdb, extensions, keys) and
warm (after `dev down`, the same folder reused). Prints one JSON line per measurement.

The tests (tests/local_stack/test_cli.py) check what a warm up does (the cluster is reused, ports
and credentials kept); how fast it is belongs here.

Usage: python benchmarks/dev_up_bench.py [--warm-runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class BenchError(RuntimeError):
    """Something the benchmark needs did not happen; the message says what."""


def _dev(*args: str) -> float:
    """Run `supaqueue dev ...`; return its wall-clock seconds."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "supaqueue.local_stack.cli", "dev", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise BenchError(f"supaqueue dev {args[0]} failed: {proc.stderr.strip()}")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="supaqueue-dev-up-bench-"))
    tmp.chmod(0o755)  # as root, Postgres runs as the postgres OS user and must reach pgdata
    state = str(tmp / "stack")
    try:
        cold = _dev("up", "--dir", state)
        print(json.dumps({"measurement": "dev_up_cold", "seconds": round(cold, 2)}), flush=True)
        warm = []
        for _ in range(max(1, args.warm_runs)):
            _dev("down", "--dir", state)
            warm.append(_dev("up", "--dir", state))
        print(
            json.dumps(
                {
                    "measurement": "dev_up_warm",
                    "runs": len(warm),
                    "median_seconds": round(statistics.median(warm), 2),
                    "max_seconds": round(max(warm), 2),
                }
            ),
            flush=True,
        )
    except BenchError as exc:
        print(f"dev_up_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        subprocess.run(
            [sys.executable, "-m", "supaqueue.local_stack.cli", "dev", "destroy", "--dir", state],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
