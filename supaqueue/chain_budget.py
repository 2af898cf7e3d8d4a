"""The chain budget a stack may set: `supaqueue:chainMaxJobs` / `supaqueue:chainMaxSeconds`.

They become the rows `chain_max_jobs` / `chain_max_seconds` of `supaqueue.settings`, which
`supaqueue.chain_budget()` reads (sql/0014_chained_dispatch.sql; docs/architecture.md, "Chained
dispatch"). The authority for their bounds is the SQL (constraints `settings_chain_max_jobs_valid`
and `settings_chain_max_seconds_valid`): the bounds here only let `pulumi preview` name the key,
and tests/engine/test_chain_budget_limits.py fails if they drift from it. The defaults (50 jobs,
60 s) live in SQL alone: a key the stack leaves unset writes no row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChainSetting:
    """One budget key: its config key, settings row and inclusive bounds (as SQL checks them)."""

    config_key: str
    setting: str
    minimum: int
    maximum: int
    meaning: str


# The component's Python arguments are named as the settings rows.
CHAIN_SETTINGS = (
    ChainSetting(
        "chainMaxJobs",
        "chain_max_jobs",
        0,
        1000,
        "jobs one dispatcher invocation may run (0 or 1: no chaining)",
    ),
    ChainSetting(
        "chainMaxSeconds",
        "chain_max_seconds",
        1,
        120,
        "seconds a chain may claim jobs for (job timeouts included)",
    ),
)
_DIGITS = re.compile(r"[0-9]+")  # fullmatch; not str.isdecimal, which takes other scripts' digits


def chain_value(setting: ChainSetting, value: Any) -> tuple[str | None, str | None]:
    """(`value` as the settings row's text, None) or (None, why it is refused)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None or not setting.minimum <= number <= setting.maximum:
        return None, (
            f"must be a whole number from {setting.minimum} to {setting.maximum}, the "
            f"{setting.meaning}; got {value!r}"
        )
    return str(number), None


def chain_rows(
    values: Mapping[str, Any],
    problems: list[str],
    key: Callable[[ChainSetting], str],
    prefix: str = "",
) -> dict[str, str]:
    """The settings rows for the budget keys set in `values` (each read under `key(setting)`);
    a bad value appends a problem naming `prefix + key(setting)`."""
    rows: dict[str, str] = {}
    for setting in CHAIN_SETTINGS:
        raw = values.get(key(setting))
        if raw is None:
            continue
        text, why = chain_value(setting, raw)
        if text is None:
            problems.append(f"{prefix}{key(setting)}: {why}")
        else:
            rows[setting.setting] = text
    return rows
