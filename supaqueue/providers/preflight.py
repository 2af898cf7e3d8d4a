"""The preflight: the first resource of an `up` (after the stack id), so its `check` can refuse
the whole plan before anything changes, and say what the plan does to live work.

Every other resource of the installation depends on it, so its `check` runs before any of them
is created, updated or deleted (Pulumi deletes removed resources only after the program's
creates and updates), at `pulumi preview` and at `pulumi up` alike. It writes nothing and its
`diff` always answers "no change": its inputs (what the stack declares) are still recorded at
each `up`, as Pulumi keeps the new inputs of an unchanged resource, and they are what the next
`check` compares with (providers/plan.py). So adding a queue stays exactly one create.

Its `check` fails, naming every blocker and what to do, when the plan would stop half-way:
a queue being removed that holds unfinished jobs (and does not declare
`discard_unfinished_on_delete`), that another stack owns, or that a trigger or schedule of no
queue of this stack feeds. What the plan does to live work (jobs discarded, calls in flight
after a cut in workers, jobs a lower `max_attempts` ends, a pause) and queues whose Edge Function
is not deployed are shown as warnings (providers/diagnostics.py).
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

from supaqueue.clients.management_api import ManagementApi
from supaqueue.clients.postgres import check_url, connect
from supaqueue.errors import SupaqueueError
from supaqueue.providers import diagnostics, ownership, plan
from supaqueue.providers.api_props import API_KEYS
from supaqueue.providers.base import is_unknown, presented, unknown_keys, with_secret_outputs
from supaqueue.providers.custom import SupaqueueResource

RESOURCE_ID = "supaqueue-preflight"
KEYS = ("db_url", "owner", "queues", "triggers", "schedules", "functions", *API_KEYS)
PLAN = ""  # what a refusal is reported against: the resource, no single input
# Kept between `up`s: removals planned but not seen done (providers/plan.py).
REMOVING = "removing"
# A preflight read of the function list: one retry at most (the deploys retry more).
FUNCTION_LIST_ATTEMPTS = 2


class PreflightProvider(ResourceProvider):
    @presented
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = {key: news.get(key) for key in KEYS if key in news}
        unknown = unknown_keys(news)
        failures: list[CheckFailure] = []
        if "db_url" not in unknown and (why := check_url(news.get("db_url"))):
            return CheckResult(inputs, [CheckFailure("db_url", f"the database URL {why}")])
        effects = function_warnings(news)
        me = ownership.stack_of(news)
        if "db_url" not in unknown and me is not None and me.stack_id is not None:
            try:
                with connect(str(news["db_url"])) as conn:
                    found = plan.up_plan(conn, me, olds, news)
                    inputs[REMOVING] = _still_removing(conn, me, olds, news)
            except (SupaqueueError, psycopg.Error):
                found = plan.Plan()  # unreachable: the resources behind it say so themselves
            effects = found.effects + effects
            if found.blockers:
                # No property: the engine then prints the reason alone (with one, also that
                # property's whole value).
                failures.append(CheckFailure(PLAN, refusal(found.blockers)))
        for message in warnings(effects):
            diagnostics.warn(message)
        return CheckResult(inputs, failures)

    @presented
    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        # Never an update: the engine keeps the new inputs of an unchanged resource anyway.
        return DiffResult(changes=False, replaces=[], stables=[], delete_before_replace=False)

    @presented
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(RESOURCE_ID, {})

    @presented
    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({})

    @presented
    def read(self, id_: str, _props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, {})

    @presented
    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


def refusal(blockers: list[str]) -> str:
    """The one message of a refused plan: nothing was changed, then every blocker."""
    listed = "".join(f"\n  - {blocker}" for blocker in blockers)
    return (
        "this `pulumi up` would stop half-way, so nothing was changed (no queue, trigger, "
        f"schedule or other resource):{listed}"
    )


def _still_removing(
    conn: psycopg.Connection, me: ownership.Stack, olds: dict[str, Any], news: dict[str, Any]
) -> dict[str, Any]:
    """The queues this plan removes that are still in the database: the next `check` looks at
    them again, should this `up` stop before their delete."""
    removed = plan.removed_queues(olds, news)
    if not removed or not plan.installed(conn):
        return {}
    present = plan.present(conn, removed, me)
    return {name: {plan.DISCARD: plan.discards(olds, name)} for name in removed if name in present}


def warnings(effects: list[str]) -> list[str]:
    """The preflight's warnings as it sends them (the engine prints `warning: ` before each;
    the README shows them)."""
    return [f"supaqueue: {effect}" for effect in effects]


def function_warnings(news: dict[str, Any]) -> list[str]:
    """A warning per queue whose Edge Function is not deployed (every job of it would fail
    with HTTP 404); nothing when the Management API is not known here or does not answer."""
    queues = news.get("queues")
    values = [news.get(key) for key in API_KEYS]
    if not isinstance(queues, dict) or not all(
        isinstance(value, str) and value and not is_unknown(value) for value in values
    ):
        return []
    ours = set(news.get("functions") or [])
    wanted = {
        name: spec.get("edge_function_name")
        for name, spec in queues.items()
        if isinstance(spec, dict) and isinstance(spec.get("edge_function_name"), str)
    }
    if not set(wanted.values()) - ours:
        return []
    url, ref, token = (str(value) for value in values)
    try:
        with ManagementApi(url, token, ref, max_attempts=FUNCTION_LIST_ATTEMPTS) as api:
            deployed = {function.get("slug") for function in api.list_functions()}
    except SupaqueueError as exc:
        return [f"could not check that the queues' Edge Functions are deployed: {exc}"]
    return [
        f"queue {name!r} calls the Edge Function {slug!r}, which is not deployed in project "
        f"{ref}: every job of it will fail (HTTP 404) until it is. Deploy it, or correct "
        "`edge_function_name`"
        for name, slug in sorted(wanted.items())
        if slug not in deployed and slug not in ours
    ]


class Preflight(SupaqueueResource, kind="Preflight"):
    """Refuses at preview and `up`, before any change, a plan that would stop half-way."""

    def __init__(
        self,
        name: str,
        *,
        db_url: pulumi.Input[str],
        owner: pulumi.Input[dict[str, Any]],
        queues: dict[str, dict[str, Any]],
        triggers: dict[str, str],
        schedules: dict[str, str],
        functions: list[str],
        api: dict[str, pulumi.Input[str]] | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "db_url": db_url,
            "owner": owner,
            "queues": queues,
            "triggers": triggers,
            "schedules": schedules,
            "functions": functions,
            **(api or {}),
        }
        secret = ["db_url", "access_token"]
        super().__init__(name, props, with_secret_outputs(opts, secret))
