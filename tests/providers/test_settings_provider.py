"""The settings rows: upsert, removal of a key no longer declared, drift, delete."""

from __future__ import annotations

from typing import Any

import psycopg

from components.providers.settings import SettingsProvider
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

    provider.delete(created.id, outs)
    assert setting(db_url, "functions_url") is None


def test_bad_values_fail_check(db_url: str) -> None:
    failures = SettingsProvider().check({}, {"db_url": db_url, "values": {"a": 1}}).failures
    assert [(f.property, f.reason) for f in failures] == [
        ("values", "must be a map of strings to strings")
    ]
