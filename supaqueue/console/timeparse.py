"""Times on the command line: an age (`90s`, `15m`, `2h`, `7d`) or an ISO 8601 timestamp."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta | None:
    match = _AGE.match(text.strip().lower())
    if not match:
        return None
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


class TimeParam(click.ParamType):
    """An age ago from now (`2h` = two hours ago) or an ISO timestamp (UTC when no offset)."""

    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None):  # type: ignore[no-untyped-def]
        if isinstance(value, datetime):
            return value
        text = str(value)
        age = parse_age(text)
        if age is not None:
            return datetime.now(UTC) - age
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is neither an age (30m, 2h, 7d) nor an ISO timestamp", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def interval(window: str) -> str:
    """`1h` as a Postgres interval text."""
    age = parse_age(window)
    assert age is not None
    return f"{age.total_seconds()} seconds"


class WindowParam(click.ParamType):
    """A window length (`15m`, `1h`, `1d`), checked and kept as written."""

    name = "WINDOW"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None):  # type: ignore[no-untyped-def]
        age = parse_age(str(value))
        if age is None or age.total_seconds() <= 0:
            self.fail(f"{value!r} is not a window like 15m, 1h or 1d", param, ctx)
        return str(value).strip().lower()
