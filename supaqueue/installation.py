"""`Supaqueue`: supaqueue installed into one Supabase project (token `supaqueue:index:Supaqueue`).

Children, in dependency order: the stack id (providers/stack_identity.py); the preflight
(providers/preflight.py), on which every later child depends, so its check refuses a plan that
would stop half-way before anything changes; the generated secret; a Deno type check of the Edge
Function (so a TypeScript error fails `pulumi up` before anything changes); the ownership gate
(providers/ownership_gate.py), on which everything that changes the project depends, so an
installation another stack owns stops preview and `up` before any change; the function secret
`SUPAQUEUE_SECRET`; the `supaqueue` Edge Function (verify_jwt off; deployed before the schema: a
new function runs what an older schema dispatches, not the reverse); the Vault entry
`supaqueue_secret` (before the schema, so a destroy the schema refuses keeps it); the schema
(migrations; it records the owner); the settings rows; the queues `<name>-queue-<queue name>`
(supaqueue/providers/queue/); with `demo`, also the example target function `demo-target`;
last, the destroy guard, which a destroy deletes first (providers/destroy_guard.py).

With `installation: "external"` the component declares only its queues, in an installation
another stack owns (providers/external_installation.py): no secret, schema, settings, Vault
entry or function.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Literal, Required, TypedDict

import pulumi
import pulumi_command as command
import pulumi_random as random

from supaqueue import migrations
from supaqueue.chain_budget import chain_rows
from supaqueue.clients.management_api import DEFAULT_URL as DEFAULT_MANAGEMENT_API_URL
from supaqueue.config import StackConfig
from supaqueue.deno import find_deno
from supaqueue.edge_source import PACKAGED_DISPATCHER, folder_hash
from supaqueue.errors import ConfigError
from supaqueue.providers.api_props import ApiTarget
from supaqueue.providers.data_api import DataApiSchema
from supaqueue.providers.destroy_guard import DestroyGuard
from supaqueue.providers.edge_function import EdgeFunction
from supaqueue.providers.external_installation import ExternalInstallation
from supaqueue.providers.function_secret import FunctionSecret
from supaqueue.providers.migrations import Migrations
from supaqueue.providers.ownership_gate import OwnershipGate
from supaqueue.providers.plan import QUEUE_KEYS
from supaqueue.providers.preflight import Preflight
from supaqueue.providers.queue import Queue, QueueArgs, queue_problems
from supaqueue.providers.queue.spec import with_defaults
from supaqueue.providers.schedule import Schedule, ScheduleArgs
from supaqueue.providers.schedule.spec import validate_schedule
from supaqueue.providers.settings import Settings
from supaqueue.providers.stack_identity import StackIdentity
from supaqueue.providers.trigger import Trigger, TriggerArgs
from supaqueue.providers.trigger.spec import validate_trigger
from supaqueue.providers.vault_secret import VaultSecret

DISPATCHER_SLUG = "supaqueue"
DEMO_SLUG = "demo-target"
VAULT_SECRET_NAME = "supaqueue_secret"
FUNCTION_SECRET_NAME = "SUPAQUEUE_SECRET"
SECRET_LENGTH = 48
INSTALLATION_MODES = ("owner", "external")


# A trigger or schedule as the stack config declares it: its queue by name.
HookByName = dict[str, Any]


class SupaqueueArgs(TypedDict, total=False):
    """Where to install supaqueue and what to declare there."""

    project_ref: Required[pulumi.Input[str]]
    """The project ref (20 lowercase letters)."""
    db_url: Required[pulumi.Input[str]]
    """Postgres connection string of the project's database (kept secret)."""
    access_token: pulumi.Input[str]
    """Management API access token (kept secret); not needed with `installation: "external"`."""
    api_url: Required[str]
    """The project's URL (`https://<ref>.supabase.co`); functions live under /functions/v1."""
    management_api_url: str
    """The Management API (default `https://api.supabase.com`)."""
    secret_version: str
    """Change it to rotate the generated secret (Vault and the function secret, in place)."""
    queues: list[QueueArgs]
    """Queues to declare (see supaqueue.providers.queue.QueueArgs)."""
    triggers: list[HookByName]
    """Table triggers to declare (supaqueue.providers.trigger.TriggerArgs, `queue` a name in
    `queues`)."""
    schedules: list[HookByName]
    """Schedules to declare (supaqueue.providers.schedule.ScheduleArgs, `queue` a name in
    `queues`)."""
    demo: bool
    """Also deploy the example target function `demo-target` (dev stacks)."""
    installation: Literal["owner", "external"]
    """`owner` (default): this stack installs and owns supaqueue in the project. `external`: it
    only declares its queues in an installation another stack owns."""
    drop_dependents_on_destroy: bool
    """Destroy may drop objects outside the schema that depend on it (default false: refuse)."""
    chain_max_jobs: int
    """Chain budget: jobs one dispatcher invocation may run (0-1000; 0 or 1: no chaining).
    Unset: the database keeps its own value (default 50; supaqueue/chain_budget.py)."""
    chain_max_seconds: int
    """Chain budget: seconds a chain may claim jobs for (1-120). Unset: as `chain_max_jobs`
    (default 60)."""
    data_api: bool
    """Expose supaqueue's API schema `supaqueue_api` (enqueue, enqueue_batch, get_job) to the
    project's Data API, keeping the schemas it already exposes (default false)."""
    edge_dir: str
    """Folder holding `demo-target/`, the demo's target function (needed only with `demo`)."""
    dispatcher_dir: str
    """Source folder of the `supaqueue` Edge Function; default: the one shipped in this package."""
    migrations_dir: str
    """Folder of the numbered migrations; default: the ones shipped in this package."""


