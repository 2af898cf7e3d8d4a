"""The local Command resource behind the ResourceProvider protocol."""

from __future__ import annotations

import secrets
from typing import Any

from offline_plugins.command_provider import COMMAND_TYPE, PACKAGE, VERSION
from offline_plugins.command_provider.engine_log import EngineLog
from offline_plugins.command_provider.inputs import (
    INPUT_KEYS,
    LOGGED_STREAMS,
    REPLACE_KEYS,
    check,
)
from offline_plugins.command_provider.runner import CommandFailed, Invocation, Runner
from offline_plugins.command_provider.schema import SCHEMA
from offline_plugins.common.properties import (
    UNKNOWN,
    Props,
    has_secret,
    has_unknown,
    is_secret,
    reveal,
    secret,
)
from offline_plugins.common.resource_provider import (
    Change,
    DiffResult,
    Failure,
    OfflineResourceProvider,
    ProviderError,
    Step,
)

OUTPUT_KEYS = ("stdout", "stderr")


def _comparable(value: Any) -> Any:
    plain = reveal(value)
    return None if plain in ({}, []) else plain


def _secret_strings(value: Any) -> list[str]:
    """Plain texts of every secret inside `value`, to keep them out of error messages."""
    if is_secret(value):
        return _all_strings(reveal(value))
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secret_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _secret_strings(v)]
    return []


def _all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _all_strings(v)]
    return []


class CommandProvider(OfflineResourceProvider):
    package = PACKAGE
    version = VERSION
    type_token = COMMAND_TYPE

    def __init__(self, engine: str | None = None) -> None:
        self.runner = Runner()
        self.engine_log = EngineLog(engine)

    def cancel(self) -> None:
        self.runner.cancel()

    def check(self, olds: Props, news: Props) -> tuple[Props, list[Failure]]:
        return check(news)

    def schema(self) -> dict[str, Any]:
        return SCHEMA

    def diff(self, olds: Props, news: Props, ignore_changes: list[str]) -> DiffResult:
        # Upstream: triggers replace; any other input change is an update (which re-runs
        # `update`, or `create` when there is no update script).
        changes: list[Change] = []
        for key in INPUT_KEYS:
            if key in ignore_changes:
                continue
            old, new = _comparable(olds.get(key)), _comparable(news.get(key))
            if old == new and not has_unknown(new):
                continue
            kind = "add" if old is None else "delete" if new is None else "update"
            changes.append(Change(key, kind, replace=key in REPLACE_KEYS))
        return DiffResult(changes)

    def create(self, step: Step, props: Props) -> tuple[str, Props]:
        inputs = _inputs(props)
        if step.preview:
            return "", {**inputs, "stdout": UNKNOWN, "stderr": UNKNOWN}
        resource_id = f"{step.name}{secrets.token_hex(4)}"  # upstream: name + 8 random hex digits
        script = reveal(inputs.get("create"))
        if script is None:
            return resource_id, _with_outputs(inputs, "", "")
        stdout, stderr = self._run(step, script, inputs, "", "")
        return resource_id, _with_outputs(inputs, stdout, stderr)

    def read(self, resource_id: str, props: Props, inputs: Props) -> tuple[str, Props, Props]:
        # Nothing to look up: a command's outputs exist only in the state.
        return resource_id, props, inputs or _inputs(props)

    def update(self, step: Step, resource_id: str, olds: Props, news: Props) -> Props:
        inputs = _inputs(news)
        if step.preview:
            return {**inputs, "stdout": UNKNOWN, "stderr": UNKNOWN}
        old_stdout = reveal(olds.get("stdout")) or ""
        old_stderr = reveal(olds.get("stderr")) or ""
        script = reveal(inputs.get("update")) or reveal(inputs.get("create"))
        if script is None:
            return _with_outputs(inputs, old_stdout, old_stderr)
        stdout, stderr = self._run(step, script, inputs, old_stdout, old_stderr)
        return _with_outputs(inputs, stdout, stderr)

    def delete(self, step: Step, resource_id: str, props: Props) -> None:
        script = reveal(props.get("delete"))
        if script is None:
            return
        stdout = reveal(props.get("stdout")) or ""
        stderr = reveal(props.get("stderr")) or ""
        self._run(step, script, _inputs(props), stdout, stderr)

    def _run(
        self, step: Step, script: str, inputs: Props, stdout: str, stderr: str
    ) -> tuple[str, str]:
        plain = reveal(inputs)
        if has_unknown(plain):
            raise ProviderError("cannot run a command whose inputs are not known yet")
        logged = LOGGED_STREAMS[plain.get("logging") or "stdoutAndStderr"]

        def on_line(stream: str, line: str) -> None:
            if stream in logged:
                self.engine_log.status(step.urn, line)

        invocation = Invocation(
            script=script,
            interpreter=plain.get("interpreter") or None,
            environment=plain.get("environment") or {},
            dir=plain.get("dir"),
            stdin=plain.get("stdin"),
            previous_stdout=stdout,
            previous_stderr=stderr,
            add_previous_output=plain.get("addPreviousOutputInEnv", True),
            timeout=step.timeout,
            secret_values=_secret_strings(inputs),
            on_line=on_line if logged else None,
        )
        try:
            result = self.runner.run(invocation)
        except CommandFailed as exc:
            raise ProviderError(str(exc)) from None
        return result.stdout, result.stderr


def _inputs(props: Props) -> Props:
    return {key: value for key, value in props.items() if key not in OUTPUT_KEYS}


def _with_outputs(inputs: Props, stdout: str, stderr: str) -> Props:
    # Outputs depend on every input upstream, so any secret input makes them secret.
    wrap = secret if has_secret(inputs) else (lambda value: value)
    return {**inputs, "stdout": wrap(stdout), "stderr": wrap(stderr)}
