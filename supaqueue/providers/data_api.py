"""The Data API exposure of supaqueue's API schema (`supaqueue_api`): one entry in the project's
PostgREST `db_schema` (Management API `GET/PATCH /v1/projects/{ref}/postgrest`).

The user's own exposed schemas are kept: create appends the entry, delete removes only it (and
only when this resource added it: a schema the project exposed before stays exposed). `check`
reads the setting, so `pulumi preview` shows the `db_schema` that `up` will write
(`db_schema_after`), and an entry removed outside Pulumi shows as an update that adds it again.
"""

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

from supaqueue.clients.management_api import ManagementApiError
from supaqueue.providers.api_props import (
    API_KEYS,
    API_SECRET_OUTPUTS,
    API_UPDATABLE,
    ApiTarget,
    api_client,
    check_api_props,
)
from supaqueue.providers.base import explicit_diff, presented, unknown_keys, with_secret_outputs
from supaqueue.providers.custom import SupaqueueResource

API_SCHEMA = "supaqueue_api"  # sql/0024_data_api.sql


def _planned(props: dict[str, Any]) -> tuple[str, bool] | None:
    """(the db_schema after `up`, whether the entry is there now); None when the API cannot
    tell (a preview without credentials, an outage): no finding then, create/update will say."""
    if unknown_keys(props) & {*API_KEYS, "schema"}:
        return None
    try:
        with api_client(props) as api:
            current = api.postgrest_schemas()
    except ManagementApiError:
        return None
    present = props["schema"] in current
    return ",".join(current if present else [*current, props["schema"]]), present


def _expose(props: dict[str, Any]) -> dict[str, Any]:
    with api_client(props) as api:
        current = api.postgrest_schemas()
        if props["schema"] in current:
            return {**props, "db_schema_after": ",".join(current), "exposed_now": True}
        after = api.set_postgrest_schemas([*current, props["schema"]])
    return {**props, "db_schema_after": ",".join(after), "exposed_now": True, "added": True}


class DataApiSchemaProvider(ResourceProvider):
    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = check_api_props(news)
        schema = news.get("schema")
        if "schema" not in unknown_keys(news) and (not isinstance(schema, str) or not schema):
            failures.append(CheckFailure("schema", "is required (a schema name)"))
        inputs = {key: news.get(key) for key in (*API_KEYS, "schema")}
        planned = None if failures else _planned(news)
        if planned is not None:
            inputs["db_schema_after"], inputs["exposed_now"] = planned
        return CheckResult(inputs, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        result = explicit_diff(
            olds, news, updatable=API_UPDATABLE, identity=("schema", "project_ref")
        )
        if news.get("exposed_now") is False and not result.replaces:
            # removed outside Pulumi: `up` adds it again
            return DiffResult(changes=True, replaces=[], stables=[], delete_before_replace=False)
        return result

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = _expose({**props, "added": False})
        return CreateResult(f"{props['project_ref']}/{props['schema']}", outs)

    @presented
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(_expose({**news, "added": bool(olds.get("added"))}))

    @presented
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with api_client(props) as api:
            current = api.postgrest_schemas()
        present = props.get("schema") in current
        return ReadResult(id_, {**props, "exposed_now": present,
                                "db_schema_after": ",".join(current)})  # fmt: skip

    @presented
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if not props.get("added"):
            return  # exposed before this stack: the project's setting, not ours to remove
        with api_client(props) as api:
            current = api.postgrest_schemas()
            if props["schema"] in current:
                api.set_postgrest_schemas([s for s in current if s != props["schema"]])


class DataApiSchema(SupaqueueResource, kind="DataApiSchema"):
    """supaqueue's API schema exposed to the project's Data API (PostgREST)."""

    db_schema_after: pulumi.Output[str]
    added: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        *,
        api: ApiTarget,
        schema: str = API_SCHEMA,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {**api.props(), "schema": schema, "db_schema_after": None, "exposed_now": None,
                 "added": None}  # fmt: skip
        super().__init__(name, props, with_secret_outputs(opts, API_SECRET_OUTPUTS))