def args_from_config(config: StackConfig) -> SupaqueueArgs:
    """Component arguments from a validated stack config, secrets wrapped as secrets."""
    args = SupaqueueArgs(
        project_ref=config.project_ref,
        db_url=pulumi.Output.secret(config.db_url),
        access_token=pulumi.Output.secret(config.access_token),
        api_url=config.api_url,
        management_api_url=config.management_api_url,
        secret_version=config.secret_version,
        queues=[QueueArgs(**queue) for queue in config.queues],  # type: ignore[typeddict-item]
        triggers=[dict(trigger) for trigger in config.triggers],
        schedules=[dict(schedule) for schedule in config.schedules],
        demo=config.demo,
        installation=config.installation,  # type: ignore[typeddict-item]
        drop_dependents_on_destroy=config.drop_dependents_on_destroy,
        data_api=config.data_api,
    )
    if "chain_max_jobs" in config.chain_budget:
        args["chain_max_jobs"] = int(config.chain_budget["chain_max_jobs"])
    if "chain_max_seconds" in config.chain_budget:
        args["chain_max_seconds"] = int(config.chain_budget["chain_max_seconds"])
    return args


def deno_binary() -> str:
    """The Deno the toolchain installed (env SUPAQUEUE_DENO overrides)."""
    found = find_deno()
    if found is None:
        raise ConfigError(
            "deno is not installed (pulumi up type-checks the Edge Function with it): install "
            "Deno 2 and put it on PATH, or set SUPAQUEUE_DENO to the deno binary"
        )
    return found


