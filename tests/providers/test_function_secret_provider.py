"""SUPAQUEUE_SECRET through the Management API stand-in: set, rotate, drift by digest, delete."""

from __future__ import annotations

import hashlib
from typing import Any

from supaqueue.clients.management_api import ManagementApi
from supaqueue.providers.function_secret import FunctionSecretProvider

NAME = "SUPAQUEUE_SECRET_TEST"


def listed(api: dict[str, str]) -> dict[str, str]:
    with ManagementApi(api["management_api_url"], api["access_token"], api["project_ref"]) as c:
        return {s["name"]: s["value"] for s in c.list_secrets()}


def test_function_secret_lifecycle(api: dict[str, str]) -> None:
    provider = FunctionSecretProvider()
    props = provider.check({}, {**api, "name": NAME, "value": "v" * 40})
    assert props.failures == []
    created = provider.create(props.inputs)
    outs: dict[str, Any] = created.outs or {}
    assert created.id == NAME
    assert listed(api)[NAME] == outs["digest"]
    assert outs["digest"] == hashlib.sha256(b"v" * 40).hexdigest()

    rotated = {**props.inputs, "value": "w" * 40}
    diff = provider.diff(NAME, outs, rotated)
    assert diff.changes is True and diff.replaces == []
    outs = provider.update(NAME, outs, rotated).outs or {}
    assert listed(api)[NAME] == hashlib.sha256(b"w" * 40).hexdigest()
    assert provider.diff(NAME, outs, rotated).changes is False

    with ManagementApi(api["management_api_url"], api["access_token"], api["project_ref"]) as c:
        c.create_secrets([(NAME, "set-by-hand")])
    refreshed = provider.read(NAME, outs).outs or {}
    assert refreshed["value"] == ""  # unknown now: the next `up` sets it again
    assert provider.diff(NAME, refreshed, rotated).changes is True

    provider.delete(NAME, outs)
    assert NAME not in listed(api)
    assert provider.read(NAME, outs).id == ""


def test_reserved_and_bad_names_fail_check(api: dict[str, str]) -> None:
    provider = FunctionSecretProvider()
    for name, fragment in (("SUPABASE_X", "reserved"), ("1-bad", "not an environment name")):
        failures = provider.check({}, {**api, "name": name, "value": "v"}).failures
        assert [(f.property, fragment in f.reason) for f in failures] == [("name", True)]
    failures = provider.check({}, {**api, "access_token": "", "name": "A", "value": "v"}).failures
    assert [f.property for f in failures] == ["access_token"]
