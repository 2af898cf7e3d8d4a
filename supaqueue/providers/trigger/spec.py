"""What a table trigger declaration may say, and validation with messages naming the field.

Used by the stack config (`supaqueue:triggers`), the `Trigger` resource and its provider's
`check`. A trigger enqueues one job per matching row change of `table` into `queue`, with the
payload Supabase's Database Webhooks send (`type`, `table`, `schema`, `record`, `old_record`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from supaqueue.providers.queue.spec import SLUG_PATTERN, Problem

EVENTS = ("INSERT", "UPDATE", "DELETE")
# The SQL names of what a trigger owns are 'supaqueue_<name>_<event>' and
# 'tg_hook_<name>_<event>' (sql/*_hooks.sql): 40 keeps both within PostgreSQL's 63 bytes.
MAX_NAME_LENGTH = 40
# 'schema.table', each part the name as it is in the database (case-sensitive, unquoted).
TABLE_PATTERN = re.compile(r"([^.\s\"]+)\.([^.\s\"]+)")  # use fullmatch
# Schemas whose tables are never given a trigger: ours (a loop) and the catalogs.
FORBIDDEN_SCHEMAS = ("supaqueue", "pg_catalog", "information_schema", "net", "vault", "cron")
FIELDS = {
    "name": "trigger name, unique in the project; a rename replaces the trigger",
    "table": "the table, schema-qualified: public.orders",
    "events": "list of INSERT, UPDATE, DELETE",
    "queue": "the declared queue the jobs go to",
    "when": "optional row condition, an SQL expression over NEW (INSERT, UPDATE) / OLD "
    "(UPDATE, DELETE)",
}
REQUIRED = ("name", "table", "events", "queue")


def name_problem(value: Any) -> str | None:
    """Why `value` cannot be a trigger or schedule name."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if not SLUG_PATTERN.fullmatch(value):
        return f"{value!r} is not valid: start with a letter, then letters, digits, '-' or '_'"
    if len(value) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    return None


def split_table(table: str) -> tuple[str, str]:
    """('public', 'orders') of 'public.orders' (validated first)."""
    match = TABLE_PATTERN.fullmatch(table)
    if not match:
        raise ValueError(f"not a schema-qualified table: {table!r}")
    return match.group(1), match.group(2)


def table_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not TABLE_PATTERN.fullmatch(value):
        return f"must be a schema-qualified table name such as 'public.orders', got {value!r}"
    schema, _ = split_table(value)
    if schema in FORBIDDEN_SCHEMAS:
        return f"tables in schema {schema!r} cannot have supaqueue triggers"
    return None


def events_problem(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return f"must be a non-empty list of {', '.join(EVENTS)}, got {value!r}"
    for event in value:
        if not isinstance(event, str) or event.upper() not in EVENTS:
            return f"{event!r} is not one of {', '.join(EVENTS)}"
    upper = [event.upper() for event in value]
    if len(set(upper)) != len(upper):
        return f"lists an event twice: {value!r}"
    return None


def when_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty SQL expression (or left out)"
    return None


def validate_trigger(
    raw: Any, path: str = "trigger", unknown: set[str] | None = None, queue_known: bool = True
) -> list[Problem]:
    """Every problem of one declaration. `queue` is checked by the caller (a name in the stack
    config, a Queue resource in Python); `unknown`: values not known yet (preview)."""
    if not isinstance(raw, Mapping):
        return [Problem(path, f"must be an object, got {type(raw).__name__}")]
    not_yet_known = unknown or set()
    problems: list[Problem] = []
    for key in raw:
        if key not in FIELDS:
            problems.append(
                Problem(f"{path}.{key}", f"unknown key; known keys: {', '.join(FIELDS)}")
            )
    for key in REQUIRED:
        if raw.get(key) is None and (key != "queue" or queue_known):
            problems.append(Problem(f"{path}.{key}", "is required"))
    checks = {
        "name": name_problem,
        "table": table_problem,
        "events": events_problem,
        "when": when_problem,
    }
    for key, test in checks.items():
        if raw.get(key) is not None and key not in not_yet_known:
            reason = test(raw[key])
            if reason:
                problems.append(Problem(f"{path}.{key}", reason))
    return problems


def normalized_events(events: list[str]) -> list[str]:
    """Upper case, in the order INSERT, UPDATE, DELETE (as the database keeps them)."""
    upper = {event.upper() for event in events}
    return [event for event in EVENTS if event in upper]


def normalized_when(when: Any) -> str | None:
    return when.strip() if isinstance(when, str) and when.strip() else None
