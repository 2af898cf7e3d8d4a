"""What a queue declaration may say, its defaults, and validation with messages naming the field.

Used twice: by the stack config (`supaqueue:queues`, a list of these objects) and by the queue
provider's `check`, so a bad queue fails `pulumi preview` the same way whichever path made it.
Keys are the column names of `supaqueue.queue` (sql/), except `headers` (`default_headers`),
`workers` (rows of `supaqueue.worker`) and `discard_unfinished_on_delete` (Pulumi-side only).
Defaults equal the columns' defaults, so a declaration states the whole effective policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Supabase function slugs (OpenAPI: ^[A-Za-z][A-Za-z0-9_-]*$); queue names follow the same rule
# so they read well in URLs, logs and cron job names.
SLUG_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
HEADER_NAME_PATTERN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_SLUG_LENGTH = 63
MAX_WORKERS = 1000
# Supabase's wall-clock limit for a function is 400 s on paid plans.
MAX_TIMEOUT_MS = 400_000


# = supaqueue.default_non_retryable_statuses() (sql/0001): a timeout or a rate limit is worth
# retrying, any other client error is not.
DEFAULT_NON_RETRYABLE = [status for status in range(400, 500) if status not in (408, 429)]


@dataclass(frozen=True)
class Field:
    """One queue setting: its default and a one-line description (for messages and docs)."""

    default: Any
    doc: str
    required: bool = False


FIELDS: dict[str, Field] = {
    "name": Field(None, "queue name, unique; a rename replaces the queue", required=True),
    "edge_function_name": Field(None, "slug of the Edge Function each job calls", required=True),
    "method": Field("POST", "HTTP method of the call: GET, POST, PUT, PATCH or DELETE"),
    "headers": Field({}, "extra request headers (string values; kept secret in state)"),
    "workers": Field(1, "calls in flight at most (>= 1)"),
    "max_attempts": Field(3, "attempts before a job fails for good (>= 1)"),
    "backoff_base_ms": Field(1000, "first retry delay in ms; doubles per attempt"),
    "backoff_max_ms": Field(300_000, "longest retry delay in ms"),
    "backoff_jitter": Field(0.1, "random share of each delay, 0..1"),
    "non_retryable_statuses": Field(
        DEFAULT_NON_RETRYABLE, "HTTP statuses that fail a job at once (default: 4xx but 408, 429)"
    ),
    "rate_limit_per_second": Field(None, "calls started per second at most (null: no limit)"),
    "rate_limit_burst": Field(None, "calls allowed at once above the rate (null: the rate)"),
    "timeout_ms": Field(30_000, "timeout of one call in ms"),
    "paused": Field(False, "a paused queue dispatches nothing; jobs wait"),
    "retention_seconds": Field(None, "finished jobs are deleted after this long (null: kept)"),
    "discard_unfinished_on_delete": Field(
        False, "removing the queue may discard its unfinished jobs"
    ),
}


@dataclass(frozen=True)
class Problem:
    """A validation failure: the field (path) and what is wrong with it."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _slug_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if "://" in value or value.startswith("/"):
        return f"must be a function slug such as 'send-email', not a URL ({value!r})"
    if not SLUG_PATTERN.match(value):
        return (
            f"{value!r} is not a valid slug: start with a letter, then letters, digits, '-' or '_'"
        )
    if len(value) > MAX_SLUG_LENGTH:
        return f"is longer than {MAX_SLUG_LENGTH} characters"
    return None


def _int_problem(value: Any, minimum: int, maximum: int | None = None) -> str | None:
    if not _is_int(value):
        return f"must be an integer, got {value!r}"
    if value < minimum:
        return f"must be at least {minimum}, got {value}"
    if maximum is not None and value > maximum:
        return f"must be at most {maximum}, got {value}"
    return None


