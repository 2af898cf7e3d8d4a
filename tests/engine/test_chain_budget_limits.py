"""One authority for the chain budget's bounds: the SQL constraints on supaqueue.settings
(`settings_chain_max_jobs_valid`, `settings_chain_max_seconds_valid`). The stack config
(supaqueue/chain_budget.py, so `pulumi preview` names the key) must accept and refuse exactly
what they do: each bound, and one step beyond, is probed in both against a real database."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from supaqueue.chain_budget import CHAIN_SETTINGS, ChainSetting, chain_value


@pytest.fixture
def conn(engine_dsn: str) -> Any:
    with psycopg.connect(engine_dsn, autocommit=True) as connection:
        yield connection


def _sql_accepts(conn: psycopg.Connection, setting: str, text: str) -> bool:
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(
                "insert into supaqueue.settings (key, value) values (%s, %s)", (setting, text)
            )
    except psycopg.errors.CheckViolation:
        return False
    return True


def _probes() -> list[tuple[ChainSetting, int]]:
    return [
        (setting, value)
        for setting in CHAIN_SETTINGS
        for value in (setting.minimum - 1, setting.minimum, setting.maximum, setting.maximum + 1)
    ]


@pytest.mark.parametrize(
    ("setting", "value"), _probes(), ids=[f"{s.setting}={v}" for s, v in _probes()]
)
def test_chain_budget_bounds_agree_with_sql(
    conn: psycopg.Connection, setting: ChainSetting, value: int
) -> None:
    text, _why = chain_value(setting, value)
    assert _sql_accepts(conn, setting.setting, str(value)) is (text is not None)
    if text is not None:  # what the provider would write is what SQL accepts
        assert _sql_accepts(conn, setting.setting, text)


def test_the_sql_defaults_are_inside_the_bounds(conn: psycopg.Connection) -> None:
    row = conn.execute("select max_jobs, max_seconds from supaqueue.chain_budget()").fetchone()
    assert row is not None
    for setting, default in zip(CHAIN_SETTINGS, row, strict=True):
        assert chain_value(setting, default)[0] == str(default), setting.setting


def test_the_budget_keys_are_the_rows_sql_reads(conn: psycopg.Connection) -> None:
    for setting in CHAIN_SETTINGS:
        definition = conn.execute(
            "select pg_get_functiondef('supaqueue.chain_budget'::regproc)"
        ).fetchone()
        assert definition is not None and f"'{setting.setting}'" in definition[0]
