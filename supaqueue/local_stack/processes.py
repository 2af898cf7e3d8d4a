"""Child processes that end with their parent (Linux `PR_SET_PDEATHSIG`).

The stack's parts (gateway, pg_net sender) and each function's Deno process are started with
`preexec_fn=die_with_parent`: when the process that started them dies, even by SIGKILL, the
kernel kills them too, so nothing of a crashed stack lives on as an orphan.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL me when my parent dies."""
    parent = os.getppid()
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def signal_when_parent_dies(signum: int) -> None:
    """Runs in the child between fork and exec: send me `signum` when my parent dies (the
    supervisor's keeper, which then takes its place). A parent already gone is reported too."""
    parent = os.getppid()
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


def supported() -> bool:
    return _PRCTL is not None
