"""The README's trigger and schedule blocks pass the checks `pulumi preview` makes against the
database (tests/unit/test_readme_config_blocks.py checks them through the stack config): the
trigger's `when` is a valid condition on a table `public.orders` with a `status` column, and
the schedule's cron and timezone give runs at 03:00 in Paris."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import yaml

from harness.engine import Engine
from supaqueue.providers.schedule.provider import next_runs, schedule_problems
from supaqueue.providers.trigger.provider import database_problems
from tests.support.readme import block


def declared(key: str) -> dict[str, Any]:
    (one,) = yaml.safe_load(block(key).text)[key.rstrip(":")]
    assert isinstance(one, dict)
    return one


def test_the_trigger_blocks_condition_is_valid_on_its_table(engine: Engine) -> None:
    trigger = declared("supaqueue:triggers:")
    with psycopg.connect(engine.dsn, autocommit=True) as conn:
        assert database_problems(conn, trigger)[0][0] == "table"  # no table yet: said
        conn.execute("create table public.orders (id bigint primary key, status text)")
        assert database_problems(conn, trigger) == []
        # and a condition the README's rules refuse is refused here too
        assert [f for f, _ in database_problems(conn, {**trigger, "when": "true) --"})] == [
            "when",
            "when",
        ]


def test_the_schedule_blocks_cron_runs_at_three_in_paris(engine: Engine) -> None:
    schedule = declared("supaqueue:schedules:")
    with psycopg.connect(engine.dsn, autocommit=True) as conn:
        assert schedule_problems(conn, schedule["cron"], schedule["timezone"]) == []
        runs = next_runs(conn, schedule["cron"], schedule["timezone"])
    paris = [datetime.fromisoformat(run).astimezone(ZoneInfo("Europe/Paris")) for run in runs]
    assert len(paris) == 3
    assert {(moment.hour, moment.minute) for moment in paris} == {(3, 0)}
