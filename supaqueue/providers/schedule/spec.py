"""What a schedule declaration may say, and validation with messages naming the field.

Used by the stack config (`supaqueue:schedules`), the `Schedule` resource and its provider's
`check`. The cron expression and time zone are checked by the database's own evaluator
(`supaqueue.cron_next_runs`, sql/*_cron.sql), the one authority on what a schedule means.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from supaqueue.providers.queue.spec import Problem
from supaqueue.providers.trigger.spec import name_problem

DEFAULT_TIMEZONE = "UTC"
# How many upcoming run times preview and the outputs show.
NEXT_RUNS_SHOWN = 3
# Longest accepted payload (JSON text): a job payload, not a data transfer.
MAX_PAYLOAD_BYTES = 64 * 1024
FIELDS = {
    "name": "schedule name, unique in the project; a rename replaces the schedule",
    "cron": "pg_cron syntax: 'min hour day month weekday' or '<n> seconds' (1-59)",
    "queue": "the declared queue the jobs go to",
    "payload": "JSON object each job carries (default {})",
    "timezone": "IANA time zone the cron fields are read in (default UTC)",
}
REQUIRED = ("name", "cron", "queue")


def payload_problem(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return f"must be a JSON object, got {type(value).__name__}"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as exc:
        return f"is not JSON: {exc}"
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        return f"is larger than {MAX_PAYLOAD_BYTES} bytes as JSON"
    return None


def validate_schedule(
    raw: Any, path: str = "schedule", unknown: set[str] | None = None, queue_known: bool = True
) -> list[Problem]:
    """Every problem found without a database (see the module doc for the rest)."""
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

    def text(value: Any) -> str | None:
        return None if isinstance(value, str) and value.strip() else "must be a non-empty string"

    checks = {"name": name_problem, "cron": text, "timezone": text, "payload": payload_problem}
    for key, test in checks.items():
        if raw.get(key) is not None and key not in not_yet_known:
            reason = test(raw[key])
            if reason:
                problems.append(Problem(f"{path}.{key}", reason))
    return problems
