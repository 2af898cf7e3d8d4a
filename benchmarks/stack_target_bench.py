"""How long one operator command takes with `--stack NAME` against `--db-url`. One JSON line per
measurement.

Starts a temporary cluster with supaqueue installed, a throw-away Pulumi project using this
checkout's toolchain (file backend, passphrase secrets, `supaqueue:dbUrl` set as a secret), then
times `supaqueue status --json` (wall clock of the whole process) `--calls` times each:
- `--db-url URL` (the floor: Python start-up and the query),
- `--stack NAME`, the first call after the stack's config changed (asks the Pulumi CLI),
- `--stack NAME` again (what the console remembers of the stack; target < 1.5 s).
Usage: python benchmarks/stack_target_bench.py [--calls 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from supaqueue import migrations
from supaqueue.local_stack.postgres import Cluster

# the checkout whose .venv runs this (so another checkout's python measures that checkout)
REPO = Path(sys.executable).parent.parent.parent
SUPAQUEUE = str(Path(sys.executable).parent / "supaqueue")
TARGET_SECONDS = 1.5


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    result = subprocess.run(
        [SUPAQUEUE, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"supaqueue {' '.join(args)} failed: {result.stderr.strip()}")
    return elapsed


def line(name: str, values: list[float], **extra: object) -> None:
    print(
        json.dumps(
            {
                "measurement": name,
                "calls": len(values),
                "median_s": round(statistics.median(values), 3),
                "max_s": round(max(values), 3),
                **extra,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    with Cluster.temporary() as cluster, tempfile.TemporaryDirectory() as tmp:
        with cluster.connect() as conn:
            migrations.apply(conn, migrations.load_migrations())
        dsn = cluster.dsn()
        project = Path(tmp) / "project"
        project.mkdir()
        shutil.copy(REPO / "Pulumi.yaml", project / "Pulumi.yaml")
        for name in ("scripts", "toolchain", ".toolchain", ".venv"):
            (project / name).symlink_to(REPO / name)
        env = {
            **{k: v for k, v in os.environ.items() if k != "DB_URL"},
            "SUPAQUEUE_ROOT": str(project),
            "PULUMI_BACKEND_URL": f"file://{tmp}/state",
            "PULUMI_CONFIG_PASSPHRASE": "bench-only-passphrase",
            "SUPAQUEUE_STACK_CACHE_DIR": f"{tmp}/stack-cache",
        }
        script = str(project / "scripts" / "pulumi-stack.sh")

        def pulumi(*pulumi_args: str) -> None:
            subprocess.run(
                [script, "bench", *pulumi_args], env=env, check=True, capture_output=True
            )

        pulumi("config", "set", "supaqueue:target", "supabase")
        pulumi("config", "set", "--secret", "supaqueue:dbUrl", dsn)
        base = ["status", "--json"]
        line("db_url", [timed([*base, "--db-url", dsn], env) for _ in range(args.calls)])
        first: list[float] = []
        again: list[float] = []
        for i in range(args.calls):
            # a changed config: what the console remembered no longer applies
            pulumi("config", "set", "supaqueue:benchRun", str(i))
            first.append(timed([*base, "--stack", "bench"], env))
            again.append(timed([*base, "--stack", "bench"], env))
        line("stack_after_config_change", first)
        line("stack", again, target_s=TARGET_SECONDS, ok=statistics.median(again) < TARGET_SECONDS)


if __name__ == "__main__":
    main()
