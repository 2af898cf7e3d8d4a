"""The Management API's per-token, per-endpoint request limit (120 a minute on Supabase).

Fixed one-minute windows are enough to make clients meet real 429s; the limit can be lowered
at runtime (`PUT /_local/management-rate-limit`) or with SUPAQUEUE_MGMT_RATE_LIMIT.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

DEFAULT_PER_MINUTE = 120
WINDOW_S = 60.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the window restarts

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_s)
        return headers


def limit_from_env() -> int:
    raw = os.environ.get("SUPAQUEUE_MGMT_RATE_LIMIT", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_PER_MINUTE


class RateLimiter:
    def __init__(self, per_minute: int = DEFAULT_PER_MINUTE) -> None:
        self.per_minute = per_minute
        self._windows: dict[tuple[str, ...], tuple[float, int]] = {}

    def set_limit(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._windows.clear()

    def check(self, key: tuple[str, ...]) -> Decision:
        now = time.monotonic()
        started, count = self._windows.get(key, (now, 0))
        if now - started >= WINDOW_S:
            started, count = now, 0
        reset_s = max(1, math.ceil(started + WINDOW_S - now))
        if count >= self.per_minute:
            return Decision(False, self.per_minute, 0, reset_s)
        count += 1
        self._windows[key] = (started, count)
        return Decision(True, self.per_minute, self.per_minute - count, reset_s)
