"""What a `Supaqueue` installation may declare, judged in one pass before any resource exists.

The component (installation.py) calls `installation_problems` on its arguments, whichever way
they were written: the stack config (config.py only maps YAML to these arguments) or a Python
program. Each rule is written once: a queue's in queue/spec.py, a trigger's and a schedule's in
their spec.py, the chain budget's in chain_budget.py, the installation modes here. The same
functions are what the providers' `check` (the engine-side guard) calls, so a refusal reads the same
wherever it comes from. The SQL constraints stay the authority for limits (drift tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from supaqueue.chain_budget import CHAIN_SETTINGS, chain_value
from supaqueue.clients.management_api import DEFAULT_URL as DEFAULT_MANAGEMENT_API_URL
from supaqueue.providers.queue.spec import Problem, dead_letter_problems, queue_problems
from supaqueue.providers.schedule.spec import validate_schedule
from supaqueue.providers.trigger.spec import validate_trigger


@dataclass(frozen=True)
class Mode:
    """An installation mode: what the stack does in the project."""

    name: str
    meaning: str
    # Installs the schema, secret, functions and settings; so it needs a Management API token,
    # and it alone may set what belongs to the installation (OWNER_ONLY).
    owns: bool


MODES = {
    mode.name: mode
    for mode in (
        Mode("owner", "this stack installs and owns supaqueue in the project", owns=True),
        Mode(
            "external", "it only declares queues in an installation another stack owns", owns=False
        ),
    )
}
DEFAULT_MODE = "owner"
# The component's optional arguments that have a default, as it applies them (`setting`).
# Unset chain budget keys write no row (the database's default holds); unset `edge_dir` and
# `migrations_dir` are the package's own sources.
DEFAULTS: dict[str, Any] = {
    "management_api_url": DEFAULT_MANAGEMENT_API_URL,
    "secret_version": "1",
    "queues": [],
    "triggers": [],
    "schedules": [],
    "demo": False,
    "installation": DEFAULT_MODE,
    "drop_dependents_on_destroy": False,
    "data_api": False,
}
# Arguments that belong to the installation: set only on the stack that owns it.
OWNER_ONLY = {
    **{budget.setting: "the chain budget" for budget in CHAIN_SETTINGS},
    "data_api": "the Data API exposure",
}


def setting(args: Mapping[str, Any], key: str) -> Any:
    """An argument, or its default when unset (None counts as unset, as Pulumi drops nulls)."""
    value = args.get(key)
    return DEFAULTS[key] if value is None else value


def mode_of(args: Mapping[str, Any]) -> Mode | None:
    """The declared mode (the default when unset); None when it is not one of MODES."""
    value = setting(args, "installation")
    return MODES.get(value) if isinstance(value, str) else None


def label(kind: str, index: int, item: Any) -> str:
    """How a problem names a declared queue, trigger or schedule: by its name when it has one
    (`queue 'emails'`), else by its place in the list (`queues[2]`)."""
    name = item.get("name") if isinstance(item, Mapping) else None
    return f"{kind} {name!r}" if isinstance(name, str) and name else f"{kind}s[{index}]"


def installation_problems(args: Mapping[str, Any]) -> list[Problem]:
    """Every problem of a `Supaqueue`'s arguments (SupaqueueArgs), each naming its field."""
    problems = _mode_problems(args)
    for budget in CHAIN_SETTINGS:
        if args.get(budget.setting) is not None:
            _, why = chain_value(budget, args[budget.setting])
            if why:
                problems.append(Problem(budget.setting, why))
    mode = mode_of(args)
    if mode and mode.owns and setting(args, "demo") and not args.get("edge_dir"):
        problems.append(Problem("edge_dir", "is required with demo: the folder of demo-target/"))
    queues = list(setting(args, "queues"))
    problems += _queue_problems(queues)
    names = {q.get("name") for q in queues if isinstance(q, Mapping)}
    for kind, validate in (("trigger", validate_trigger), ("schedule", validate_schedule)):
        problems += _hook_problems(kind, list(setting(args, f"{kind}s")), names, validate)
    return problems


def _mode_problems(args: Mapping[str, Any]) -> list[Problem]:
    mode = mode_of(args)
    if mode is None:
        choices = " or ".join(f"{m.name!r} ({m.meaning})" for m in MODES.values())
        return [Problem("installation", f"must be {choices}, got {args['installation']!r}")]
    if mode.owns:
        if args.get("access_token"):
            return []
        return [
            Problem(
                "access_token",
                f"is required with installation: {mode.name} (a Supabase access token, for the "
                "Management API; stack config: `pulumi config set --secret supaqueue:accessToken "
                "<token>`)",
            )
        ]
    return [
        Problem(
            key,
            f"{what} belongs to the installation: set it on the stack that owns it, not on "
            f"this one (installation: {mode.name})",
        )
        for key, what in OWNER_ONLY.items()
        if args.get(key) not in (None, False)
    ]


def _queue_problems(queues: Sequence[Any]) -> list[Problem]:
    problems: list[Problem] = []
    labels = [label("queue", index, queue) for index, queue in enumerate(queues)]
    seen: set[str] = set()
    for index, queue in enumerate(queues):
        problems += queue_problems(queue, labels[index])
        name = queue.get("name") if isinstance(queue, Mapping) else None
        if isinstance(name, str) and name in seen:
            problems.append(Problem(f"queues[{index}].name", f"{name!r} is declared twice"))
        seen.add(str(name))
    if not problems:  # dead letters are judged among queues that are themselves valid
        problems += dead_letter_problems(queues, labels)
    return problems


def _hook_problems(
    kind: str,
    items: Sequence[Any],
    queue_names: set[Any],
    validate: Callable[..., list[Problem]],
) -> list[Problem]:
    """Triggers or schedules: each valid, uniquely named, feeding a queue declared beside it."""
    problems: list[Problem] = []
    seen: set[str] = set()
    declared = ", ".join(sorted(str(name) for name in queue_names)) or "none"
    for index, item in enumerate(items):
        where = label(kind, index, item)
        found = validate(item, path=where)
        problems += found
        if found:
            continue
        if not isinstance(item["queue"], str) or item["queue"] not in queue_names:
            problems.append(
                Problem(
                    f"{where}.queue",
                    f"{item['queue']!r} is not one of the queues declared here ({declared})",
                )
            )
        if item["name"] in seen:
            problems.append(
                Problem(f"{kind}s[{index}].name", f"{item['name']!r} is declared twice")
            )
        seen.add(item["name"])
    return problems
