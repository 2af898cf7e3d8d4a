"""The Vault entry `supaqueue_secret` the SQL engine sends as the `supaqueue-secret` header.

Rotation updates the entry in place (vault.update_secret), so its id and name never change and
the dispatcher reads the new value from its next dispatch on.
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

from supaqueue.clients.postgres import check_url, connect
from supaqueue.providers.base import explicit_diff, presented, unknown_keys, with_secret_outputs
from supaqueue.providers.custom import SupaqueueResource
from supaqueue.sql_files import queries

SQL = "vault_secret.sql"
DESCRIPTION = "supaqueue: authenticates dispatches to the supaqueue Edge Function"


def _store(db_url: str, name: str, secret: str) -> str:
    """Create the named secret, or overwrite it in place when it exists; returns its uuid."""
    text = queries(SQL)
    with connect(db_url) as conn, conn.transaction():
        row = conn.execute(text["find_by_name"], {"name": name}).fetchone()
        secret_id = str(row[0]) if row else None
        params = {"id": secret_id, "name": name, "secret": secret, "description": DESCRIPTION}
        if secret_id is None:
            row = conn.execute(text["create_secret"], params).fetchone()
            assert row is not None
            return str(row[0])
        conn.execute(text["update_secret"], params)
        return secret_id


class VaultSecretProvider(ResourceProvider):
    """The resource id is the secret's name (unique in Vault), so a deleted-and-recreated entry
    is still the same resource and an update can always restore it."""

    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        unknown = unknown_keys(news)
        name = news.get("name")
        if "name" not in unknown and (not isinstance(name, str) or not name):
            failures.append(CheckFailure("name", "must be a non-empty string"))
        secret = news.get("secret")
        if "secret" not in unknown and (not isinstance(secret, str) or len(secret) < 16):
            failures.append(CheckFailure("secret", "must be a string of 16 characters or more"))
        if "db_url" not in unknown and (why := check_url(news.get("db_url"))):
            failures.append(CheckFailure("db_url", f"the database URL {why}"))
        inputs = {"db_url": news.get("db_url"), "name": name, "secret": secret}
        return CheckResult(inputs, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return explicit_diff(olds, news, updatable=("secret", "db_url"), identity=("name",))

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        secret_id = _store(props["db_url"], props["name"], props["secret"])
        return CreateResult(props["name"], {**props, "secret_id": secret_id})

    @presented
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        secret_id = _store(news["db_url"], news["name"], news["secret"])
        return UpdateResult({**news, "secret_id": secret_id})

    @presented
    def read(self, name: str, props: dict[str, Any]) -> ReadResult:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            found = conn.execute(text["find_by_name"], {"name": name}).fetchone()
            row = None
            if found:
                row = conn.execute(text["read_secret"], {"id": found[0]}).fetchone()
        if row is None:
            return ReadResult("", {})
        secret_id, _, _description, decrypted = row
        return ReadResult(name, {**props, "secret": decrypted, "secret_id": secret_id})

    @presented
    def delete(self, name: str, props: dict[str, Any]) -> None:
        text = queries(SQL)
        with connect(props["db_url"]) as conn:
            conn.execute(text["delete_by_name"], {"name": name})


class VaultSecret(SupaqueueResource, kind="VaultSecret"):
    """A named Vault secret; `secret` is kept secret in state and outputs."""

    secret_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        db_url: pulumi.Input[str],
        secret_name: str,
        secret: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"db_url": db_url, "name": secret_name, "secret": secret, "secret_id": None}
        super().__init__(name, props, with_secret_outputs(opts, ["db_url", "secret"]))