class Supaqueue(pulumi.ComponentResource):
    function_url: pulumi.Output[str]
    """URL of the `supaqueue` Edge Function."""
    schema_version: pulumi.Output[int]
    """Version of the newest applied migration."""
    queue_ids: pulumi.Output[dict[str, str]]
    """Queue name → queue id."""
    schedule_next_runs: pulumi.Output[dict[str, list[str]]]
    """Schedule name → its next run times (UTC, ISO 8601) as of the last `up`/`refresh`."""
    owner: pulumi.Output[dict[str, str]]
    """The stack declaring this component's queues (`{"stack", "stack_id"}`)."""

    def __init__(
        self, name: str, args: SupaqueueArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("supaqueue:index:Supaqueue", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Everything that can be wrong with the arguments is found before the first child is
        # declared: a child declared before an error would still be created or updated (the
        # program waits for its registrations), leaving the installation half-changed.
        dispatcher_dir = Path(args.get("dispatcher_dir") or PACKAGED_DISPATCHER)
        dispatcher_hash = folder_hash(dispatcher_dir)
        if args.get("demo") and not args.get("edge_dir"):
            raise ConfigError("demo: set edge_dir, the folder holding the demo's demo-target/")
        demo_dir = Path(args.get("edge_dir") or ".") / DEMO_SLUG
        demo_hash = folder_hash(demo_dir) if args.get("demo") else ""
        deno_binary()
        queue_args = list(args.get("queues", []))
        problems = [
            str(problem)
            for queue in queue_args
            for problem in queue_problems(f"{name}-queue-{queue.get('name')}", queue)
        ]
        if problems:
            raise ConfigError("invalid queue:\n  - " + "\n  - ".join(problems))
        trigger_args = list(args.get("triggers", []))
        schedule_args = list(args.get("schedules", []))
        queue_names = {queue.get("name") for queue in queue_args}
        problems = [
            str(problem)
            for kind, items, validate in (
                ("trigger", trigger_args, validate_trigger),
                ("schedule", schedule_args, validate_schedule),
            )
            for item in items
            for problem in validate(item, path=f"{kind} {item.get('name')!r}")
        ]
        problems += [
            f"{kind} {item.get('name')!r}.queue: {item.get('queue')!r} is not one of the queues "
            "declared here"
            for kind, items in (("trigger", trigger_args), ("schedule", schedule_args))
            for item in items
            if item.get("queue") is not None and item.get("queue") not in queue_names
        ]
        if problems:
            raise ConfigError("invalid trigger or schedule:\n  - " + "\n  - ".join(problems))
        mode = args.get("installation", "owner")
        if mode not in INSTALLATION_MODES:
            raise ConfigError(f"installation must be 'owner' or 'external', got {mode!r}")
        problems.clear()
        chain_budget = chain_rows(args, problems, key=lambda setting: setting.setting)
        if problems:
            raise ConfigError("invalid chain budget:\n  - " + "\n  - ".join(problems))
        if chain_budget and mode == "external":
            raise ConfigError(
                f"{', '.join(sorted(chain_budget))}: the chain budget belongs to the "
                "installation: set it on the stack that owns it, not with installation: external"
            )
        if args.get("data_api") and mode == "external":
            raise ConfigError(
                "data_api: the Data API exposure belongs to the installation: set it on the "
                "stack that owns it, not with installation: external"
            )
        migrations_dir = Path(args.get("migrations_dir") or migrations.SQL_DIR)
        self.migrations_dir = str(migrations_dir)
        functions_url = f"{args['api_url'].rstrip('/')}/functions/v1"
        self.db_url = args["db_url"]
        # Who this stack is, as the database records owners (providers/ownership.py).
        stack = f"{pulumi.get_project()}/{pulumi.get_stack()}"
        self.identity = StackIdentity(f"{name}-stack-id", stack, opts=child)
        self.owner = self.identity.owner
        # The name plainly, the id as an output: a preview of a new stack knows who it is.
        owner = {"stack": stack, "stack_id": self.identity.stack_id}
        external = mode == "external"
        if not external and not args.get("access_token"):
            raise ConfigError("access_token is required to install supaqueue (installation: owner)")
        api = (
            ApiTarget(
                url=args.get("management_api_url") or DEFAULT_MANAGEMENT_API_URL,
                project_ref=args["project_ref"],
                access_token=args["access_token"],
            )
            if args.get("access_token")
            else None
        )
        deployed_here = [DISPATCHER_SLUG] + ([DEMO_SLUG] if args.get("demo") else [])
        # Before anything else: its check refuses a plan that would stop half-way, before the
        # first change (providers/preflight.py). Every later child depends on it.
        self.preflight = Preflight(
            f"{name}-preflight",
            db_url=self.db_url,
            owner=owner,
            queues={queue["name"]: _live_settings(queue) for queue in queue_args},
            triggers={trigger["name"]: trigger["queue"] for trigger in trigger_args},
            schedules={schedule["name"]: schedule["queue"] for schedule in schedule_args},
            functions=[] if external else deployed_here,
            api=api.props() if api else None,
            opts=child,
        )
        child = pulumi.ResourceOptions(parent=self, depends_on=[self.preflight])

        if external:
            self.external = ExternalInstallation(
                f"{name}-external", db_url=self.db_url, owner=owner, opts=child
            )
            self.queue_dependencies: list[pulumi.Resource] = [self.external]
            self._declare_queues(name, queue_args, child)
            self._declare_hooks(name, trigger_args, schedule_args, child)
            self._finish(functions_url, self.external.schema_version)
            return

        assert api is not None  # an owner has an access token (checked above)
        drop_dependents = bool(args.get("drop_dependents_on_destroy", False))

        secret = random.RandomPassword(
            f"{name}-secret",
            length=SECRET_LENGTH,
            special=False,
            keepers={"version": str(args.get("secret_version", "1"))},
            opts=child,
        )
        # Secret whatever the random provider says: it feeds Vault and the function secret.
        secret_value: pulumi.Output[str] = pulumi.Output.secret(secret.result)  # type: ignore[arg-type]
        check = self._deno_check(f"{name}-deno-check", dispatcher_dir, dispatcher_hash)

        after_check = pulumi.ResourceOptions(parent=self, depends_on=[self.preflight, check])
        # The gate first: everything that changes the project depends on it, so another
        # stack's installation stops them all at preview, before any change.
        self.gate = OwnershipGate(
            f"{name}-ownership-gate",
            db_url=self.db_url,
            owner=owner,
            secret=secret_value,
            vault_secret_name=VAULT_SECRET_NAME,
            opts=after_check,
        )
        after_gate = pulumi.ResourceOptions(parent=self, depends_on=[check, self.gate])
        # Before the schema, so a destroy removes it after the schema: a destroy the schema's
        # delete refuses leaves the installation its secret (providers/destroy_guard.py).
        self.vault_secret = VaultSecret(
            f"{name}-vault-secret", self.db_url, VAULT_SECRET_NAME, secret_value, after_gate
        )
        self.function_secret = FunctionSecret(
            f"{name}-function-secret",
            api=api,
            secret_name=FUNCTION_SECRET_NAME,
            value=secret_value,
            opts=after_gate,
        )
        self.function = EdgeFunction(
            f"{name}-function",
            api=api,
            slug=DISPATCHER_SLUG,
            source_dir=str(dispatcher_dir),
            content_hash=dispatcher_hash,
            verify_jwt=False,
            import_map_path=_import_map(dispatcher_dir),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[check, self.gate, self.function_secret]
            ),
        )
        # The function first: a new function also runs what an older schema dispatches (whole
        # jobs, no claim), while an old function cannot run what a newer schema dispatches.
        self.schema = Migrations(
            f"{name}-schema",
            self.db_url,
            migrations_dir,
            pulumi.ResourceOptions(
                parent=self, depends_on=[check, self.gate, self.function, self.vault_secret]
            ),
            owner=owner,
            drop_dependents=drop_dependents,
        )
        after_schema = pulumi.ResourceOptions(parent=self, depends_on=[self.schema])
        self.settings = Settings(
            f"{name}-settings",
            self.db_url,
            # Budget keys left unset are not rows of ours: SQL's default, or a value set in SQL,
            # stays (and a key removed from the stack is deleted: back to the default).
            {"functions_url": functions_url, "dispatcher_slug": DISPATCHER_SLUG, **chain_budget},
            after_schema,
        )
        if args.get("data_api"):
            # After the schema (it holds supaqueue_api), so a destroy hides it before dropping it.
            self.data_api = DataApiSchema(f"{name}-data-api", api=api, opts=after_schema)
        self.queue_dependencies = [
            self.schema,
            self.settings,
            self.vault_secret,
            self.function,
        ]

        if args.get("demo"):
            demo_check = self._deno_check(f"{name}-demo-deno-check", demo_dir, demo_hash)
            self.demo_function = EdgeFunction(
                f"{name}-demo-function",
                api=api,
                slug=DEMO_SLUG,
                source_dir=str(demo_dir),
                content_hash=demo_hash,
                verify_jwt=True,
                import_map_path=_import_map(demo_dir),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[demo_check, self.gate]),
            )
            self.queue_dependencies.append(self.demo_function)

        self._declare_queues(name, queue_args, child)
        self._declare_hooks(name, trigger_args, schedule_args, child)
        # Deleted first by a destroy (it depends on everything above and on the queues).
        self.destroy_guard = DestroyGuard(
            f"{name}-destroy-guard",
            db_url=self.db_url,
            owner=self.owner,
            drop_dependents=drop_dependents,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    *self.queue_dependencies,
                    self.function_secret,
                    *([self.data_api] if args.get("data_api") else []),
                    *self.queues.values(),
                    *self.triggers.values(),
                    *self.schedules.values(),
                ],
            ),
        )
        self._finish(functions_url, self.schema.schema_version)

    def _declare_queues(
        self, name: str, queue_args: list[QueueArgs], child: pulumi.ResourceOptions
    ) -> None:
        # One resource per queue, parented here: adding a queue to the stack is one create.
        # A queue naming a dead-letter queue depends on it: made after it, removed before it
        # (the config refused loops, so this order exists).
        self.queues: dict[str, Queue] = {}
        waiting = list(queue_args)
        while waiting:
            ready = [
                q
                for q in waiting
                if q.get("dead_letter_queue") in (None, *self.queues)
                or q.get("dead_letter_queue") not in {w["name"] for w in waiting}
            ]
            if not ready:  # a loop slipped past validation: the database refuses it
                ready = waiting[:1]
            for queue in ready:
                dlq = queue.get("dead_letter_queue")
                opts = child
                if dlq in self.queues:
                    opts = pulumi.ResourceOptions.merge(
                        child, pulumi.ResourceOptions(depends_on=[self.queues[dlq]])
                    )
                self.queues[queue["name"]] = Queue(
                    f"{name}-queue-{queue['name']}", queue, installation=self, opts=opts
                )
                waiting.remove(queue)

    def _declare_hooks(
        self,
        name: str,
        trigger_args: list[HookByName],
        schedule_args: list[HookByName],
        child: pulumi.ResourceOptions,
    ) -> None:
        # Each depends on its queue: removing both removes the trigger or schedule first.
        self.triggers = {
            trigger["name"]: Trigger(
                f"{name}-trigger-{trigger['name']}",
                TriggerArgs(**{**trigger, "queue": self.queues[trigger["queue"]]}),  # type: ignore[typeddict-item]
                installation=self,
                opts=child,
            )
            for trigger in trigger_args
        }
        self.schedules = {
            schedule["name"]: Schedule(
                f"{name}-schedule-{schedule['name']}",
                ScheduleArgs(**{**schedule, "queue": self.queues[schedule["queue"]]}),  # type: ignore[typeddict-item]
                installation=self,
                opts=child,
            )
            for schedule in schedule_args
        }

    def _finish(self, functions_url: str, schema_version: pulumi.Output[int]) -> None:
        self.function_url = pulumi.Output.from_input(f"{functions_url}/{DISPATCHER_SLUG}")
        self.schema_version = schema_version
        ids = {queue_name: q.queue_id for queue_name, q in self.queues.items()}
        # Output.all() of nothing is a list: a stack without queues still outputs a map.
        self.queue_ids = pulumi.Output.all(**ids) if ids else pulumi.Output.from_input({})
        runs = {schedule_name: s.next_runs for schedule_name, s in self.schedules.items()}
        self.schedule_next_runs = (
            pulumi.Output.all(**runs) if runs else pulumi.Output.from_input({})
        )
        self.register_outputs(
            {
                "function_url": self.function_url,
                "schema_version": self.schema_version,
                "queue_ids": self.queue_ids,
                "schedule_next_runs": self.schedule_next_runs,
            }
        )

    def _deno_check(self, name: str, folder: Path, content_hash: str) -> command.local.Command:
        """`deno check` of a function folder, re-run whenever its files change."""
        return command.local.Command(
            name,
            create=f"{shlex.quote(deno_binary())} check --quiet index.ts",
            dir=str(folder),
            triggers=[content_hash],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.preflight]),
        )


def _live_settings(queue: QueueArgs) -> dict[str, Any]:
    """What the preflight compares with the database (providers/plan.py QUEUE_KEYS)."""
    declared = with_defaults({key: value for key, value in queue.items() if key != "headers"})
    return {key: declared[key] for key in QUEUE_KEYS}


def _import_map(folder: Path) -> str | None:
    return "deno.json" if (folder / "deno.json").is_file() else None
