"""The rows of `supaqueue.settings` the program owns (functions_url, dispatcher_slug)."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from supaqueue.clients.postgres import check_url, connect
from supaqueue.providers.base import explicit_diff, presented, unknown_keys, with_secret_outputs
from supaqueue.providers.custom import SupaqueueResource
from supaqueue.sql_files import queries

SQL = "settings.sql"
RESOURCE_ID = "supaqueue.settings"


def _write(db_url: str, values: dict[str, str], removed: list[str]) -> None:
    text = queries(SQL)
    with connect(db_url) as conn, conn.transaction():
        for key, value in sorted(values.items()):
            conn.execute(text["upsert_setting"], {"key": key, "value": value})
        for key in removed:
            conn.execute(text["delete_setting"], {"key": key})


class SettingsProvider(ResourceProvider):
    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        unknown = unknown_keys(news)
        values = news.get("values")
        if "values" not in unknown:
            if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in values.items()
            ):
                failures.append(CheckFailure("values", "must be a map of strings to strings"))
        if "db_url" not in unknown and (why := check_url(news.get("db_url"))):
            failures.append(CheckFailure("db_url", f"the database URL {why}"))
        return CheckResult({"db_url": news.get("db_url"), "values": values}, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return explicit_diff(olds, news, updatable=("values", "db_url"))

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        _write(props["db_url"], props["values"], [])
        return CreateResult(RESOURCE_ID, dict(props))

    @presented
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        removed = [key for key in (olds.get("values") or {}) if key not in news["values"]]
        _write(news["db_url"], news["values"], removed)
        return UpdateResult(dict(news))

    @presented
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        text = queries(SQL)
        keys = sorted((props.get("values") or {}).keys())
        with connect(props["db_url"]) as conn:
            exists = conn.execute(text["settings_table_exists"]).fetchone()
            if not exists or not exists[0]:
                return ReadResult("", {})
            rows = conn.execute(text["read_settings"], {"keys": keys}).fetchall()
        return ReadResult(id_, {**props, "values": {key: value for key, value in rows}})

    @presented
    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # The rows go with the schema, which a destroy deletes right after this (it depends on
        # the schema). Deleting them here first would leave an installation the schema's delete
        # refuses to remove without its settings, unable to dispatch; the resource is never
        # removed on its own (an `up` changes or removes single keys with `update`).
        return None


class Settings(SupaqueueResource, kind="Settings"):
    """Settings rows the SQL engine reads (no text substitution into SQL)."""

    values: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        db_url: pulumi.Input[str],
        values: pulumi.Input[dict[str, str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            name,
            {"db_url": db_url, "values": values},
            with_secret_outputs(opts, ["db_url"]),
        )
