"""`Supaqueue`: supaqueue installed into one Supabase project (token `supaqueue:index:Supaqueue`).

Children, in dependency order: the stack id (providers/stack_identity.py); the preflight
(providers/preflight.py), on which every later child depends, so its check refuses a plan that
would stop half-way before anything changes; the generated secret; a Deno type check of each Edge
Function source other than the shipped dispatcher (which our CI checks), so a TypeScript error
fails `pulumi up` before anything changes; the ownership gate
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Required, TypedDict

import pulumi
import pulumi_command as command
import pulumi_random as random

from supaqueue import migrations
from supaqueue.chain_budget import chain_rows
from supaqueue.config import StackConfig
from supaqueue.deno import find_deno
from supaqueue.edge_source import PACKAGED_DISPATCHER, folder_hash
from supaqueue.errors import ConfigError
from supaqueue.installation_spec import installation_problems, mode_of, setting
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
from supaqueue.providers.queue import Queue, QueueArgs
from supaqueue.providers.queue.spec import with_defaults
from supaqueue.providers.schedule import Schedule, ScheduleArgs
from supaqueue.providers.settings import Settings
from supaqueue.providers.stack_identity import StackIdentity
from supaqueue.providers.trigger import Trigger, TriggerArgs
from supaqueue.providers.vault_secret import VaultSecret

DISPATCHER_SLUG = "supaqueue"
DEMO_SLUG = "demo-target"
VAULT_SECRET_NAME = "supaqueue_secret"
FUNCTION_SECRET_NAME = "SUPAQUEUE_SECRET"
SECRET_LENGTH = 48


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
        api_url=config.api_url,
        management_api_url=config.management_api_url,
        secret_version=config.secret_version,
        # As written: the component judges them (installation_spec.py).
        queues=list(config.queues),
        triggers=list(config.triggers),
        schedules=list(config.schedules),
        demo=config.demo,
        drop_dependents_on_destroy=config.drop_dependents_on_destroy,
        data_api=config.data_api,
        **config.chain_budget,  # type: ignore[typeddict-item]
    )
    if config.installation is not None:
        args["installation"] = config.installation
    if config.access_token:  # an empty secret would still be a (truthy) Output
        args["access_token"] = pulumi.Output.secret(config.access_token)
    return args


def deno_binary(folders: list[str]) -> str:
    """The Deno that type-checks the function sources `folders` (`$SUPAQUEUE_DENO`, else PATH)."""
    found = find_deno()
    if found is None:
        raise ConfigError(
            f"deno is not installed; it type-checks the Edge Function source(s) "
            f"{', '.join(folders)} before anything changes: install Deno (or set "
            "SUPAQUEUE_DENO; in this repository `make toolchain`), or leave dispatcher_dir "
            "unset to deploy the shipped function"
        )
    return found


@dataclass(frozen=True)
class FunctionSource:
    """An Edge Function the installation deploys, and whether Deno type-checks it first."""

    slug: str
    prefix: str  # of its resources' names: `<name>-<prefix>function`, `<name>-<prefix>deno-check`
    folder: Path
    content_hash: str
    verify_jwt: bool
    # False for the shipped source: our CI type-checks it, and a user's machine may lack Deno.
    checked: bool


@dataclass(frozen=True)
class Resolved:
    """The arguments, judged and resolved, before the first child is declared."""

    owner_mode: bool
    functions: list[FunctionSource]
    deno: str | None
    api: ApiTarget | None
    chain_budget: dict[str, str]


def resolve(args: SupaqueueArgs) -> Resolved:
    """Everything that can be wrong with the arguments, found before any child is declared: a
    child declared before an error would still be created or updated (the program waits for its
    registrations), leaving the installation half-changed."""
    problems = installation_problems(args)
    if problems:
        raise ConfigError("invalid supaqueue arguments:\n  - " + "\n  - ".join(map(str, problems)))
    mode = mode_of(args)
    assert mode is not None  # judged above
    functions = _function_sources(args) if mode.owns else []
    # Deno only where a source needs checking: never for an external stack, nor the shipped one.
    checked = [str(f.folder) for f in functions if f.checked]
    deno = deno_binary(checked) if checked else None
    api = None
    if args.get("access_token"):
        api = ApiTarget(
            url=setting(args, "management_api_url"),
            project_ref=args["project_ref"],
            access_token=args["access_token"],
        )
    chain_budget = chain_rows(args, [], key=lambda budget: budget.setting)  # judged above
    return Resolved(mode.owns, functions, deno, api, chain_budget)


def _function_sources(args: SupaqueueArgs) -> list[FunctionSource]:
    """The dispatcher (the package's own source unless `dispatcher_dir` names another) and,
    with `demo`, `demo-target` from `edge_dir`. Only a source other than the shipped one is
    type-checked: ours is checked by our CI, and a user's machine may have no Deno."""
    dispatcher = Path(args.get("dispatcher_dir") or PACKAGED_DISPATCHER)
    sources = [(DISPATCHER_SLUG, "", dispatcher, False)]
    if setting(args, "demo"):
        sources.append((DEMO_SLUG, "demo-", Path(args["edge_dir"]) / DEMO_SLUG, True))
    return [
        FunctionSource(
            slug=slug,
            prefix=prefix,
            folder=folder,
            content_hash=folder_hash(folder),
            verify_jwt=verify_jwt,
            checked=folder.resolve() != PACKAGED_DISPATCHER.resolve(),
        )
        for slug, prefix, folder, verify_jwt in sources
    ]


class Supaqueue(pulumi.ComponentResource):
    function_url: pulumi.Output[str]
    """URL of the `supaqueue` Edge Function."""
    schema_version: pulumi.Output[int]
    """Version of the newest applied migration."""

    def __init__(
        self, name: str, args: SupaqueueArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        resolved = resolve(args)  # before any registration, this component's included
        super().__init__("supaqueue:index:Supaqueue", name, None, opts)
        self.migrations_dir = str(Path(args.get("migrations_dir") or migrations.SQL_DIR))
        self.db_url = args["db_url"]
        functions_url = f"{args['api_url'].rstrip('/')}/functions/v1"
        self._declare_preflight(name, args, resolved)
        if resolved.owner_mode:
            schema_version = self._install_owner(name, args, resolved, functions_url)
        else:
            schema_version = self._install_external(name)
        child = pulumi.ResourceOptions(parent=self, depends_on=[self.preflight])
        self._declare_queues(name, setting(args, "queues"), child)
        self._declare_hooks(name, setting(args, "triggers"), setting(args, "schedules"), child)
        if resolved.owner_mode:
            self._declare_destroy_guard(name, args)
        self._finish(functions_url, schema_version)

    def _declare_preflight(self, name: str, args: SupaqueueArgs, resolved: Resolved) -> None:
        """The stack id, then the preflight: its check refuses a plan that would stop half-way,
        before the first change (providers/preflight.py). Every later child depends on it."""
        # Who this stack is, as the database records owners (providers/ownership.py).
        stack = f"{pulumi.get_project()}/{pulumi.get_stack()}"
        child = pulumi.ResourceOptions(parent=self)
        self.identity = StackIdentity(f"{name}-stack-id", stack, opts=child)
        self.owner = self.identity.owner
        # The name plainly, the id as an output: a preview of a new stack knows who it is.
        self._declared_owner = {"stack": stack, "stack_id": self.identity.stack_id}
        self.preflight = Preflight(
            f"{name}-preflight",
            db_url=self.db_url,
            owner=self._declared_owner,
            queues={queue["name"]: _live_settings(queue) for queue in setting(args, "queues")},
            triggers={hook["name"]: hook["queue"] for hook in setting(args, "triggers")},
            schedules={hook["name"]: hook["queue"] for hook in setting(args, "schedules")},
            functions=[function.slug for function in resolved.functions],
            api=resolved.api.props() if resolved.api else None,
            opts=child,
        )

    def _install_external(self, name: str) -> pulumi.Output[int]:
        """Only queues, in another stack's installation (providers/external_installation.py)."""
        self.external = ExternalInstallation(
            f"{name}-external",
            db_url=self.db_url,
            owner=self._declared_owner,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.preflight]),
        )
        self.queue_dependencies: list[pulumi.Resource] = [self.external]
        return self.external.schema_version

    def _install_owner(
        self, name: str, args: SupaqueueArgs, resolved: Resolved, functions_url: str
    ) -> pulumi.Output[int]:
        """What the stack that owns supaqueue installs: secret, type checks, ownership gate,
        Vault entry, function secret, functions, schema, settings, Data API exposure."""
        assert resolved.api is not None  # an owner has an access token (installation_spec)
        dispatcher, *others = resolved.functions
        checks = self._deno_checks(name, [dispatcher], resolved.deno)
        self._declare_gate_and_secrets(name, args, resolved.api, checks)
        self.function = self._edge_function(
            name, dispatcher, resolved.api, [*checks, self.gate, self.function_secret]
        )
        # The function first: a new function also runs what an older schema dispatches (whole
        # jobs, no claim), while an old function cannot run what a newer schema dispatches.
        self.schema = Migrations(
            f"{name}-schema",
            self.db_url,
            Path(self.migrations_dir),
            pulumi.ResourceOptions(
                parent=self, depends_on=[*checks, self.gate, self.function, self.vault_secret]
            ),
            owner=self._declared_owner,
            drop_dependents=bool(setting(args, "drop_dependents_on_destroy")),
        )
        self._declare_settings(name, args, resolved, functions_url)
        self.queue_dependencies = [self.schema, self.settings, self.vault_secret, self.function]
        for demo in others:  # `demo-target`, with `demo: true`
            demo_checks = self._deno_checks(name, [demo], resolved.deno)
            self.demo_function = self._edge_function(
                name, demo, resolved.api, [*demo_checks, self.gate]
            )
            self.queue_dependencies.append(self.demo_function)
        return self.schema.schema_version

    def _declare_gate_and_secrets(
        self, name: str, args: SupaqueueArgs, api: ApiTarget, checks: list[pulumi.Resource]
    ) -> None:
        """The generated secret, the ownership gate, the Vault entry and the function secret."""
        secret = random.RandomPassword(
            f"{name}-secret",
            length=SECRET_LENGTH,
            special=False,
            keepers={"version": str(setting(args, "secret_version"))},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.preflight]),
        )
        # Secret whatever the random provider says: it feeds Vault and the function secret.
        secret_value: pulumi.Output[str] = pulumi.Output.secret(secret.result)  # type: ignore[arg-type]
        # The gate first: everything that changes the project depends on it, so another
        # stack's installation stops them all at preview, before any change.
        self.gate = OwnershipGate(
            f"{name}-ownership-gate",
            db_url=self.db_url,
            owner=self._declared_owner,
            secret=secret_value,
            vault_secret_name=VAULT_SECRET_NAME,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.preflight, *checks]),
        )
        after_gate = pulumi.ResourceOptions(parent=self, depends_on=[*checks, self.gate])
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

    def _declare_settings(
        self, name: str, args: SupaqueueArgs, resolved: Resolved, functions_url: str
    ) -> None:
        """The settings rows and, with `data_api`, the Data API exposure: after the schema."""
        after_schema = pulumi.ResourceOptions(parent=self, depends_on=[self.schema])
        self.settings = Settings(
            f"{name}-settings",
            self.db_url,
            # Budget keys left unset are not rows of ours: SQL's default, or a value set in SQL,
            # stays (and a key removed from the stack is deleted: back to the default).
            {
                "functions_url": functions_url,
                "dispatcher_slug": DISPATCHER_SLUG,
                **resolved.chain_budget,
            },
            after_schema,
        )
        self.data_api: DataApiSchema | None = None
        if setting(args, "data_api"):
            assert resolved.api is not None
            # After the schema (it holds supaqueue_api), so a destroy hides it before dropping it.
            self.data_api = DataApiSchema(f"{name}-data-api", api=resolved.api, opts=after_schema)

    def _edge_function(
        self,
        name: str,
        source: FunctionSource,
        api: ApiTarget,
        depends_on: list[pulumi.Resource],
    ) -> EdgeFunction:
        return EdgeFunction(
            f"{name}-{source.prefix}function",
            api=api,
            slug=source.slug,
            source_dir=str(source.folder),
            content_hash=source.content_hash,
            verify_jwt=source.verify_jwt,
            import_map_path=_import_map(source.folder),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _declare_destroy_guard(self, name: str, args: SupaqueueArgs) -> None:
        """Deleted first by a destroy (it depends on everything the installation declares)."""
        self.destroy_guard = DestroyGuard(
            f"{name}-destroy-guard",
            db_url=self.db_url,
            owner=self.owner,
            drop_dependents=bool(setting(args, "drop_dependents_on_destroy")),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    *self.queue_dependencies,
                    self.function_secret,
                    *([self.data_api] if self.data_api else []),
                    *self.queues.values(),
                    *self.triggers.values(),
                    *self.schedules.values(),
                ],
            ),
        )

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

    def _deno_checks(
        self, name: str, sources: list[FunctionSource], deno: str | None
    ) -> list[pulumi.Resource]:
        """`deno check` of each source that needs it, re-run whenever its files change."""
        return [
            command.local.Command(
                f"{name}-{source.prefix}deno-check",
                create=f"{shlex.quote(str(deno))} check --quiet index.ts",
                dir=str(source.folder),
                triggers=[source.content_hash],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.preflight]),
            )
            for source in sources
            if source.checked
        ]


def _live_settings(queue: QueueArgs) -> dict[str, Any]:
    """What the preflight compares with the database (providers/plan.py QUEUE_KEYS)."""
    declared = with_defaults({key: value for key, value in queue.items() if key != "headers"})
    return {key: declared[key] for key in QUEUE_KEYS}


def _import_map(folder: Path) -> str | None:
    return "deno.json" if (folder / "deno.json").is_file() else None
