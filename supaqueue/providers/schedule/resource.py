"""`Schedule`: jobs on a cron schedule, one resource (`supaqueue:index:Schedule`).

    nightly = Schedule("nightly-report", {"name": "nightly-report", "cron": "0 3 * * *",
                                          "queue": reports, "payload": {"kind": "daily"},
                                          "timezone": "Europe/Paris"}, installation=sq)

`supaqueue.tick()` (every second) enqueues one job per due slot, with a dedup key per slot;
after downtime only the latest missed slot. No pg_cron job per schedule. Stack config
`supaqueue:schedules` declares the same objects with the queue's name; `Supaqueue` turns each
into a Schedule named `<installation>-schedule-<name>`.
"""

from __future__ import annotations

from typing import Any, Protocol, Required, TypedDict

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
from supaqueue.providers.schedule.provider import SECRET_OUTPUTS
from supaqueue.providers.schedule.spec import (
    DEFAULT_TIMEZONE,
    payload_problem,
    validate_schedule,
)


class ScheduleArgs(TypedDict, total=False):
    """A schedule. `payload` and `timezone` are optional."""

    name: Required[pulumi.Input[str]]
    """Schedule name, unique in the project (letters, digits, '-', '_'; at most 40)."""
    cron: Required[pulumi.Input[str]]
    """pg_cron syntax: 'minute hour day-of-month month day-of-week', or '<n> seconds' (1-59)."""
    queue: Queue
    """The queue the jobs go to (a declared `Queue`)."""
    queue_id: pulumi.Input[str]
    """Instead of `queue`: the queue's id (as the code `pulumi import` prints has it)."""
    payload: pulumi.Input[dict[str, Any]]
    """The JSON object every job carries (default {})."""
    timezone: pulumi.Input[str]
    """IANA time zone the cron fields are read in (default UTC)."""


class ScheduleInstallation(Installation, Protocol):
    """A supaqueue installation, and where its migrations are (the evaluator's, for preview)."""

    @property
    def migrations_dir(self) -> str: ...


class Schedule(SupaqueueResource, kind="Schedule"):
    """One schedule → jobs of one queue (supaqueue/providers/schedule.py)."""

    schedule_id: pulumi.Output[str]
    """The schedule's id (`supaqueue.schedule.id`)."""
    next_run_at: pulumi.Output[str]
    """The next slot (UTC, ISO 8601), as of the last `up` or `refresh`."""
    next_runs: pulumi.Output[list[str]]
    """The next few slots (UTC, ISO 8601), as of the last preview, `up` or `refresh`."""

    def __init__(
        self,
        resource_name: str,
        args: ScheduleArgs | None = None,
        *,
        installation: ScheduleInstallation | None = None,
        opts: pulumi.ResourceOptions | None = None,
        **fields: Any,
    ) -> None:
        args = keyword_args("schedule", resource_name, args, fields)
        installation = installation_of("schedule", resource_name, installation, opts)
        problems = schedule_problems(resource_name, args)
        if problems:
            raise ConfigError("invalid schedule:\n  - " + "\n  - ".join(map(str, problems)))
        queue = args.get("queue")
        props: dict[str, Any] = {
            "name": args["name"],
            "cron": args["cron"],
            "timezone": args.get("timezone") or DEFAULT_TIMEZONE,
            "payload": normalized(args.get("payload") or {}, dict, payload_problem),
            "queue_id": queue.queue_id if isinstance(queue, Queue) else args.get("queue_id"),
            "db_url": installation.db_url,
            "migrations_dir": installation.migrations_dir,
        }
        queues = [queue] if isinstance(queue, Queue) else []
        own = pulumi.ResourceOptions(depends_on=[*queues, *installation.queue_dependencies])
        super().__init__(
            resource_name,
            declared_outputs(props, ["schedule_id", "next_run_at", "next_runs"]),
            with_secret_outputs(pulumi.ResourceOptions.merge(opts, own), SECRET_OUTPUTS),
        )


def schedule_problems(name: str, args: ScheduleArgs) -> list[Problem]:
    """What is wrong with the arguments of the schedule resource `name` (without a database)."""
    plain = {key: value for key, value in args.items() if key not in ("queue", "queue_id")}
    problems = validate_schedule(
        plain, path=f"schedule {name!r}", unknown=output_keys(args), queue_known=False
    )
    if not isinstance(args.get("queue"), Queue) and args.get("queue_id") is None:
        problems.append(
            Problem(
                f"schedule {name!r}.queue",
                "must be a declared Queue resource (or queue_id: the queue's id)",
            )
        )
    return problems
