"""What a queue declaration may say, its defaults, and validation with messages naming the field.

Written once, used everywhere a queue is judged: by the `Supaqueue` component for the queues
it declares (installation_spec.py, whether they come from the stack config or from Python), by
a `Queue` declared directly in Python (`queue_problems`), and by the queue provider's `check`,
so a bad queue fails the same way, with the same message, whichever path made it.
Keys are the column names of `supaqueue.queue` (sql/), except `headers` (`default_headers`),
`workers` (rows of `supaqueue.worker`) and `discard_unfinished_on_delete` (Pulumi-side only).
Defaults equal the columns' defaults, so a declaration states the whole effective policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

# ---- limits -----------------------------------------------------------------------------------
# The authority for a queue's limits is the SQL schema: the constraints and column types of
# `supaqueue.queue` (sql/0001, sql/0008). This table mirrors them so that `pulumi preview` names
# the field; tests/engine/test_queue_limits.py fails when it, the SQL or the Edge Function's copy
# (supaqueue/edge/dispatch_body.ts) drift apart.
INT4_MAX = 2_147_483_647  # the integer columns (backoff_*_ms, rate_limit_burst, …) are `integer`
# Supabase function slugs (Management API: ^[A-Za-z][A-Za-z0-9_-]*$), at most 63 characters;
# queue names follow the same rule (SQL: queue_name_is_slug, queue_edge_function_name_is_slug).
SLUG_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")  # use fullmatch: `$` would allow a final \n
MAX_SLUG_LENGTH = 63
HEADER_NAME_PATTERN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token; fullmatch
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # queue_method_known
# The dispatcher's wall clock is 400 s on paid plans: a call may take 390 s, 10 s stay to report
# (queue_timeout_range; docs/architecture.md says why).
MAX_TIMEOUT_MS = 390_000
# How long the target's function may run, so how long a worker stays held after abandoning a call
# (queue_target_wall_clock_range, sql/0017; docs/architecture.md, "Concurrency at the target").
MIN_TARGET_WALL_CLOCK_MS = 1_000
MAX_TARGET_WALL_CLOCK_MS = 3_600_000
# A batch's request carries every payload and its answer every result, in one Edge Function's
# memory (queue_batch_size_range, sql/0028); a partial batch waits at most 5 minutes
# (queue_batch_max_wait_range). docs/architecture.md, "Batch delivery".
MAX_BATCH_SIZE = 100
MAX_BATCH_MAX_WAIT_MS = 300_000
BATCH_METHODS = ("POST", "PUT", "PATCH")  # queue_batch_method: a batch is a JSON body
# Beyond this the default burst (ceil(rate)) is no integer and the refill could overflow
# (queue_rate_limit_range; queue_rate_limit_per_key_range for rate_limit_per_key).
MAX_RATE_PER_SECOND = float(INT4_MAX)
# A queue's `key_from`: `$` then one to eight dotted field names (queue_key_from_path, sql/0026).
KEY_FROM_PATTERN = re.compile(r"\$(\.[A-Za-z_][A-Za-z0-9_]{0,62}){1,8}")  # use fullmatch


@dataclass(frozen=True)
class IntRange:
    """Inclusive bounds of an integer setting."""

    minimum: int
    maximum: int


INT_LIMITS: dict[str, IntRange] = {
    # Pulumi-side only: workers are rows of supaqueue.worker, not a column.
    "workers": IntRange(1, 1000),
    "max_attempts": IntRange(1, 100),  # queue_max_attempts_range
    "backoff_base_ms": IntRange(0, INT4_MAX),  # queue_backoff_valid
    "backoff_max_ms": IntRange(0, INT4_MAX),  # queue_backoff_valid (and >= backoff_base_ms)
    "rate_limit_burst": IntRange(1, INT4_MAX),  # queue_rate_limit_burst_positive
    "workers_per_key": IntRange(1, 1000),  # queue_workers_per_key_range (sql/0026)
    "rate_limit_burst_per_key": IntRange(1, INT4_MAX),  # queue_rate_limit_burst_per_key_positive
    "timeout_ms": IntRange(1, MAX_TIMEOUT_MS),  # queue_timeout_range
    "lease_grace_ms": IntRange(0, INT4_MAX),  # queue_timeout_range (lease_grace_ms >= 0)
    # queue_target_wall_clock_range
    "target_wall_clock_ms": IntRange(MIN_TARGET_WALL_CLOCK_MS, MAX_TARGET_WALL_CLOCK_MS),
    "retention_seconds": IntRange(0, INT4_MAX),  # queue_retention_non_negative
    "batch_size": IntRange(1, MAX_BATCH_SIZE),  # queue_batch_size_range
    "batch_max_wait_ms": IntRange(0, MAX_BATCH_MAX_WAIT_MS),  # queue_batch_max_wait_range
}
INTEGER_FIELDS = tuple(INT_LIMITS)


# How long finished jobs are kept by default (= the column default of supaqueue.queue
# .retention_seconds, sql/0020; tests/engine/test_operator_day.py keeps them equal): 7 days, so a
# failure on a Friday can still be read on Monday (after a long weekend, too), while the table
# stays bounded by a week of traffic instead of growing for ever. `keep_finished_forever: true`
# keeps them for ever on purpose (the column's null). docs/architecture.md, "Retention".
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600

# = supaqueue.default_non_retryable_statuses() (sql/0001): a timeout or a rate limit is worth
# retrying, any other client error is not.
DEFAULT_NON_RETRYABLE = [status for status in range(400, 500) if status not in (408, 429)]


@dataclass(frozen=True)
class Field:
    """One queue setting: its default (= the column's default) and whether it must be given.
    What each setting means is documented once, on `QueueArgs` (resource.py)."""

    default: Any
    required: bool = False


FIELDS: dict[str, Field] = {
    "name": Field(None, required=True),
    "edge_function_name": Field(None, required=True),
    "method": Field("POST"),
    "headers": Field({}),
    "workers": Field(1),
    "max_attempts": Field(3),
    "backoff_base_ms": Field(1000),
    "backoff_max_ms": Field(300_000),
    "backoff_jitter": Field(0.1),
    "non_retryable_statuses": Field(DEFAULT_NON_RETRYABLE),
    "rate_limit_per_second": Field(None),
    "rate_limit_burst": Field(None),
    # keys (sql/0026; docs/architecture/dispatch.md, "Keys and fairness"): none by default
    "key_from": Field(None),
    "workers_per_key": Field(None),
    "rate_limit_per_key": Field(None),
    "rate_limit_burst_per_key": Field(None),
    "timeout_ms": Field(30_000),
    "lease_grace_ms": Field(30_000),
    "target_wall_clock_ms": Field(400_000),  # Supabase's paid-plan wall clock (150 s on Free)
    "paused": Field(False),
    "retention_seconds": Field(DEFAULT_RETENTION_SECONDS),
    # Not a column: true writes retention_seconds null (with_defaults).
    "keep_finished_forever": Field(False),
    "dead_letter_queue": Field(None),
    "payload_schema": Field(None),
    "discard_unfinished_on_delete": Field(False),
    # API roles besides service_role that may enqueue through the Data API (sql/0024_data_api.sql)
    "enqueue_roles": Field([]),
    "hold_on_retry_after": Field("job"),
    # batch delivery (sql/0028): jobs per call, and how long ready jobs may wait for a full batch
    "batch_size": Field(1),
    "batch_max_wait_ms": Field(0),
}
ENQUEUE_ROLES = ("anon", "authenticated")  # the check constraint queue_enqueue_roles_known
# What a 429/503 with Retry-After holds (sql/0027, constraint queue_hold_on_retry_after_known):
# only that job's retry (the default, as before), the job's key, or the whole queue.
HOLD_ON_RETRY_AFTER = ("job", "key", "queue")


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
    if not SLUG_PATTERN.fullmatch(value):
        return (
            f"{value!r} is not a valid slug: start with a letter, then letters, digits, '-' or '_'"
        )
    if len(value) > MAX_SLUG_LENGTH:
        return f"is longer than {MAX_SLUG_LENGTH} characters"
    return None


def _int_problem(value: Any, limits: IntRange) -> str | None:
    if not _is_int(value):
        return f"must be an integer, got {value!r}"
    if value < limits.minimum:
        return f"must be at least {limits.minimum}, got {value}"
    if value > limits.maximum:
        return f"must be at most {limits.maximum}, got {value}"
    return None


def _rate_problem(value: Any) -> str | None:
    # `not 0 < v` also refuses NaN, which compares false with everything.
    if not _is_number(value) or not 0 < value:
        return f"must be a number above 0, got {value!r}"
    if value > MAX_RATE_PER_SECOND:
        return f"must be at most {INT4_MAX} calls per second, got {value!r}"
    return None


def _key_from_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not KEY_FROM_PATTERN.fullmatch(value):
        return (
            "must be a path into the payload such as '$.tenant_id' or '$.customer.id' ('$' then "
            f"1 to 8 dotted field names of letters, digits and '_'), got {value!r}"
        )
    return None


def _enqueue_roles_problem(value: Any) -> str | None:
    if not isinstance(value, list) or any(role not in ENQUEUE_ROLES for role in value):
        return (
            f"must be a list of {' / '.join(ENQUEUE_ROLES)} (service_role may always enqueue), "
            f"got {value!r}"
        )
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
        if field.required and key not in not_yet_known and raw.get(key) is None:
            bad(key, "is required")

    def check(field: str, test: Any) -> None:
        value = raw.get(field)
        if field in raw and field not in not_yet_known and value is not None:
            bad(field, test(value))

    check("name", _slug_problem)
    check("dead_letter_queue", _slug_problem)
    if raw.get("dead_letter_queue") is not None and raw.get("dead_letter_queue") == raw.get("name"):
        bad("dead_letter_queue", "names the queue itself: a dead letter that fails would loop")
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
    for key, limits in INT_LIMITS.items():
        check(key, lambda v, limits=limits: _int_problem(v, limits))
    check(
        "backoff_jitter",
        lambda v: None if _is_number(v) and 0 <= v <= 1 else f"must be between 0 and 1, got {v!r}",
    )
    check("non_retryable_statuses", _statuses_problem)
    check("rate_limit_per_second", _rate_problem)
    check("rate_limit_per_key", _rate_problem)
    check("key_from", _key_from_problem)
    check("paused", lambda v: None if isinstance(v, bool) else f"must be true or false, got {v!r}")
    check("payload_schema", payload_schema_problem)
    check(
        "discard_unfinished_on_delete",
        lambda v: None if isinstance(v, bool) else f"must be true or false, got {v!r}",
    )
    check("enqueue_roles", _enqueue_roles_problem)
    check(KEEP, lambda v: None if isinstance(v, bool) else f"must be true or false, got {v!r}")
    if raw.get(KEEP) is True and raw.get("retention_seconds") is not None:
        bad(
            KEEP,
            f"keeps finished jobs for ever, but retention_seconds ({raw['retention_seconds']!r}) "
            "deletes them: set one of the two",
        )
    check(
        "hold_on_retry_after",
        lambda v: (
            None
            if isinstance(v, str) and v in HOLD_ON_RETRY_AFTER
            else f"must be one of {', '.join(HOLD_ON_RETRY_AFTER)}, got {v!r}"
        ),
    )
    base: Any = raw.get("backoff_base_ms")
    cap: Any = raw.get("backoff_max_ms")
    if _is_int(base) and _is_int(cap) and cap < base:
        bad("backoff_max_ms", f"must be at least backoff_base_ms ({base}), got {cap}")
    size: Any = raw.get("batch_size")
    method: Any = raw.get("method", FIELDS["method"].default)
    if _is_int(size) and size > 1 and isinstance(method, str) and method not in BATCH_METHODS:
        bad(
            "batch_size",
            f"needs a method with a body ({', '.join(BATCH_METHODS)}): a batch is a JSON array "
            f"in the request body, and method is {method!r}",
        )
    if raw.get("rate_limit_burst") is not None and raw.get("rate_limit_per_second") is None:
        bad("rate_limit_burst", "needs rate_limit_per_second")
    if raw.get("rate_limit_burst_per_key") is not None and raw.get("rate_limit_per_key") is None:
        bad("rate_limit_burst_per_key", "needs rate_limit_per_key")
    return problems


def queue_problems(args: Mapping[str, Any] | Any, path: str) -> list[Problem]:
    """What is wrong with one queue's arguments in a program, named `<path>.<field>`: values
    that are outputs (not known until the engine resolves them) are judged by `check`."""
    if not isinstance(args, Mapping):
        return validate_queue(args, path=path)
    unknown = output_keys(args)
    plain = {key: value for key, value in args.items() if key not in unknown}
    return validate_queue(plain, path=path, unknown=unknown)


def output_keys(args: Mapping[str, Any]) -> set[str]:
    """The settings given as outputs: not known until the engine resolves them, so judged by
    the provider's check, not in the program."""
    return {key for key, value in args.items() if isinstance(value, pulumi.Output)}


def dead_letter_problems(
    queues: Sequence[Mapping[str, Any]], labels: Sequence[str]
) -> list[Problem]:
    """Dead-letter queues across one installation's queues (`labels[i]` names queue i): each
    names a queue declared beside it, and no chain of them leads back to where it started (a
    dead letter that fails would loop; the database refuses it too, trigger
    `queue_dead_letter_no_loop`)."""
    names = {q.get("name"): index for index, q in enumerate(queues)}
    target = {q.get("name"): q.get("dead_letter_queue") for q in queues}
    problems: list[Problem] = []
    for index, queue in enumerate(queues):
        dlq = queue.get("dead_letter_queue")
        if dlq is None:
            continue
        field = f"{labels[index]}.dead_letter_queue"
        if dlq not in names:
            declared = ", ".join(sorted(str(n) for n in names))
            problems.append(
                Problem(field, f"{dlq!r} is not one of the queues declared here ({declared})")
            )
            continue
        chain = [queue.get("name"), dlq]
        while chain[-1] != chain[0] and target.get(chain[-1]) is not None:
            if len(chain) > len(queues):
                break  # a loop that does not pass through this queue: reported at its own
            chain.append(target[chain[-1]])
        if chain[-1] == chain[0]:
            problems.append(
                Problem(
                    field,
                    f"dead letters would loop ({' -> '.join(map(str, chain))}): a dead letter "
                    "that fails would be enqueued again for ever; end the chain at a queue "
                    "without dead_letter_queue",
                )
            )
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


# = the constraint queue_payload_schema_size (sql/0025): the schema's JSON text as Postgres
# renders jsonb, in UTF-8 bytes (tests/engine/test_queue_limits.py keeps them equal).
MAX_PAYLOAD_SCHEMA_BYTES = 65_536
# The JSON Schema dialects a payload schema may name in `$schema` (none: 2020-12). The same ones
# the called function's validator knows (console/typegen/payload_handler.ts picks Ajv's class by
# it), so a schema accepted at preview is never refused at run time.
PAYLOAD_SCHEMA_DIALECTS = (
    "https://json-schema.org/draft/2020-12/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "http://json-schema.org/draft-07/schema#",
    "http://json-schema.org/draft-07/schema",
)


def payload_schema_size(schema: Any) -> int:
    """Bytes of `schema` as Postgres renders jsonb (`", "` and `": "` separators, UTF-8)."""
    return len(json.dumps(schema, ensure_ascii=False).encode())


def payload_schema_problem(value: Any) -> str | None:
    """A queue's `payload_schema`: a JSON Schema object (valid per its dialect's metaschema, the
    `jsonschema` library's check), at most MAX_PAYLOAD_SCHEMA_BYTES."""
    import jsonschema  # only when a queue declares a schema

    if not isinstance(value, Mapping):
        return f"must be a JSON Schema object, got {type(value).__name__}"
    try:
        size = payload_schema_size(value)
    except (TypeError, ValueError) as exc:
        return f"must hold only JSON values ({exc})"
    if size > MAX_PAYLOAD_SCHEMA_BYTES:
        return f"is {size} bytes of JSON, at most {MAX_PAYLOAD_SCHEMA_BYTES}: split or simplify it"
    dialect = value.get("$schema")
    if dialect is not None and dialect not in PAYLOAD_SCHEMA_DIALECTS:
        return (
            f"$schema {dialect!r} is not supported; leave $schema out (draft 2020-12) or use "
            + ", ".join(repr(d) for d in PAYLOAD_SCHEMA_DIALECTS[:3])
        )
    validator = jsonschema.validators.validator_for(value, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        return f"is not a valid JSON Schema: at {where or 'the top'}: {exc.message}"
    return _ref_problem(value, value, "")


def _ref_problem(root: Mapping[str, Any], node: Any, where: str) -> str | None:
    """`$ref`s must point inside the schema (`#/$defs/x`) and resolve: the called function's
    validator fetches nothing, and an unresolved reference would fail it at boot, not here."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            if found := _ref_problem(root, item, f"{where}[{index}]"):
                return found
        return None
    if not isinstance(node, Mapping):
        return None
    ref = node.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#"):
            return (
                f"at {where or 'the top'}: $ref {ref!r} points outside the schema; put the "
                "referenced schema under $defs and use '#/$defs/…'"
            )
        if ref.startswith("#/") or ref == "#":
            target: Any = root
            for part in ref[2:].split("/") if ref != "#" else []:
                key = part.replace("~1", "/").replace("~0", "~")
                if isinstance(target, list) and key.isdigit() and int(key) < len(target):
                    target = target[int(key)]
                elif isinstance(target, Mapping) and key in target:
                    target = target[key]
                else:
                    return f"at {where or 'the top'}: $ref {ref!r} points to nothing in the schema"
    for key, item in node.items():
        if key not in ("const", "enum", "default", "examples"):  # values, not schemas
            if found := _ref_problem(root, item, f"{where}.{key}"):
                return found
    return None


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
    if isinstance(fixed.get("payload_schema"), Mapping):
        # Pulumi carries `maxLength: 5` as 5.0; JSON Schema treats both alike, readers prefer 5.
        fixed["payload_schema"] = _whole_numbers(fixed["payload_schema"])
    return fixed


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


# Retention (docs/architecture/pulumi.md, "Queue objects"): unset is the default in every
# language (Pulumi drops null inputs, so a null cannot say "for ever" outside Python);
# `keep_finished_forever: true` keeps finished jobs for ever (the column's null). Python's
# `retention_seconds=None` (and the stack config's `null`) still means it.
KEEP = "keep_finished_forever"


def keeps_forever(raw: Mapping[str, Any]) -> bool:
    return raw.get(KEEP) is True or (
        "retention_seconds" in raw and raw["retention_seconds"] is None
    )


def with_defaults(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A complete declaration: every field, defaults filled in."""
    filled = {key: raw.get(key, field.default) for key, field in FIELDS.items()}
    if keeps_forever(raw):
        filled[KEEP] = True
        filled["retention_seconds"] = None
    filled["headers"] = dict(filled["headers"] or {})
    filled["non_retryable_statuses"] = list(filled["non_retryable_statuses"])
    filled["enqueue_roles"] = list(filled["enqueue_roles"] or [])
    return filled


def settled_retention(state: Mapping[str, Any]) -> dict[str, Any]:
    """A queue's state with `keep_finished_forever` said: a state written before it existed
    holds no flag, and its missing `retention_seconds` was an explicit null (the program then
    filled every default first), so: kept for ever."""
    if KEEP in state:
        return dict(state)
    return {**state, KEEP: state.get("retention_seconds") is None}


# ---- compact status lists ---------------------------------------------------------------------
# The default list holds 98 statuses: as a list, `pulumi preview --diff` prints one line each for
# every new queue. The provider keeps the list in its inputs and state as ranges,
# "400-407,409-428,430-499"; the database still gets the plain array (the engine's semantics:
# a status is non-retryable iff it is in it, so order and repeats never mattered).


def compact_statuses(statuses: list[int]) -> str:
    """`[400, 401, 402, 404]` → `"400-402,404"` (sorted, without repeats; `""` for none)."""
    ranges: list[list[int]] = []
    for status in sorted(set(statuses)):
        if ranges and status == ranges[-1][1] + 1:
            ranges[-1][1] = status
        else:
            ranges.append([status, status])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


_RANGE = re.compile(r"([0-9]{3})(?:-([0-9]{3}))?")


def expand_statuses(value: Any) -> list[int] | None:
    """The statuses of a compact string (or of a list, as given); None when it is neither."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        return None
    statuses: list[int] = []
    for part in filter(None, (piece.strip() for piece in value.split(","))):
        found = _RANGE.fullmatch(part)
        if not found:
            return None
        first = int(found.group(1))
        last = int(found.group(2) or first)
        if last < first:
            return None
        statuses += range(first, last + 1)
    return statuses
