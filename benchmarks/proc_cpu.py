"""CPU time of the local stack's processes, read from /proc (Linux), for per-job figures.

A process's total is its own user+system time plus that of its children that have exited and
been reaped (cutime/cstime), so a Postgres backend that came and went between two readings is
still counted: the postmaster reaps it. Resolution: one clock tick (10 ms), fine over thousands
of jobs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.procs import children, cwd, stat_fields

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def own_seconds(pid: int) -> float:
    """utime + stime of the process itself (all its threads)."""
    fields = stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * TICK_S


def tree_seconds(pid: int) -> float:
    """Own time plus the reaped children's (cutime + cstime)."""
    fields = stat_fields(pid)
    if fields is None:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) * TICK_S


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user/nice
    return total - idle, total


@dataclass
class CpuReading:
    """CPU seconds used so far, per part of the stack, and the machine's counters."""

    parts: dict[str, float] = field(default_factory=dict)
    machine_busy: int = 0
    machine_total: int = 0

    def minus(self, earlier: CpuReading) -> CpuReading:
        return CpuReading(
            {k: v - earlier.parts.get(k, 0.0) for k, v in self.parts.items()},
            self.machine_busy - earlier.machine_busy,
            self.machine_total - earlier.machine_total,
        )


def read_stack(postmaster: int, daemon: int, functions_dir: Path) -> CpuReading:
    """Postgres (the postmaster and every backend, worker, pg_cron job), the daemon (the
    supervisor and its parts: the Python gateway with the Management API stand-in, the pg_net
    stand-in sender) and each Edge Function's Deno process (a child of the gateway), keyed
    `function:<slug>`."""
    postgres = tree_seconds(postmaster) + sum(own_seconds(c) for c in children(postmaster))
    parts = {"postgres": postgres, "daemon": own_seconds(daemon)}
    prefix = str(functions_dir) + os.sep
    # The daemon's descendants, breadth first (the supervisor's parts, then their children).
    pending = children(daemon)
    for _ in range(10_000):  # bounded: a process tree is far smaller
        if not pending:
            break
        child = pending.pop()
        where = cwd(child) or ""
        if where.startswith(prefix):
            slug = where[len(prefix) :].split(os.sep, 1)[0]
            key = f"function:{slug}"
            parts[key] = parts.get(key, 0.0) + tree_seconds(child)
        else:
            parts["daemon"] += own_seconds(child)
            pending += children(child)
    busy, total = machine_jiffies()
    return CpuReading(parts, busy, total)
