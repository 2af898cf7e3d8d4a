"""Command-line values the benchmarks share: comma-separated whole numbers within bounds."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_list(option: str, low: int, high: int | None = None) -> Callable[[str], list[int]]:
    """An argparse `type` for `option`: "1,10,50", each from `low` to `high` (or at least `low`)."""
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"

    def parse(text: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{option}: {exc}") from exc
        if not values or any(v < low or (high is not None and v > high) for v in values):
            raise argparse.ArgumentTypeError(f"{option}: values {bounds}, comma-separated")
        return values

    return parse
