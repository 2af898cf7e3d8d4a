"""Stack config (namespace `supaqueue`): parsing, defaults, validation.

`target: local` takes the values it lacks from the environment that `supaqueue dev status -o env`
prints (scripts/pulumi-stack.sh exports it), so `Pulumi.dev.yaml` holds no credentials.
Every problem is reported at once, each naming its key, before any resource is declared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pulumi
from pulumi.runtime import config as runtime_config

from supaqueue.chain_budget import CHAIN_SETTINGS, chain_rows
from supaqueue.clients.management_api import DEFAULT_URL as DEFAULT_MANAGEMENT_API_URL
from supaqueue.clients.postgres import check_url
from supaqueue.errors import ConfigError
from supaqueue.providers.queue.spec import (
    Problem,
    dead_letter_problems,
    validate_queue,
    with_defaults,
)
from supaqueue.providers.schedule.spec import DEFAULT_TIMEZONE, validate_schedule
from supaqueue.providers.trigger.spec import (
    normalized_events,
    normalized_when,
    validate_trigger,
)

NAMESPACE = "supaqueue"
TARGETS = ("local", "supabase")
PROJECT_REF_PATTERN = re.compile(r"[a-z]{20}")  # fullmatch: `$` would allow a final \n

# config key -> environment variable it falls back to with `target: local`
LOCAL_ENV = {
    "projectRef": "PROJECT_REF",
    "accessToken": "ACCESS_TOKEN",
    "dbUrl": "DB_URL",
    "apiUrl": "API_URL",
    "managementApiUrl": "MANAGEMENT_API_URL",
}
KEYS = (
    "target",
    "projectRef",
    "accessToken",
    "dbUrl",
    "apiUrl",
    "managementApiUrl",
    "secretVersion",
    "queues",
    "triggers",
    "schedules",
    "demo",
    "installation",
    "dropDependentObjectsOnDestroy",
    "dataApi",
    *(setting.config_key for setting in CHAIN_SETTINGS),
)
# `owner`: this stack installs and owns supaqueue; `external`: it only declares its queues in an
# installation another stack owns (see docs/architecture.md, "Ownership").
INSTALLATION_MODES = ("owner", "external")
SECRET_KEYS = ("accessToken", "dbUrl")
# Keys that once meant something: a stack file that still sets one deploys as before, with a
# warning saying to remove it (refusing would break a working stack for nothing).
RETIRED_KEYS = {
    "serviceRoleKey": "is no longer used (the supaqueue Edge Function reads the project's "
    "SUPABASE_SERVICE_ROLE_KEY itself) and is ignored: remove it with "
    f"`pulumi config rm {NAMESPACE}:serviceRoleKey`",
}


@dataclass(frozen=True)
class StackConfig:
    """A validated stack config. Secret values are plain here; supaqueue wrap them as secrets."""

    target: str
    project_ref: str
    api_url: str
    management_api_url: str
    access_token: str = field(repr=False)
    db_url: str = field(repr=False)
    secret_version: str
    queues: list[dict[str, Any]]
    demo: bool
    installation: str = "owner"
    drop_dependents_on_destroy: bool = False
    warnings: tuple[str, ...] = ()
    triggers: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    # settings row -> value, for the chain budget keys the stack sets (supaqueue/chain_budget.py)
    chain_budget: dict[str, str] = field(default_factory=dict)
    # expose supaqueue_api to the project's Data API (supaqueue/providers/data_api.py)
    data_api: bool = False

    @property
    def functions_url(self) -> str:
        return f"{self.api_url.rstrip('/')}/functions/v1"


def _url_problem(value: str) -> str | None:
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        return f"is not a valid URL ({exc}), got {value!r}"
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return f"must be an http(s) URL, got {value!r}"
    return None


def _as_object(key: str, value: Any, problems: list[str]) -> Any:
    """Config objects arrive as JSON text from the engine and as objects from tests."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            problems.append(f"{NAMESPACE}:{key}: is not valid JSON/YAML structure")
            return None
    return value


