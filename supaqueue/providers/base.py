"""What every supaqueue provider shares: error presentation, unknowns, secret options.

Provider methods run in the provider plugin process (supaqueue/provider/server.py), which reports
a failing method as its exception line alone, so a user sees "QueueNotEmptyError: cannot remove
queue 'emails': ..." and no Python stack (`sys.tracebacklimit = 0` does the same for a stack's
older dynamic-provider plugin, which reports `traceback.format_exc()`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

import psycopg
import pulumi
from pulumi.dynamic import CheckFailure, DiffResult
from pulumi.output import Unknown
from pulumi.runtime import rpc

from supaqueue.clients.postgres import check_url, sql_message
from supaqueue.errors import DatabaseError, SupaqueueError

P = ParamSpec("P")
R = TypeVar("R")


def plain(value: Any) -> Any:
    """`value` with the engine's secret wrappers removed (they reach `check` and `diff` even
    though dynamic providers do not accept secrets; the engine keeps the secretness)."""
    if isinstance(value, dict):
        if rpc.is_rpc_secret(value):
            return plain(rpc.unwrap_rpc_secret(value))
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def presented(method: Callable[P, R]) -> Callable[P, R]:
    """Plain inputs in; any failure out as a one-line, secret-free message."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if in_provider_process():
            sys.tracebacklimit = 0
        args = tuple(plain(arg) for arg in args)  # type: ignore[assignment]
        try:
            return method(*args, **kwargs)
        except SupaqueueError as exc:
            raise type(exc)(str(exc)) from None
        except psycopg.Error as exc:
            raise DatabaseError(sql_message(exc)) from None
        except Exception as exc:
            raise SupaqueueError(f"unexpected {type(exc).__name__}: {exc}") from None

    return wrapper


_PLUGIN_PROCESS = False


def mark_plugin_process() -> None:
    """Called first by the provider plugin (supaqueue/provider/server.py)."""
    global _PLUGIN_PROCESS
    _PLUGIN_PROCESS = True


def in_provider_process() -> bool:
    """True inside the provider plugin (`pulumi-resource-supaqueue`, or a stack's older
    dynamic-provider plugin `python -m pulumi.dynamic`), the one process where a traceback limit
    of 0 is wanted (the SDK's own resource code needs stack frames)."""
    if _PLUGIN_PROCESS:
        return True
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name.startswith("pulumi.dynamic")


def is_unknown(value: Any) -> bool:
    """True for a value the engine does not know yet (preview of a dependent resource)."""
    return isinstance(value, Unknown) or (isinstance(value, str) and value == rpc.UNKNOWN)


def unknown_keys(props: Mapping[str, Any]) -> set[str]:
    return {key for key, value in props.items() if is_unknown(value)}


def hook_check_failures(
    news: Mapping[str, Any],
    unknown: set[str],
    validate: Callable[..., Iterable[Any]],
    *,
    fields: Iterable[str],
    path: str,
    inputs: Iterable[str],
    also_allowed: Iterable[str],
) -> list[CheckFailure]:
    """The checks a trigger's and a schedule's `check` share, without a database: the
    declaration's own (`validate`'s problems, named without `path.`), the queue's id, the
    database URL, and no key beyond `inputs` and `also_allowed`."""
    known = list(inputs)
    spec = {key: news[key] for key in fields if key in news and key != "queue"}
    failures = [
        CheckFailure(problem.field.removeprefix(f"{path}."), problem.reason)
        for problem in validate(spec, unknown=unknown, queue_known=False)
    ]
    if news.get("queue_id") is None:
        failures.append(CheckFailure("queue_id", "is required (the queue's id)"))
    if "db_url" not in unknown and (why := check_url(news.get("db_url"))):
        failures.append(CheckFailure("db_url", f"the database URL {why}"))
    allowed = {*known, *also_allowed, "__provider"}
    failures += [
        CheckFailure(key, f"unknown key; known keys: {', '.join(known)}")
        for key in news
        if key not in allowed
    ]
    return failures


def changed_keys(
    olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]
) -> list[str]:
    """Keys whose new value differs from the old (an unknown new value counts as changed)."""
    return [key for key in keys if is_unknown(news.get(key)) or olds.get(key) != news.get(key)]


def explicit_diff(
    olds: Mapping[str, Any],
    news: Mapping[str, Any],
    *,
    updatable: Iterable[str],
    identity: Iterable[str] = (),
    delete_before_replace: bool = False,
) -> DiffResult:
    """A diff that says exactly what updates in place and what replaces."""
    replaces = changed_keys(olds, news, identity)
    updates = changed_keys(olds, news, updatable)
    return DiffResult(
        changes=bool(replaces or updates),
        replaces=replaces,
        stables=[],
        delete_before_replace=delete_before_replace and bool(replaces),
    )


def with_secret_outputs(
    opts: pulumi.ResourceOptions | None, secret_outputs: list[str]
) -> pulumi.ResourceOptions:
    """Resource options that also mark `secret_outputs` secret in state and outputs."""
    extra = pulumi.ResourceOptions(additional_secret_outputs=secret_outputs)
    return pulumi.ResourceOptions.merge(opts, extra)


def declared_outputs(props: dict[str, Any], outputs: Iterable[str]) -> dict[str, Any]:
    """Dynamic resources expose only the keys present in props; outputs start as None."""
    return {**{key: None for key in outputs}, **props}
