"""Test hook of the Management API stand-in: the next requests fail as the real API sometimes does.

`PUT /_local/management-faults {"faults": [503, "drop", 502]}` makes the next three `/v1/`
requests answer 503, lose their connection without an answer, then answer 502 (in that order,
each fault used once); `{"faults": []}` clears the plan. Real clients must survive both kinds.
"""

from __future__ import annotations

from collections import deque
from typing import Any

DROP = "drop"
Fault = int | str  # an HTTP status (500-599), or DROP


class FaultPlan:
    def __init__(self) -> None:
        self._next: deque[Fault] = deque()

    def set(self, faults: list[Fault]) -> None:
        self._next = deque(faults)

    def take(self) -> Fault | None:
        """The fault for the request being served, if one is planned."""
        return self._next.popleft() if self._next else None


def parse_faults(body: Any) -> list[Fault]:
    """The plan of a hook request; ValueError naming what is wrong."""
    faults = body.get("faults") if isinstance(body, dict) else None
    if not isinstance(faults, list) or len(faults) > 100:
        raise ValueError('expected {"faults": [<5xx status> | "drop", ...]} (at most 100)')
    for fault in faults:
        is_status = isinstance(fault, int) and not isinstance(fault, bool) and 500 <= fault <= 599
        if not is_status and fault != DROP:
            raise ValueError(f'each fault is a 5xx status or "drop", got {fault!r}')
    return list(faults)