def parse_stack_config(values: Mapping[str, Any], env: Mapping[str, str]) -> StackConfig:
    """Validate raw config `values` (keys without namespace); raise ConfigError listing all."""
    problems: list[str] = []
    warnings = tuple(
        f"{NAMESPACE}:{key}: {RETIRED_KEYS[key]}" for key in values if key in RETIRED_KEYS
    )
    for key in values:
        if key not in KEYS and key not in RETIRED_KEYS:
            problems.append(f"{NAMESPACE}:{key}: unknown key; known keys: {', '.join(KEYS)}")

    target = values.get("target")
    if target not in TARGETS:
        problems.append(
            f"{NAMESPACE}:target: must be 'local' (the local stack) or 'supabase' "
            f"(a real project), got {target!r}"
        )

    def text(key: str) -> str | None:
        value = values.get(key)
        if value is None and target == "local" and key in LOCAL_ENV:
            value = env.get(LOCAL_ENV[key]) or None
        if value is not None and not isinstance(value, str):
            problems.append(f"{NAMESPACE}:{key}: must be a string")
            return None
        return value

    def required(key: str) -> str:
        value = text(key)
        if value:
            return value
        if target == "local":
            problems.append(
                f"{NAMESPACE}:{key}: not set, and {LOCAL_ENV[key]} is not in the environment: "
                "start the local stack (`supaqueue dev up`) and run pulumi with what "
                "`supaqueue dev status -o env` prints exported "
                '(`set -a; eval "$(supaqueue dev status -o env)"; set +a`; in the supaqueue '
                f"repository, scripts/pulumi-stack.sh does it), or set {NAMESPACE}:{key}"
            )
        else:
            secret = " --secret" if key in SECRET_KEYS else ""
            problems.append(
                f"{NAMESPACE}:{key}: required for target {target!r}: "
                f"`pulumi config set{secret} {NAMESPACE}:{key} <value>`"
            )
        return ""

    project_ref = required("projectRef")
    if project_ref and not PROJECT_REF_PATTERN.fullmatch(project_ref):
        problems.append(
            f"{NAMESPACE}:projectRef: must be the 20 lowercase letters of the project ref, "
            f"got {project_ref!r}"
        )
    installation = values.get("installation", "owner")
    if installation not in INSTALLATION_MODES:
        problems.append(
            f"{NAMESPACE}:installation: must be 'owner' (this stack installs supaqueue) or "
            f"'external' (it only declares queues in another stack's installation), "
            f"got {installation!r}"
        )
    # An external stack never calls the Management API: it needs no token.
    access_token = required("accessToken") if installation != "external" else text("accessToken")
    db_url = required("dbUrl")
    if db_url and (why := check_url(db_url)):
        problems.append(f"{NAMESPACE}:dbUrl: {why}")

    api_url = text("apiUrl") or (f"https://{project_ref}.supabase.co" if project_ref else "")
    management_api_url = text("managementApiUrl") or DEFAULT_MANAGEMENT_API_URL
    for key, url in (("apiUrl", api_url), ("managementApiUrl", management_api_url)):
        if url and (why := _url_problem(url)):
            problems.append(f"{NAMESPACE}:{key}: {why}")

    version = _keeper(values.get("secretVersion", "1"))
    if isinstance(version, bool) or not isinstance(version, str | int):
        problems.append(
            f"{NAMESPACE}:secretVersion: must be a string or number (change it to rotate the "
            f"secret), got {_kind(version)} {json.dumps(version)}"
        )
        version = "1"

    demo = _boolean("demo", values, problems)

    queues = _parse_queues(_as_object("queues", values.get("queues", []), problems), problems)
    queue_names = {queue["name"] for queue in queues}
    triggers = _parse_hooks(
        "triggers",
        _as_object("triggers", values.get("triggers", []), problems),
        queue_names,
        validate_trigger,
        problems,
    )
    for trigger in triggers:
        trigger["events"] = normalized_events(trigger["events"])
        trigger["when"] = normalized_when(trigger.get("when"))
    schedules = _parse_hooks(
        "schedules",
        _as_object("schedules", values.get("schedules", []), problems),
        queue_names,
        validate_schedule,
        problems,
    )
    for schedule in schedules:
        schedule.setdefault("payload", {})
        schedule["timezone"] = schedule.get("timezone") or DEFAULT_TIMEZONE
    drop_dependents = _boolean("dropDependentObjectsOnDestroy", values, problems)
    chain_budget = chain_rows(
        values, problems, key=lambda setting: setting.config_key, prefix=f"{NAMESPACE}:"
    )
    data_api = _boolean("dataApi", values, problems)
    if data_api and installation == "external":
        problems.append(
            f"{NAMESPACE}:dataApi: the Data API exposure belongs to the installation: set it on "
            "the stack that owns it (this stack has installation: external)"
        )
    if installation == "external":
        problems += [
            f"{NAMESPACE}:{setting.config_key}: the chain budget belongs to the installation: "
            "set it on the stack that owns it (this stack has installation: external), and "
            f"`pulumi config rm {NAMESPACE}:{setting.config_key}` here"
            for setting in CHAIN_SETTINGS
            if values.get(setting.config_key) is not None
        ]

    if problems:
        raise ConfigError("invalid stack config:\n  - " + "\n  - ".join(problems))
    return StackConfig(
        target=str(target),
        project_ref=project_ref,
        api_url=api_url,
        management_api_url=management_api_url,
        access_token=access_token or "",
        db_url=db_url,
        secret_version=str(version),
        queues=queues,
        demo=bool(demo),
        triggers=triggers,
        schedules=schedules,
        installation=str(installation),
        drop_dependents_on_destroy=drop_dependents,
        warnings=warnings,
        chain_budget=chain_budget,
        data_api=data_api,
    )


