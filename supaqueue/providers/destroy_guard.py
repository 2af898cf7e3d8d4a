"""The destroy guard: the first thing a destroy of the owning stack deletes, and the only thing
it deletes while removing supaqueue would take what others own with it.

It depends on every other resource of the installation (schema, settings, Vault entry, function
secret, functions, queues, triggers, schedules), so Pulumi deletes it before any of them. Its
delete checks what any later delete would refuse: the schema's (providers/ownership.py: another
stack owns the installation, other stacks' queues in it, objects outside the schema depending on
it, as `supaqueue.uninstall()` finds them) and the queues' (providers/plan.py: unfinished jobs in
a queue that does not declare `discard_unfinished_on_delete`, whose flag the database records
since sql/0022; and jobs in queues no stack owns, which the schema's removal would take). It
fails naming them all, so a refused destroy changes nothing at all instead of stopping half-way.
It writes nothing itself.
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
from supaqueue.providers import ownership, plan
from supaqueue.providers.base import explicit_diff, presented, unknown_keys, with_secret_outputs
from supaqueue.providers.custom import SupaqueueResource

RESOURCE_ID = "supaqueue-destroy-guard"


class DestroyGuardProvider(ResourceProvider):
    @presented
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if "db_url" not in unknown_keys(news) and (why := check_url(news.get("db_url"))):
            failures.append(CheckFailure("db_url", f"the database URL {why}"))
        inputs = {key: news.get(key) for key in ("db_url", "owner", "drop_dependents")}
        return CheckResult(inputs, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return explicit_diff(olds, news, updatable=("db_url", "owner", "drop_dependents"))

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(RESOURCE_ID, dict(props))

    @presented
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(dict(news))

    @presented
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, dict(props))

    @presented
    def delete(self, _id: str, props: dict[str, Any]) -> None:
        me = ownership.stack_of(props)
        with connect(props["db_url"]) as conn:
            problems = ownership.destroy_problems(
                conn, me, drop_dependents=bool(props.get("drop_dependents"))
            )
            # What the queues' deletes would refuse (or lose unasked), before the first of them.
            problems += plan.destroy_queue_problems(conn, me)
        ownership.refuse_destroy(problems)


class DestroyGuard(SupaqueueResource, kind="DestroyGuard"):
    """Stops a destroy of the installation before its first delete (see the module doc)."""

    def __init__(
        self,
        name: str,
        *,
        db_url: pulumi.Input[str],
        owner: pulumi.Input[dict[str, str]],
        drop_dependents: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"db_url": db_url, "owner": owner, "drop_dependents": drop_dependents}
        super().__init__(name, props, with_secret_outputs(opts, ["db_url"]))
