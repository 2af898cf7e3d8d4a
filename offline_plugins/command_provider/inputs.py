"""command:local:Command inputs: validation and the upstream defaults."""

from __future__ import annotations

from typing import Any

from offline_plugins.command_provider import PACKAGE, VERSION
from offline_plugins.common.properties import Props, has_unknown, reveal
from offline_plugins.common.resource_provider import Failure

STRING_KEYS = ("create", "update", "delete", "dir", "stdin")
# Which output streams each `logging` mode shows in the CLI while the command runs.
LOGGED_STREAMS: dict[str, frozenset[str]] = {
    "stdout": frozenset({"stdout"}),
    "stderr": frozenset({"stderr"}),
    "stdoutAndStderr": frozenset({"stdout", "stderr"}),
    "none": frozenset(),
}
LOGGING_MODES = tuple(LOGGED_STREAMS)
# Inputs upstream has that need assets/archives, which this plugin does not produce.
UNSUPPORTED_KEYS = ("assetPaths", "archivePaths")
INPUT_KEYS = (
    *STRING_KEYS,
    "triggers",
    "environment",
    "interpreter",
    "addPreviousOutputInEnv",
    "logging",
    *UNSUPPORTED_KEYS,
)
REPLACE_KEYS = ("triggers",)


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check(news: Props) -> tuple[Props, list[Failure]]:
    """Validate `news` (known parts only) and fill in the defaults; secret envelopes are kept."""
    failures: list[Failure] = []
    inputs: Props = {}
    for key, value in news.items():
        if key.startswith("__") or value is None:
            continue  # bookkeeping from other engines/SDKs; absent values
        if key not in INPUT_KEYS:
            failures.append(Failure(key, f"unknown property {key!r} for local Command"))
            continue
        inputs[key] = value
    known = {k: reveal(v) for k, v in inputs.items() if not has_unknown(reveal(v))}

    for key in STRING_KEYS:
        if key in known and not isinstance(known[key], str):
            failures.append(Failure(key, f"{key} must be a string, got {known[key]!r}"))
    if "interpreter" in known and not _string_list(known["interpreter"]):
        failures.append(Failure("interpreter", "interpreter must be a list of strings"))
    if "environment" in known and not (
        isinstance(known["environment"], dict)
        and all(isinstance(v, str) for v in known["environment"].values())
    ):
        failures.append(Failure("environment", "environment must be a map of strings"))
    if "triggers" in known and not isinstance(known["triggers"], list):
        failures.append(Failure("triggers", "triggers must be a list"))
    if "addPreviousOutputInEnv" in known and not isinstance(known["addPreviousOutputInEnv"], bool):
        failures.append(
            Failure("addPreviousOutputInEnv", "addPreviousOutputInEnv must be a boolean")
        )
    if "logging" in known and known["logging"] not in LOGGING_MODES:
        failures.append(Failure("logging", f"logging must be one of {', '.join(LOGGING_MODES)}"))
    for key in UNSUPPORTED_KEYS:
        if known.get(key):
            failures.append(
                Failure(
                    key,
                    f"{key} is not supported by the offline {PACKAGE} plugin {VERSION} (supaqueue);"
                    f" install the official pulumi-{PACKAGE} {VERSION} plugin to use it",
                )
            )
    inputs.setdefault("addPreviousOutputInEnv", True)
    return inputs, failures
