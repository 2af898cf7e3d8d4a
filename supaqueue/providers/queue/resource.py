"""`Queue`: one supaqueue queue as code, one resource (`supaqueue:index:Queue`).

    emails = Queue("emails", {"name": "emails", "edge_function_name": "send-email",
                              "workers": 5, "rate_limit_per_second": 10}, installation=sq)

Stack config `supaqueue:queues` declares the same objects; `Supaqueue` turns each into a Queue
named `<installation>-queue-<name>`. A queue is the resource itself (no wrapping
component), so adding one queue to a stack is exactly one create.
"""

from __future__ import annotations

from typing import Any, Protocol, Required, TypedDict

import pulumi

from supaqueue.errors import ConfigError
from supaqueue.providers.base import declared_outputs, with_secret_outputs
from supaqueue.providers.custom import SupaqueueResource
from supaqueue.providers.queue.provider import SECRET_OUTPUTS
from supaqueue.providers.queue.spec import queue_problems, with_defaults


class QueueArgs(TypedDict, total=False):
    """A queue's settings. Only `name` and `edge_function_name` are required.

    The one description of each setting (the stack config's `supaqueue:queues` objects take the
    same keys); defaults and limits are checked against `spec.py` by tests/unit/test_queue_spec.py.
    """

    name: Required[str]
    """Queue name, unique in the project (letters, digits, '-', '_'; starts with a letter; at most
    63 characters). Renaming replaces the queue."""
    edge_function_name: Required[str]
    """Slug of the Edge Function each job calls (a slug, not a URL; the same rule as `name`)."""
    method: str
    """HTTP method: GET, POST (default), PUT, PATCH or DELETE."""
    headers: pulumi.Input[dict[str, str]]
    """Extra request headers, e.g. Authorization. Kept secret in state."""
    workers: int
    """At most this many calls in flight (default 1, at most 1000)."""
    max_attempts: int
    """Attempts before a job fails for good (default 3, at most 100)."""
    backoff_base_ms: int
    """First retry delay in ms (default 1000); doubles per attempt."""
    backoff_max_ms: int
    """Longest retry delay in ms (default 300000)."""
    backoff_jitter: float
    """Random share of each delay, 0..1 (default 0.1)."""
    non_retryable_statuses: list[int]
    """Statuses that fail a job at once (default: 4xx other than 408 and 429)."""
    rate_limit_per_second: float
    """Calls started per second at most (default: no limit; at most 2147483647)."""
    rate_limit_burst: int
    """Calls allowed at once above the rate (default: the rate)."""
    key_from: str
    """Where a job's key is in its payload, e.g. `$.tenant_id` (`$` then 1 to 8 dotted field
    names; default: none). Jobs enqueued without a key get the value there (a string as it is,
    another JSON value as JSON text; none when missing or null), table-trigger and schedule jobs
    too; a key given at enqueue wins. Keys share the queue fairly (round-robin) and may be limited
    one by one (`workers_per_key`, `rate_limit_per_key`)."""
    workers_per_key: int
    """At most this many calls in flight per key (1..1000; default: no limit per key), within
    `workers`. Jobs without a key have no per-key limit."""
    rate_limit_per_key: float
    """Calls started per second at most per key (default: no limit per key), within
    `rate_limit_per_second`."""
    rate_limit_burst_per_key: int
    """Calls one key may start at once above its rate (default: `rate_limit_per_key`)."""
    timeout_ms: int
    """Timeout of one call in ms (default 30000, at most 390000: the dispatcher's own wall clock
    is 400 s on paid plans, 150 s on Free, and it must still report the outcome)."""
    lease_grace_ms: int
    """How long a call's lease lasts beyond `timeout_ms`, in ms (default 30000): time for
    pg_net's delivery and the dispatcher's report. A dispatch lost with the dispatcher holds its
    worker for timeout + grace before the job is retried (and, if it was claimed, for
    `target_wall_clock_ms` more, as its call may still be running). Shorter stalls less, but a
    grace below the worst delay of a report means an attempt that did succeed is failed as
    expired and run again (a duplicate)."""
    target_wall_clock_ms: int
    """How long the target function may run, in ms (default 400000, Supabase's wall clock on
    paid plans; 150000 on Free; 1000..3600000): a call abandoned at `timeout_ms` keeps its worker
    until then, so at most `workers` calls ever run at the target."""
    paused: bool
    """A paused queue keeps its jobs and dispatches none (default false)."""
    retention_seconds: int | None
    """Finished jobs are deleted this many seconds after they finished (default 604800, 7 days;
    0: at the next tick; `None` / `null`: kept for ever, as `keep_finished_forever`). A job
    another job still waits for is kept."""
    keep_finished_forever: bool
    """Never delete finished jobs (default false; leave `retention_seconds` unset): the way to
    say it in every language (Pulumi drops a null input, so there an unset and a null
    `retention_seconds` both mean the default)."""
    dead_letter_queue: str
    """Name of another queue of the stack: a job that fails for good enqueues one job there
    (`{"job_id", "queue", "error", "response_excerpt", "status_code", "attempts", "failed_at",
    "payload"}`), in the failure's transaction. No loops (a queue naming itself, or a chain
    back)."""
    payload_schema: dict[str, Any]
    """JSON Schema of the queue's payloads (default: none). Checked at preview to be a valid
    schema (draft 2020-12 unless `$schema` names 2019-09 or draft-07), at most 65536 bytes of
    JSON; stored in `supaqueue.queue.payload_schema`. `supaqueue gen types` writes typed enqueue
    clients from it, and the called function validates with it (a bad payload answers 422, not
    retried). The engine itself does not validate payloads at enqueue."""
    discard_unfinished_on_delete: bool
    """Removing the queue may discard its unfinished jobs (default false: removal fails)."""
    batch_size: int
    """Jobs per call to the target (default 1; 1..100; POST, PUT or PATCH only): the target
    receives a JSON array of `{id, attempt, payload}` and answers one outcome per job; a batch of
    N takes N workers and N rate tokens. See "Batch delivery" in the README."""
    batch_max_wait_ms: int
    """How long ready jobs may wait for a fuller batch, in ms (default 0: send what is ready;
    at most 300000). Rounded up to the tick (every second)."""
    enqueue_roles: list[str]
    """API roles besides `service_role` that may enqueue into the queue (and read its jobs'
    status) through the Data API schema `supaqueue_api`: `authenticated` (signed-in users)
    and/or `anon`; default none."""
    hold_on_retry_after: str
    """What an answer 429 or 503 with `Retry-After` holds until then: `job` (default) only that
    job's retry, as before; `key` every job of the job's key (the queue for a job without a
    key); `queue` every job of the queue. No call of what is held starts, calls running go on;
    the hold ends by itself, at most after an hour, and shows in `supaqueue status`."""


