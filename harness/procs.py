"""This machine's processes, read from /proc (Linux): the finders tests use to check what a
stack runs and what it leaves behind, and benchmarks to find the processes whose CPU time they
read (benchmarks/proc_cpu.py). A process may end while it is read: it is then skipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")


def pids() -> Iterator[int]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces


def alive(pid: int) -> bool:
    """Running: a zombie waiting for its parent counts as gone."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    return [p for p in pids() if (f := stat_fields(p)) is not None and int(f[1]) == pid]


def cmdline(pid: int) -> str | None:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def cwd(pid: int) -> str | None:
    try:
        return os.readlink(PROC / str(pid) / "cwd")
    except OSError:  # gone, or not ours to see
        return None


def mentioning(folder: Path, *, but_postgres: bool = False) -> list[int]:
    """Live processes whose command line names `folder` or that run inside it."""
    found = []
    for pid in pids():
        line, where = cmdline(pid), cwd(pid)
        if line is None or where is None:
            continue
        if but_postgres and "postgres" in line.split(" ")[0]:
            continue
        if (str(folder) in line or where.startswith(str(folder))) and alive(pid):
            found.append(pid)
    return found


def working_in(folder: Path) -> list[int]:
    """Live processes whose working directory is `folder` or below it."""
    inside = str(folder) + os.sep
    return [
        pid
        for pid in pids()
        if (where := cwd(pid)) is not None and (where + os.sep).startswith(inside) and alive(pid)
    ]
