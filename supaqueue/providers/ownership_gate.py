"""The ownership gate: the first resource of an installation that talks to the project, so its
`check` refuses another stack's installation before anything changes (preview and `up` stop at
it: the function secret, the function, the schema and everything after depend on it).

It writes nothing. An installation from before ownership records (no owner row) passes only for
the stack that made it, recognised by its generated secret: the Vault entry `supaqueue_secret`
holds that stack's secret (a new stack's is a fresh random value). The schema's update then
records the owner. See providers/ownership.py for the rules.
"""

from __future__ import annotations

import hmac
from typing import Any

import psycopg
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
from supaqueue.errors import DatabaseError, OwnershipError
from supaqueue.providers import ownership
from supaqueue.providers.base import (
    explicit_diff,
    is_unknown,
    presented,
    unknown_keys,
    with_secret_outputs,
)
from supaqueue.providers.custom import SupaqueueResource
from supaqueue.sql_files import queries

RESOURCE_ID = "supaqueue-ownership-gate"
KEYS = ("db_url", "owner", "secret", "vault_secret_name")


def _holds_the_secret(conn: psycopg.Connection, props: dict[str, Any]) -> bool:
    """This stack wrote the installation's Vault secret (so it installed it, before ownership)."""
    secret = props.get("secret")
    if not isinstance(secret, str) or not secret or is_unknown(secret):
        return False
    text = queries("ownership.sql")
    if not conn.execute(text["vault_exists"]).fetchone() == (True,):
        return False
    row = conn.execute(text["vault_secret"], {"name": props["vault_secret_name"]}).fetchone()
    return row is not None and hmac.compare_digest(str(row[0]).encode(), secret.encode())


def problem(props: dict[str, Any]) -> str | None:
    """Why this stack may not touch the installation (None: it may)."""
    me = ownership.stack_of(props)
    if me is None:
        return "internal: no owner input"
    with connect(props["db_url"]) as conn:
        found = ownership.recorded(conn)
        legacy_owner = found.installed and found.owner is None and _holds_the_secret(conn, props)
        return ownership.install_problem(conn, me, in_state=legacy_owner, vanished_ok=True)


class OwnershipGateProvider(ResourceProvider):
    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        unknown = unknown_keys(news)
        if "db_url" not in unknown and (why := check_url(news.get("db_url"))):
            failures.append(CheckFailure("db_url", f"the database URL {why}"))
        elif not {"db_url", "owner"} & unknown:
            try:
                if found := problem(news):
                    failures.append(CheckFailure("owner", found))
            except (DatabaseError, psycopg.Error):
                pass  # the resources behind it report an unreachable database themselves
        return CheckResult({key: news.get(key) for key in KEYS}, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return explicit_diff(olds, news, updatable=KEYS)

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        if found := problem(props):
            raise OwnershipError(found)
        return CreateResult(RESOURCE_ID, dict(props))

    @presented
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if found := problem(news):
            raise OwnershipError(found)
        return UpdateResult(dict(news))

    @presented
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, dict(props))

    @presented
    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class OwnershipGate(SupaqueueResource, kind="OwnershipGate"):
    """Refuses, at preview and `up`, an installation this stack does not own."""

    def __init__(
        self,
        name: str,
        *,
        db_url: pulumi.Input[str],
        owner: pulumi.Input[dict[str, Any]],
        secret: pulumi.Input[str],
        vault_secret_name: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "db_url": db_url,
            "owner": owner,
            "secret": secret,
            "vault_secret_name": vault_secret_name,
        }
        super().__init__(name, props, with_secret_outputs(opts, ["db_url", "secret"]))