class Installation(Protocol):
    """What a queue needs from a supaqueue installation (a `Supaqueue` component)."""

    @property
    def db_url(self) -> pulumi.Input[str]: ...

    @property
    def queue_dependencies(self) -> list[pulumi.Resource]: ...

    @property
    def owner(self) -> pulumi.Input[dict[str, str]]:
        """The stack declaring the queue (`{"stack", "stack_id"}`), recorded as its owner."""
        ...


# Until this version a queue was a `supaqueue:index:Queue` component named `<name>` holding this
# resource as `<name>-queue`; the alias lets existing stacks keep their queues (no replace).
LEGACY_COMPONENT_TYPE = "supaqueue:index:Queue"
TYPE = "pulumi-python:dynamic/supaqueue:Queue"


def keyword_args(what: str, name: str, args: Any, fields: dict[str, Any]) -> Any:
    """The declaration: `args`, or the keywords of the form `pulumi import` prints
    (`supaqueue.Queue("q", name="q", edge_function_name="f", opts=...)`), never both."""
    if args is not None and fields:
        raise ConfigError(
            f"{what} {name!r}: give its settings as one dict or as keywords, not both "
            f"(keywords: {', '.join(sorted(fields))})"
        )
    return dict(fields) if args is None else args


def installation_of(
    what: str, name: str, installation: Any, opts: pulumi.ResourceOptions | None
) -> Any:
    """`installation`, else the `Supaqueue` component that is the resource's parent (as in the
    code `pulumi import --parent` prints)."""
    if installation is not None:
        return installation
    parent = opts.parent if opts else None
    if all(hasattr(parent, attr) for attr in ("db_url", "owner", "queue_dependencies")):
        return parent
    raise ConfigError(
        f"{what} {name!r}: no installation: pass installation=<the Supaqueue component>, or make "
        "that component its parent (opts=pulumi.ResourceOptions(parent=...))"
    )


class Queue(SupaqueueResource, kind="Queue"):
    """One queue: its `supaqueue.queue` row and its workers (provider.py, beside this file).

    Declared as `Queue(resource_name, {settings}, installation=sq)` or, as `pulumi import`
    prints it, `Queue(resource_name, name=..., edge_function_name=..., opts=...(parent=sq))`."""

    queue_id: pulumi.Output[str]
    """The queue's id (`supaqueue.queue.id`), for `INSERT INTO supaqueue.job (queue, …)`."""

    def __init__(
        self,
        resource_name: str,
        args: QueueArgs | None = None,
        *,
        installation: Installation | None = None,
        opts: pulumi.ResourceOptions | None = None,
        **fields: Any,
    ) -> None:
        args = keyword_args("queue", resource_name, args, fields)
        installation = installation_of("queue", resource_name, installation, opts)
        problems = queue_problems(args, f"queue {resource_name!r}")
        if problems:
            raise ConfigError("invalid queue:\n  - " + "\n  - ".join(map(str, problems)))
        plain = {key: value for key, value in args.items() if not _is_output(value)}
        # Defaults for what was not given; a setting given as an output stays that output (its
        # value is judged by the provider's check once the engine knows it).
        props: dict[str, Any] = {
            **with_defaults(plain),
            **{key: value for key, value in args.items() if _is_output(value)},
        }
        # Headers often carry credentials: secret in state whatever the caller passed.
        props["headers"] = pulumi.Output.secret(args.get("headers") or {})
        props["db_url"] = installation.db_url
        props["owner"] = installation.owner
        own = pulumi.ResourceOptions(
            depends_on=installation.queue_dependencies,
            aliases=[legacy_urn(resource_name, opts.parent if opts else None)],
        )
        super().__init__(
            resource_name,
            declared_outputs(props, ["queue_id"]),
            with_secret_outputs(pulumi.ResourceOptions.merge(opts, own), SECRET_OUTPUTS),
        )


def legacy_urn(name: str, parent: pulumi.Resource | str | None) -> pulumi.Output[str]:
    """The URN this queue had as `<name>-queue` inside a `supaqueue:index:Queue` component."""
    component = pulumi.create_urn(name, LEGACY_COMPONENT_TYPE, parent=parent)
    return pulumi.create_urn(f"{name}-queue", TYPE, parent=component)


def _is_output(value: Any) -> bool:
    return isinstance(value, pulumi.Output)


def normalized(value: Any, normalize: Any, problem: Any) -> Any:
    """`normalize(value)`, applied to an output's value once known; a value with a problem is
    left as it is, so that the provider's check names it as given."""
    if _is_output(value):
        return value.apply(lambda known: known if problem(known) else normalize(known))
    return normalize(value)
