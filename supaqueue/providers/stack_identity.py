"""The stack id: a random value made once per stack state, recorded as the owner of what the
stack installs (providers/ownership.py), so that two checkouts both named `dev` differ.

It is its own resource, the first of the installation, so that it survives what happens to the
others: a failed first `up` (the schema's create failed after claiming the installation: the
retry must still be the owner) and a `refresh` that forgot a vanished schema. It changes nothing
outside the state; a new stack name updates it in place, keeping the id.
"""

from __future__ import annotations

import uuid
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

from supaqueue.providers.base import declared_outputs, explicit_diff, presented
from supaqueue.providers.custom import SupaqueueResource


class StackIdentityProvider(ResourceProvider):
    @presented
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        stack = news.get("stack")
        failures = []
        if not isinstance(stack, str) or "/" not in stack:
            failures.append(CheckFailure("stack", f"must be '<project>/<stack>', got {stack!r}"))
        # Made here, once: the state keeps the checked inputs, and later checks get them as olds.
        stack_id = olds.get("stack_id") or uuid.uuid4().hex
        return CheckResult({"stack": stack, "stack_id": stack_id}, failures)

    @presented
    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return explicit_diff(olds, news, updatable=("stack", "stack_id"))

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(str(props["stack_id"]), dict(props))

    @presented
    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(dict(news))

    @presented
    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, dict(props))

    @presented
    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class StackIdentity(SupaqueueResource, kind="StackIdentity"):
    """`owner`: `{"stack": "<project>/<stack>", "stack_id": ...}`, what the database records."""

    stack_id: pulumi.Output[str]
    owner: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, stack: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, declared_outputs({"stack": stack}, ["stack_id"]), opts)
        self.owner = pulumi.Output.all(stack, self.stack_id).apply(
            lambda values: {"stack": values[0], "stack_id": values[1]}
        )
