"""`Trigger`: table events → jobs, one resource (`supaqueue:index:Trigger`).

    new_orders = Trigger("new-orders", {"name": "new-orders", "table": "public.orders",
                                        "events": ["INSERT", "UPDATE"], "queue": emails,
                                        "when": "NEW.status = 'paid'"}, installation=sq)

Each matching row change enqueues one job into `queue` (a `Queue` resource) in the same
transaction, with the payload of a Supabase Database Webhook: `{"type", "table", "schema",
"record", "old_record"}`. Stack config `supaqueue:triggers` declares the same objects with the
queue's name; `Supaqueue` turns each into a Trigger named `<installation>-trigger-<name>`.
"""

from __future__ import annotations

from typing import Any, Required, TypedDict

import pulumi

from supaqueue.errors import ConfigError
from supaqueue.providers.base import declared_outputs, with_secret_outputs
from supaqueue.providers.custom import SupaqueueResource
from supaqueue.providers.queue.resource import (
    Installation,
    Queue,
    installation_of,
    keyword_args,
    normalized,
)
from supaqueue.providers.queue.spec import Problem, output_keys
from supaqueue.providers.trigger.provider import SECRET_OUTPUTS
from supaqueue.providers.trigger.spec import (
    events_problem,
    normalized_events,
    normalized_when,
    validate_trigger,
    when_problem,
)


class TriggerArgs(TypedDict, total=False):
    """A table trigger. `when` is optional."""

    name: Required[pulumi.Input[str]]
    """Trigger name, unique in the project (letters, digits, '-', '_'; at most 40)."""
    table: Required[pulumi.Input[str]]
    """The table, schema-qualified as it is named in the database: `public.orders`."""
    events: Required[pulumi.Input[list[str]]]
    """Any of INSERT, UPDATE, DELETE."""
    queue: Queue
    """The queue the jobs go to (a declared `Queue`)."""
    queue_id: pulumi.Input[str]
    """Instead of `queue`: the queue's id (as the code `pulumi import` prints has it)."""
    when: pulumi.Input[str]
    """Row condition, an SQL expression over NEW (INSERT, UPDATE) and OLD (UPDATE, DELETE);
    functions outside pg_catalog must be schema-qualified."""


class Trigger(SupaqueueResource, kind="Trigger"):
    """Table events of one table → jobs of one queue (supaqueue/providers/trigger.py)."""

    trigger_id: pulumi.Output[str]
    """The trigger's id (`supaqueue.table_trigger.id`)."""

    def __init__(
        self,
        resource_name: str,
        args: TriggerArgs | None = None,
        *,
        installation: Installation | None = None,
        opts: pulumi.ResourceOptions | None = None,
        **fields: Any,
    ) -> None:
        args = keyword_args("trigger", resource_name, args, fields)
        installation = installation_of("trigger", resource_name, installation, opts)
        problems = trigger_problems(resource_name, args)
        if problems:
            raise ConfigError("invalid trigger:\n  - " + "\n  - ".join(map(str, problems)))
        queue = args.get("queue")
        props: dict[str, Any] = {
            "name": args["name"],
            "table": args["table"],
            "events": normalized(args["events"], normalized_events, events_problem),
            "when": normalized(args.get("when"), normalized_when, _when_problem),
            "queue_id": queue.queue_id if isinstance(queue, Queue) else args.get("queue_id"),
            "db_url": installation.db_url,
        }
        queues = [queue] if isinstance(queue, Queue) else []
        own = pulumi.ResourceOptions(depends_on=[*queues, *installation.queue_dependencies])
        super().__init__(
            resource_name,
            declared_outputs(props, ["trigger_id"]),
            with_secret_outputs(pulumi.ResourceOptions.merge(opts, own), SECRET_OUTPUTS),
        )


def trigger_problems(name: str, args: TriggerArgs) -> list[Problem]:
    """What is wrong with the arguments of the trigger resource `name`."""
    plain = {key: value for key, value in args.items() if key not in ("queue", "queue_id")}
    problems = validate_trigger(
        plain, path=f"trigger {name!r}", unknown=output_keys(args), queue_known=False
    )
    if not isinstance(args.get("queue"), Queue) and args.get("queue_id") is None:
        problems.append(
            Problem(
                f"trigger {name!r}.queue",
                "must be a declared Queue resource (or queue_id: the queue's id)",
            )
        )
    return problems


def _when_problem(value: object) -> str | None:
    """`when` may be left out (None)."""
    return None if value is None else when_problem(value)
