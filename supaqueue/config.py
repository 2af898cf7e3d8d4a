"""Stack config (namespace `supaqueue`): YAML mapped to the `Supaqueue` component's arguments.

`target: local` takes the values it lacks from the environment that `supaqueue dev status -o env`
prints (scripts/pulumi-stack.sh exports it), so `Pulumi.dev.yaml` holds no credentials.
This module judges only the stack's own keys (known keys, target, credentials and URLs, YAML
booleans): every such problem at once, each naming its key. What the stack declares (queues,
triggers, schedules, installation mode, chain budget, Data API) is passed on as written and
judged once, by the component (installation_spec.py), before any resource is declared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pulumi
from pulumi.runtime import config as runtime_config

from supaqueue.chain_budget import CHAIN_SETTINGS
from supaqueue.clients.management_api import DEFAULT_URL as DEFAULT_MANAGEMENT_API_URL
from supaqueue.clients.postgres import check_url
from supaqueue.errors import ConfigError

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
    """A stack config, its own keys checked; what it declares is judged by the component.
    Secret values are plain here; args_from_config wraps them as secrets."""

    target: str
    project_ref: str
    api_url: str
    management_api_url: str
    access_token: str = field(repr=False)
    db_url: str = field(repr=False)
    secret_version: str
    queues: list[Any]
    demo: bool
    installation: Any = None  # None: the component's default mode
    drop_dependents_on_destroy: bool = False
    warnings: tuple[str, ...] = ()
    triggers: list[Any] = field(default_factory=list)
    schedules: list[Any] = field(default_factory=list)
    # argument (= settings row) -> value as written, for the chain budget keys the stack sets
    chain_budget: dict[str, Any] = field(default_factory=dict)
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
    # Whether the installation mode needs a token is the component's rule (installation_spec).
    access_token = text("accessToken")
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

    queues, triggers, schedules = (
        _list(key, _as_object(key, values.get(key, []), problems), problems)
        for key in ("queues", "triggers", "schedules")
    )
    drop_dependents = _boolean("dropDependentObjectsOnDestroy", values, problems)
    chain_budget = {
        setting.setting: _whole(values[setting.config_key])
        for setting in CHAIN_SETTINGS
        if values.get(setting.config_key) is not None
    }
    data_api = _boolean("dataApi", values, problems)

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
        installation=values.get("installation"),
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


def _list(key: str, raw: Any, problems: list[str]) -> list[Any]:
    """A list of declarations (queues, triggers, schedules), each passed on as written."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(f"{NAMESPACE}:{key}: must be a list of objects")
        return []
    return raw


def _whole(value: Any) -> Any:
    """A whole number written as text (the engine passes `chainMaxJobs: 100` as "100") as an
    int; anything else as written, for the component to judge."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return value


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
