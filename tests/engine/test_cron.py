"""The schedule evaluator (sql/*_cron.sql): pg_cron's syntax, cron's day rule, '<n> seconds',
time zones across DST changes, and clear errors. Checked against a brute-force reference (every
minute, Python's zoneinfo) on random expressions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from harness.engine import Engine


def runs(engine: Engine, cron: str, after: str, count: int = 4, tz: str = "UTC") -> list[str]:
    """The next `count` slots after `after`, as ISO text in zone `tz`."""
    with engine.conn.transaction():
        engine.conn.execute("select set_config('timezone', %s, true)", (tz,))
        rows = engine.conn.execute(
            "select to_char(r, 'YYYY-MM-DD HH24:MI:SSOF') as r"
            " from unnest(supaqueue.cron_next_runs(%s, %s, %s, %s::timestamptz)) r",
            (cron, tz, count, after),
        ).fetchall()
    return [row["r"] for row in rows]


def refused(engine: Engine, cron: str, tz: str = "UTC") -> str:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        engine.conn.execute("select supaqueue.cron_next_runs(%s, %s)", (cron, tz))
    return caught.value.diag.message_primary or ""


def test_fields_ranges_steps_lists_and_names(engine: Engine) -> None:
    # 2026-12-04 is a Friday
    assert runs(engine, "*/15 9-17 * * mon-fri", "2026-12-04 16:50Z", 5) == [
        "2026-12-04 17:00:00+00",
        "2026-12-04 17:15:00+00",
        "2026-12-04 17:30:00+00",
        "2026-12-04 17:45:00+00",
        "2026-12-07 09:00:00+00",
    ]
    assert runs(engine, "5,10-20/5 0 * * *", "2026-01-01 00:00Z", 4) == [
        "2026-01-01 00:05:00+00",
        "2026-01-01 00:10:00+00",
        "2026-01-01 00:15:00+00",
        "2026-01-01 00:20:00+00",
    ]
    # names in any case; 7 is Sunday as 0 is
    assert runs(engine, "0 12 * JAN,jul SUN", "2026-06-30 00:00Z", 2) == [
        "2026-07-05 12:00:00+00",
        "2026-07-12 12:00:00+00",
    ]
    assert runs(engine, "0 12 * * 7", "2026-06-30 00:00Z", 1) == runs(
        engine, "0 12 * * 0", "2026-06-30 00:00Z", 1
    )
    # a slot exactly at `after` is not after it
    assert runs(engine, "0 * * * *", "2026-01-01 05:00Z", 1) == ["2026-01-01 06:00:00+00"]
    assert runs(engine, "@daily", "2026-01-01 05:00Z", 1) == ["2026-01-02 00:00:00+00"]
    assert runs(engine, "@hourly", "2026-01-01 05:30Z", 1) == ["2026-01-01 06:00:00+00"]
    assert runs(engine, "@weekly", "2026-01-01 05:30Z", 1) == ["2026-01-04 00:00:00+00"]
    assert runs(engine, "@monthly", "2026-01-01 05:30Z", 1) == ["2026-02-01 00:00:00+00"]
    assert runs(engine, "@yearly", "2026-01-01 05:30Z", 1) == ["2027-01-01 00:00:00+00"]
    # leap day: the next one is in 2028
    assert runs(engine, "0 0 29 2 *", "2026-01-01 00:00Z", 1) == ["2028-02-29 00:00:00+00"]


def test_day_of_month_or_day_of_week_as_cron(engine: Engine) -> None:
    # both restricted: either matches (the 1st, and every Monday)
    assert runs(engine, "0 0 1 * 1", "2026-01-01 00:00Z", 4) == [
        "2026-01-05 00:00:00+00",
        "2026-01-12 00:00:00+00",
        "2026-01-19 00:00:00+00",
        "2026-01-26 00:00:00+00",
    ]
    assert "2026-02-01 00:00:00+00" in runs(engine, "0 0 1 * 1", "2026-01-27 00:00Z", 2)
    # a field starting with '*' (even '*/10') counts as unrestricted: both must match
    assert runs(engine, "0 0 */10 * 1", "2026-01-01 00:00Z", 2) == [
        "2026-05-11 00:00:00+00",
        "2026-06-01 00:00:00+00",
    ]


def test_seconds_schedules_are_aligned_to_the_epoch(engine: Engine) -> None:
    assert runs(engine, "10 seconds", "2026-01-01 00:00:05Z", 3) == [
        "2026-01-01 00:00:10+00",
        "2026-01-01 00:00:20+00",
        "2026-01-01 00:00:30+00",
    ]
    assert runs(engine, "1 second", "2026-01-01 00:00:05.5Z", 1) == ["2026-01-01 00:00:06+00"]
    assert runs(engine, " 30 Seconds ", "2026-01-01 00:00:30Z", 1) == ["2026-01-01 00:01:00+00"]


def test_dst_spring_forward(engine: Engine) -> None:
    ny = "America/New_York"  # 2026-03-08 02:00 EST -> 03:00 EDT
    # a fixed time the clock skips runs once, shifted by the jump; then as usual
    assert runs(engine, "30 2 * * *", "2026-03-07 12:00-05", 3, ny) == [
        "2026-03-08 03:30:00-04",
        "2026-03-09 02:30:00-04",
        "2026-03-10 02:30:00-04",
    ]
    # an hourly job follows the real clock: nothing at the skipped 02:00, no double 03:00
    assert runs(engine, "0 * * * *", "2026-03-08 00:30-05", 4, ny) == [
        "2026-03-08 01:00:00-05",
        "2026-03-08 03:00:00-04",
        "2026-03-08 04:00:00-04",
        "2026-03-08 05:00:00-04",
    ]
    assert runs(engine, "*/30 * * * *", "2026-03-08 01:15-05", 3, ny) == [
        "2026-03-08 01:30:00-05",
        "2026-03-08 03:00:00-04",
        "2026-03-08 03:30:00-04",
    ]


def test_dst_fall_back(engine: Engine) -> None:
    ny = "America/New_York"  # 2026-11-01 02:00 EDT -> 01:00 EST: 01:xx happens twice
    # a fixed time in the repeated hour runs once, at its first occurrence
    assert runs(engine, "30 1 * * *", "2026-10-31 12:00-04", 3, ny) == [
        "2026-11-01 01:30:00-04",
        "2026-11-02 01:30:00-05",
        "2026-11-03 01:30:00-05",
    ]
    # a wildcard job runs in both occurrences
    assert runs(engine, "*/30 * * * *", "2026-11-01 00:45-04", 6, ny) == [
        "2026-11-01 01:00:00-04",
        "2026-11-01 01:30:00-04",
        "2026-11-01 01:00:00-05",
        "2026-11-01 01:30:00-05",
        "2026-11-01 02:00:00-05",
        "2026-11-01 02:30:00-05",
    ]
    # evaluated from inside the repeated hour, the second occurrence is still found
    assert runs(engine, "0,30 * * * *", "2026-11-01 01:40-04", 2, ny) == [
        "2026-11-01 01:00:00-05",
        "2026-11-01 01:30:00-05",
    ]


def test_half_hour_dst_and_southern_hemisphere(engine: Engine) -> None:
    # Lord Howe Island: 2026-04-05 02:00 +11 -> 01:30 +10:30 (a 30-minute repeat)
    lh = "Australia/Lord_Howe"
    assert runs(engine, "45 1 * * *", "2026-04-04 12:00+11", 2, lh) == [
        "2026-04-05 01:45:00+11",
        "2026-04-06 01:45:00+10:30",
    ]
    # Sydney: 2026-10-04 02:00 +10 -> 03:00 +11
    assert runs(engine, "30 2 * * *", "2026-10-03 12:00+10", 2, "Australia/Sydney") == [
        "2026-10-04 03:30:00+11",
        "2026-10-05 02:30:00+11",
    ]


@pytest.mark.parametrize(
    ("cron", "tz", "says"),
    [
        ("61 * * * *", "UTC", "minute field '61': values must be within 0-59"),
        ("* 24 * * *", "UTC", "hour field '24': values must be within 0-23"),
        ("* * 0 * *", "UTC", "day-of-month field '0': values must be within 1-31"),
        ("1/5 * * * *", "UTC", "a step needs a range"),
        ("5-1 * * * *", "UTC", "range 5-1 goes backwards"),
        ("*/0 * * * *", "UTC", "a step must be at least 1"),
        ("* * * foo *", "UTC", "unknown name 'foo'"),
        ("* * *", "UTC", "must have 5 fields"),
        ("", "UTC", "must have 5 fields"),
        ("@reboot", "UTC", "'@reboot' is not supported"),
        ("60 seconds", "UTC", "must be between 1 and 59 seconds"),
        ("0 seconds", "UTC", "must be between 1 and 59 seconds"),
        ("0 0 30 2 *", "UTC", "never runs"),
        ("* * * * *", "Mars/Olympus", "timezone: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_invalid_schedules_are_refused_with_the_reason(
    engine: Engine, cron: str, tz: str, says: str
) -> None:
    message = refused(engine, cron, tz)
    assert says in message
    assert message.startswith("timezone:" if "timezone" in says else "cron:")


# --- brute-force reference ---------------------------------------------------------------------


def _field_values(text: str, low: int, high: int, names: list[str] | None = None) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step = part.partition("/")
        if body == "*":
            a, b = low, high
        else:
            first, _, last = body.partition("-")

            def value(token: str) -> int:
                if token.isdigit():
                    return int(token)
                assert names is not None
                return names.index(token.lower()) + low

            a = value(first)
            b = value(last) if last else a
        values.update(range(a, b + 1, int(step) if step else 1))
    return values


def reference_runs(cron: str, after: datetime, count: int) -> list[datetime]:
    """Every minute after `after` (UTC), matched as cron does."""
    minute, hour, day, month, weekday = cron.split()
    minutes = _field_values(minute, 0, 59)
    hours = _field_values(hour, 0, 23)
    days = _field_values(day, 1, 31)
    months = _field_values(month, 1, 12)
    weekdays = {w % 7 for w in _field_values(weekday, 0, 7)}
    star = day.startswith("*") or weekday.startswith("*")
    found: list[datetime] = []
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(200_000):
        day_ok = t.day in days
        weekday_ok = (t.isoweekday() % 7) in weekdays
        if (
            t.minute in minutes
            and t.hour in hours
            and t.month in months
            and ((day_ok and weekday_ok) if star else (day_ok or weekday_ok))
        ):
            found.append(t)
            if len(found) == count:
                break
        t += timedelta(minutes=1)
    return found


def random_field(rng: random.Random, low: int, high: int) -> str:
    kind = rng.choice(["*", "n", "range", "step", "rangestep", "list"])
    a = rng.randint(low, high)
    b = rng.randint(a, high)
    return {
        "*": "*",
        "n": str(a),
        "range": f"{a}-{b}",
        "step": f"*/{rng.randint(1, 4)}",
        "rangestep": f"{a}-{b}/{rng.randint(1, 3)}",
        "list": f"{a},{b}",
    }[kind]


def test_matches_a_brute_force_reference_on_random_expressions(engine: Engine) -> None:
    rng = random.Random(13)
    checked = 0
    for _ in range(40):
        cron = " ".join(
            [
                random_field(rng, 0, 59),
                random_field(rng, 0, 23),
                rng.choice(["*", random_field(rng, 1, 28)]),
                rng.choice(["*", "*", random_field(rng, 1, 12)]),
                rng.choice(["*", random_field(rng, 0, 7)]),
            ]
        )
        after = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 500_000))
        expected = reference_runs(cron, after, 3)
        if len(expected) < 3:
            continue  # sparse beyond the reference's window
        got = engine.conn.execute(
            "select supaqueue.cron_next_runs(%s, 'UTC', 3, %s) as r", (cron, after)
        ).fetchone()
        assert got is not None
        assert [r.astimezone(UTC) for r in got["r"]] == expected, (cron, after)
        checked += 1
    assert checked >= 30


def test_far_and_dense_schedules(engine: Engine) -> None:
    """A yearly schedule in a DST zone (slots months apart) and 100 minutes in a row."""
    row: Any = engine.conn.execute(
        "select supaqueue.cron_next_runs('0 3 1 1 *', 'Europe/Paris', 5) as yearly,"
        " supaqueue.cron_next_runs('* * * * *', 'Europe/Paris', 100) as dense"
    ).fetchone()
    assert len(row["yearly"]) == 5 and len(row["dense"]) == 100
    years = [r.year for r in row["yearly"]]
    assert years == sorted(years) and len(set(years)) == 5


def test_no_slot_after_infinity(engine: Engine) -> None:
    row = engine.conn.execute(
        "select supaqueue.cron_next('* * * * *', 'infinity') as a,"
        " supaqueue.cron_next('5 seconds', 'infinity') as b"
    ).fetchone()
    assert row == {"a": None, "b": None}
