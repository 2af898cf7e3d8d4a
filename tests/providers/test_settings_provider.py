"""The settings rows: upsert, removal of a key no longer declared, drift; delete leaves them to
the schema."""

from __future__ import annotations

from typing import Any

import psycopg

from supaqueue.providers.settings import SettingsProvider
from tests.providers.conftest import sql_value


def setting(db_url: str, key: str) -> Any:
    return sql_value(db_url, "select value from supaqueue.settings where key = %s", key)


def test_settings_lifecycle(installed: dict[str, Any], db_url: str) -> None:
    provider = SettingsProvider()
    props = provider.check(
        {}, {"db_url": db_url, "values": {"functions_url": "http://a/functions/v1", "x": "1"}}
    )
    assert props.failures == []
    created = provider.create(props.inputs)
    outs = created.outs or {}
    assert setting(db_url, "functions_url") == "http://a/functions/v1"
    assert setting(db_url, "x") == "1"

    news = {"db_url": db_url, "values": {"functions_url": "http://b/functions/v1"}}
    assert provider.diff(created.id, outs, news).changes is True
    outs = provider.update(created.id, outs, news).outs or {}
    assert setting(db_url, "functions_url") == "http://b/functions/v1"
    assert setting(db_url, "x") is None
    assert provider.diff(created.id, outs, news).changes is False

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update supaqueue.settings set value = 'tampered' where key = 'functions_url'")
    refreshed = provider.read(created.id, outs).outs or {}
    assert refreshed["values"] == {"functions_url": "tampered"}
    assert provider.diff(created.id, refreshed, news).changes is True

    # The rows go with the schema (deleted after this at a destroy): a destroy that the schema
    # refuses must not leave the installation without them (issue 22).
    provider.delete(created.id, outs)
    assert setting(db_url, "functions_url") == "tampered"


def test_bad_values_fail_check(db_url: str) -> None:
    failures = SettingsProvider().check({}, {"db_url": db_url, "values": {"a": 1}}).failures
    assert [(f.property, f.reason) for f in failures] == [
        ("values", "must be a map of strings to strings")
    ]


def test_chain_budget_rows_set_in_sql_and_by_the_stack(
    installed: dict[str, Any], db_url: str
) -> None:
    """The stack's budget wins while it sets it; a key it never set stays as SQL left it; a key
    it stops setting is deleted, back to SQL's default."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into supaqueue.settings (key, value) values ('chain_max_jobs', '7')")
        conn.execute(
            "insert into supaqueue.settings (key, value) values ('chain_max_seconds', '90')"
        )
    provider = SettingsProvider()
    base = {"functions_url": "http://a/functions/v1", "dispatcher_slug": "supaqueue"}
    created = provider.create({"db_url": db_url, "values": base})
    outs = created.outs or {}
    assert setting(db_url, "chain_max_jobs") == "7"  # not the stack's: left alone
    news = {"db_url": db_url, "values": {**base, "chain_max_jobs": "100"}}
    assert provider.diff(created.id, outs, news).changes is True
    outs = provider.update(created.id, outs, news).outs or {}
    assert setting(db_url, "chain_max_jobs") == "100"  # the stack's value wins
    assert setting(db_url, "chain_max_seconds") == "90"
    budget = "select max_jobs, max_seconds from supaqueue.chain_budget()"
    assert sql_value(db_url, budget) == 100
    news = {"db_url": db_url, "values": base}
    provider.update(created.id, outs, news)
    assert setting(db_url, "chain_max_jobs") is None  # removed from the stack: the default
    assert sql_value(db_url, budget) == 50
    assert setting(db_url, "chain_max_seconds") == "90"