def validate_queue(raw: Any, path: str = "queue", unknown: set[str] | None = None) -> list[Problem]:
    """Every problem of one queue declaration; `unknown` names values not known yet (preview)."""
    not_yet_known = unknown or set()
    if not isinstance(raw, Mapping):
        return [Problem(path, f"must be an object, got {type(raw).__name__}")]
    problems: list[Problem] = []

    def bad(field: str, reason: str | None) -> None:
        if reason:
            problems.append(Problem(f"{path}.{field}", reason))

    for key in raw:
        if key not in FIELDS:
            bad(str(key), f"unknown key; known keys: {', '.join(FIELDS)}")
    for key, field in FIELDS.items():
        if field.required and raw.get(key) is None:
            bad(key, "is required")

    def check(field: str, test: Any) -> None:
        value = raw.get(field)
        if field in raw and field not in not_yet_known and value is not None:
            bad(field, test(value))

    check("name", _slug_problem)
    check("edge_function_name", _slug_problem)
    check(
        "method",
        lambda v: (
            None
            if isinstance(v, str) and v in METHODS
            else f"must be one of {', '.join(METHODS)}, got {v!r}"
        ),
    )
    check("headers", _headers_problem)
    check("workers", lambda v: _int_problem(v, 1, MAX_WORKERS))
    check("max_attempts", lambda v: _int_problem(v, 1, 100))
    check("backoff_base_ms", lambda v: _int_problem(v, 0))
    check("backoff_max_ms", lambda v: _int_problem(v, 0))
    check(
        "backoff_jitter",
        lambda v: None if _is_number(v) and 0 <= v <= 1 else f"must be between 0 and 1, got {v!r}",
    )
    check("non_retryable_statuses", _statuses_problem)
    check(
        "rate_limit_per_second",
        lambda v: None if _is_number(v) and v > 0 else f"must be a number above 0, got {v!r}",
    )
    check("rate_limit_burst", lambda v: _int_problem(v, 1))
    check("timeout_ms", lambda v: _int_problem(v, 100, MAX_TIMEOUT_MS))
    check("paused", lambda v: None if isinstance(v, bool) else f"must be true or false, got {v!r}")
    check("retention_seconds", lambda v: _int_problem(v, 0))
    check(
        "discard_unfinished_on_delete",
        lambda v: None if isinstance(v, bool) else f"must be true or false, got {v!r}",
    )
    base: Any = raw.get("backoff_base_ms")
    cap: Any = raw.get("backoff_max_ms")
    if _is_int(base) and _is_int(cap) and cap < base:
        bad("backoff_max_ms", f"must be at least backoff_base_ms ({base}), got {cap}")
    if raw.get("rate_limit_burst") is not None and raw.get("rate_limit_per_second") is None:
        bad("rate_limit_burst", "needs rate_limit_per_second")
    return problems


# What an HTTP field value may hold (RFC 9110 field-value, without the obsolete non-ASCII
# obs-text, which fetch() would send as Latin-1 bytes, never as the UTF-8 the user wrote):
# visible ASCII, with spaces and tabs inside. tests/edge/test_header_rules.py checks that
# everything accepted here is accepted by the Deno runtime the supaqueue function calls with.
HEADER_VALUE_PATTERN = re.compile(r"[!-~]([\t -~]*[!-~])?")


def _headers_problem(value: Any) -> str | None:
    """Header names and values that HTTP cannot carry, refused at preview. The value itself is
    never shown: header values are often credentials."""
    if not isinstance(value, Mapping):
        return f"must be an object of header name to string value, got {type(value).__name__}"
    for name, header in value.items():
        if not isinstance(name, str) or not HEADER_NAME_PATTERN.fullmatch(name):
            return f"{name!r} is not a valid header name"
        if not isinstance(header, str):
            return f"value of header {name!r} must be a string, got {type(header).__name__}"
        if any(char in header for char in "\r\n\0"):
            # No HTTP client sends it (every call would fail).
            return f"value of header {name!r} must not contain CR, LF or NUL characters"
        if header and not HEADER_VALUE_PATTERN.fullmatch(header):
            return (
                f"value of header {name!r} may hold only printable ASCII characters, with spaces"
                " or tabs between them (no other control characters, no leading or trailing"
                " space, no characters such as '€')"
            )
    return None


def _statuses_problem(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"must be a list of HTTP status codes, got {type(value).__name__}"
    for status in value:
        if not _is_int(status) or not 100 <= status <= 599:
            return f"{status!r} is not an HTTP status code (100-599)"
    return None


INTEGER_FIELDS = (
    "workers",
    "max_attempts",
    "backoff_base_ms",
    "backoff_max_ms",
    "rate_limit_burst",
    "timeout_ms",
    "retention_seconds",
)


def coerce_integers(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Whole floats back to ints: the engine carries every number as a float."""

    def whole(value: Any) -> Any:
        return int(value) if isinstance(value, float) and value.is_integer() else value

    fixed = dict(raw)
    for key in INTEGER_FIELDS:
        if key in fixed:
            fixed[key] = whole(fixed[key])
    if isinstance(fixed.get("non_retryable_statuses"), list):
        fixed["non_retryable_statuses"] = [whole(v) for v in fixed["non_retryable_statuses"]]
    return fixed


def with_defaults(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A complete declaration: every field, defaults filled in."""
    filled = {key: raw.get(key, field.default) for key, field in FIELDS.items()}
    filled["headers"] = dict(filled["headers"] or {})
    filled["non_retryable_statuses"] = list(filled["non_retryable_statuses"])
    return filled
