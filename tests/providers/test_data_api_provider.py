"""supaqueue_api exposed through the Management API stand-in's PostgREST settings: the user's
exposed schemas are kept, preview (check) shows the db_schema `up` writes, a removal outside
Pulumi shows as a change, delete removes only the entry this resource added."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from supaqueue.clients.management_api import ManagementApi
from supaqueue.providers.data_api import API_SCHEMA, DataApiSchemaProvider


def client(api: dict[str, str]) -> ManagementApi:
    return ManagementApi(api["management_api_url"], api["access_token"], api["project_ref"])


@pytest.fixture
def schemas(api: dict[str, str]) -> Iterator[list[str]]:
    """The user's own exposed schemas, put back as they were after the test."""
    with client(api) as c:
        before = c.postgrest_schemas()
        c.set_postgrest_schemas(["public", "graphql_public", "my_app"])
    try:
        yield ["public", "graphql_public", "my_app"]
    finally:
        with client(api) as c:
            c.set_postgrest_schemas(before)


def test_expose_keeps_the_users_schemas_and_destroy_restores(
    api: dict[str, str], schemas: list[str]
) -> None:
    provider = DataApiSchemaProvider()
    checked = provider.check({}, {**api, "schema": API_SCHEMA})
    assert checked.failures == []
    # what preview shows: the setting after `up`, the user's schemas first
    assert checked.inputs["db_schema_after"] == ",".join([*schemas, API_SCHEMA])
    assert checked.inputs["exposed_now"] is False
    created = provider.create(checked.inputs)
    outs: dict[str, Any] = created.outs or {}
    assert outs["added"] is True
    with client(api) as c:
        assert c.postgrest_schemas() == [*schemas, API_SCHEMA]
        # the user exposes one more schema; ours stays, nothing to do
        c.set_postgrest_schemas([*schemas, API_SCHEMA, "reports"])
    again = provider.check(outs, {**api, "schema": API_SCHEMA})
    assert provider.diff(created.id, outs, again.inputs).changes is False
    # removed outside Pulumi: the next preview shows an update, `up` adds it back
    with client(api) as c:
        c.set_postgrest_schemas([*schemas, "reports"])
    drifted = provider.check(outs, {**api, "schema": API_SCHEMA})
    assert provider.diff(created.id, outs, drifted.inputs).changes is True
    outs = provider.update(created.id, outs, drifted.inputs).outs or {}
    with client(api) as c:
        assert c.postgrest_schemas() == [*schemas, "reports", API_SCHEMA]
    provider.delete(created.id, outs)
    with client(api) as c:
        assert c.postgrest_schemas() == [*schemas, "reports"]


def test_a_schema_exposed_before_is_left_exposed(api: dict[str, str], schemas: list[str]) -> None:
    with client(api) as c:
        c.set_postgrest_schemas([*schemas, API_SCHEMA])
    provider = DataApiSchemaProvider()
    checked = provider.check({}, {**api, "schema": API_SCHEMA})
    outs = provider.create(checked.inputs).outs or {}
    assert outs["added"] is False
    provider.delete("x", outs)
    with client(api) as c:
        assert c.postgrest_schemas() == [*schemas, API_SCHEMA]


def test_check_refuses_missing_values(api: dict[str, str]) -> None:
    failures = DataApiSchemaProvider().check({}, {**api, "schema": ""}).failures
    assert [f.property for f in failures] == ["schema"]
