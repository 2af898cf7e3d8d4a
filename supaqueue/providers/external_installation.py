"""An installation another stack owns, used by a stack that declares only its queues there
(`supaqueue:installation: external`).

It never touches the schema, the Vault entry, the function secret or the function. Its check
refuses when supaqueue is not installed, or when this very stack owns it (switching the owner to
`external` would make `up` uninstall it). Delete removes nothing.
"""

from __future__ import annotations

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
    declared_outputs,
    explicit_diff,
    presented,
    unknown_keys,
    with_secret_outputs,
)
from supaqueue.providers.custom import SupaqueueResource
from supaqueue.sql_files import queries

RESOURCE_ID = "supaqueue-external"


def _problem(props: dict[str, Any]) -> str | None:
    me = ownership.stack_of(props)
    if me is None:
        return "internal: no owner input"
    with connect(props["db_url"]) as conn:
        return ownership.external_problem(conn, me)


def _outs(props: dict[str, Any]) -> dict[str, Any]:
    with connect(props["db_url"]) as conn:
        row = conn.execute(queries("ownership.sql")["schema_version"]).fetchone()
    return {**props, "schema_version": int(row[0]) if row and row[0] is not None else 0}


class ExternalInstallationProvider(ResourceProvider):
    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        unknown = unknown_keys(news)
        db_url = news.get("db_url")
        owner = news.get("owner")
        if "db_url" not in unknown and (why := check_url(db_url)):
            failures.append(CheckFailure("db_url", f"the database URL {why}"))
        elif not {"db_url", "owner"} & unknown:
            try:
                if problem := _problem({"db_url": db_url, "owner": owner}):
                    failures.append(CheckFailure("installation", problem))
            except (DatabaseError, psycopg.Error):
                pass  # create/update report an unreachable database with its own message
        return CheckResult({"db_url": db_url, "owner": owner}, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return explicit_diff(olds, news, updatable=("db_url", "owner"))

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        if problem := _problem(props):
            raise OwnershipError(problem)
        return CreateResult(RESOURCE_ID, _outs(props))

    @presented
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if problem := _problem(news):
            raise OwnershipError(problem)
        return UpdateResult(_outs(news))

    @presented
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, dict(props))

    @presented
    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # the installation is its owner's


class ExternalInstallation(SupaqueueResource, kind="ExternalInstallation"):
    """supaqueue as installed by another stack; this stack only declares queues in it."""

    schema_version: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        *,
        db_url: pulumi.Input[str],
        owner: pulumi.Input[dict[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"db_url": db_url, "owner": owner}
        super().__init__(
            name,
            declared_outputs(props, ["schema_version"]),
            with_secret_outputs(opts, ["db_url"]),
        )