def _boolean(key: str, values: Mapping[str, Any], problems: list[str]) -> bool:
    """A YAML boolean: the engine passes it as the text 'true' / 'false' (tests: a bool)."""
    value = values.get(key, False)
    if isinstance(value, str):
        value = {"true": True, "false": False}.get(value.strip().lower(), value)
    if not isinstance(value, bool):  # not `in (True, False)`: 1 == True
        problems.append(f"{NAMESPACE}:{key}: must be true or false, got {value!r}")
        return False
    return value


def _keeper(value: Any) -> Any:
    """A scalar as given; a list or object (which the engine passes as JSON text) as parsed."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, list | dict):
            return parsed
    return value


def _kind(value: Any) -> str:
    return {list: "a list", dict: "an object", bool: "a boolean"}.get(type(value), "a value")


def _parse_queues(raw: Any, problems: list[str]) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(f"{NAMESPACE}:queues: must be a list of queue objects")
        return []
    queues: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, queue in enumerate(raw):
        found = validate_queue(queue, path=f"{NAMESPACE}:queues[{index}]")
        problems.extend(str(problem) for problem in found)
        if found:
            continue
        name = queue["name"]
        if name in seen:
            problems.append(f"{NAMESPACE}:queues[{index}].name: {name!r} is declared twice")
        seen.add(name)
        queues.append(with_defaults(queue))
    if len(queues) == len(raw):  # else indexes would not be the config's (problems shown above)
        problems.extend(str(p) for p in dead_letter_problems(queues, path=f"{NAMESPACE}:queues"))
    return queues


def _parse_hooks(
    key: str,
    raw: Any,
    queue_names: set[str],
    validate: Callable[..., list[Problem]],
    problems: list[str],
) -> list[dict[str, Any]]:
    """Triggers or schedules: each valid, uniquely named, feeding a queue declared here."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(f"{NAMESPACE}:{key}: must be a list of objects")
        return []
    parsed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        path = f"{NAMESPACE}:{key}[{index}]"
        found = validate(item, path=path)
        problems.extend(str(problem) for problem in found)
        if found:
            continue
        if not isinstance(item["queue"], str) or item["queue"] not in queue_names:
            declared = ", ".join(sorted(queue_names)) or "none"
            problems.append(
                f"{path}.queue: {item['queue']!r} is not a queue of this stack "
                f"(declared in {NAMESPACE}:queues: {declared})"
            )
            continue
        if item["name"] in seen:
            problems.append(f"{path}.name: {item['name']!r} is declared twice")
        seen.add(item["name"])
        parsed.append(dict(item))
    return parsed


def raw_values() -> dict[str, Any]:
    """Every `supaqueue:*` config value of the running stack (unknown keys included)."""
    merged: dict[str, Any] = dict(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    prefix = f"{NAMESPACE}:"
    return {key[len(prefix) :]: value for key, value in merged.items() if key.startswith(prefix)}


def load_stack_config(env: Mapping[str, str]) -> StackConfig:
    """The running stack's config, validated (env: the process environment); its warnings are
    shown by `pulumi preview` / `up`."""
    config = parse_stack_config(raw_values(), env)
    for warning in config.warnings:
        pulumi.log.warn(warning)
    return config
