"""An Edge Function secret (`SUPAQUEUE_SECRET`), set through the Management API.

The API lists secrets with digests, not values, so drift is seen by comparing the listed digest
with the one recorded when Pulumi last set the value.
"""

from __future__ import annotations

import re
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

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch: `$` would allow a final \n
MAX_VALUE_LENGTH = 24_576


def _set(props: dict[str, Any]) -> str | None:
    """Set the secret; returns the digest the API now lists for it."""
    with api_client(props) as api:
        api.create_secrets([(props["name"], props["value"])])
        return _listed_digest(api.list_secrets(), props["name"])


def _listed_digest(secrets: list[dict[str, Any]], name: str) -> str | None:
    for secret in secrets:
        if secret.get("name") == name:
            return str(secret.get("value"))
    return None


class FunctionSecretProvider(ResourceProvider):
    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = check_api_props(news)
        unknown = unknown_keys(news)
        name = news.get("name")
        if "name" not in unknown:
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                failures.append(CheckFailure("name", f"{name!r} is not an environment name"))
            elif name.upper().startswith("SUPABASE_"):
                failures.append(CheckFailure("name", "names starting with SUPABASE_ are reserved"))
        value = news.get("value")
        if "value" not in unknown and (
            not isinstance(value, str) or not value or len(value) > MAX_VALUE_LENGTH
        ):
            failures.append(
                CheckFailure("value", f"must be a non-empty string of at most {MAX_VALUE_LENGTH}")
            )
        inputs = {key: news.get(key) for key in (*API_KEYS, "name", "value")}
        return CheckResult(inputs, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return explicit_diff(
            olds,
            news,
            updatable=("value", *API_UPDATABLE),
            identity=("name", "project_ref"),
        )

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(props["name"], {**props, "digest": _set(props)})

    @presented
    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if news["value"] == olds.get("value"):
            return UpdateResult({**news, "digest": olds.get("digest")})
        return UpdateResult({**news, "digest": _set(news)})

    @presented
    def read(self, name: str, props: dict[str, Any]) -> ReadResult:
        with api_client(props) as api:
            digest = _listed_digest(api.list_secrets(), name)
        if digest is None:
            return ReadResult("", {})
        outs = {**props, "digest": digest}
        if props.get("digest") is not None and digest != props["digest"]:
            # Set behind Pulumi's back: the value is unknown, so the next `up` sets it again.
            outs["value"] = ""
        return ReadResult(name, outs)

    @presented
    def delete(self, name: str, props: dict[str, Any]) -> None:
        with api_client(props) as api:
            api.delete_secrets([name])


class FunctionSecret(SupaqueueResource, kind="FunctionSecret"):
    """A project-wide Edge Function secret (an environment variable of every function)."""

    digest: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        api: ApiTarget,
        secret_name: str,
        value: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            **api.props(),
            "name": secret_name,
            "value": value,
            "digest": None,
        }
        super().__init__(
            name,
            props,
            with_secret_outputs(opts, [*API_SECRET_OUTPUTS, "value"]),
        )
