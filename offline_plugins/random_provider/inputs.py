"""RandomPassword inputs: validation, defaults, and the rules they describe."""

from __future__ import annotations

from typing import Any

from offline_plugins.common.properties import Props, has_unknown, reveal
from offline_plugins.common.resource_provider import Failure
from offline_plugins.random_provider.password import PasswordRules

FLAGS = ("lower", "upper", "numeric", "special")
MINIMUMS = ("minLower", "minUpper", "minNumeric", "minSpecial")
# Every input of the upstream resource; `number` is the deprecated alias of `numeric`.
INPUT_KEYS = ("keepers", "length", *FLAGS, "number", *MINIMUMS, "overrideSpecial")
# Not an upstream limit: it stops a typo from making the plugin build a gigabyte string.
MAX_LENGTH = 1_000_000


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check(news: Props) -> tuple[Props, list[Failure]]:
    """Validate `news` and fill in the upstream defaults; secret envelopes on inputs are kept."""
    failures: list[Failure] = []
    inputs: Props = {}
    for key, value in news.items():
        if key.startswith("__") or value is None:
            continue  # bookkeeping from other engines/SDKs; absent values
        if key not in INPUT_KEYS:
            failures.append(Failure(key, f"unknown property {key!r} for RandomPassword"))
            continue
        inputs[key] = value
    plain = {key: reveal(value) for key, value in inputs.items()}
    known = {key: value for key, value in plain.items() if not has_unknown(value)}

    if "length" not in plain:
        failures.append(Failure("length", "length is required"))
    elif "length" in known:
        length = known["length"]
        if not _is_int(length):
            failures.append(Failure("length", f"length must be an integer, got {length!r}"))
        elif length < 1:
            failures.append(Failure("length", f"length must be at least 1, got {length}"))
        elif length > MAX_LENGTH:
            failures.append(Failure("length", f"length must be at most {MAX_LENGTH}, got {length}"))
    for key in (*FLAGS, "number"):
        if key in known and not isinstance(known[key], bool):
            failures.append(Failure(key, f"{key} must be a boolean, got {known[key]!r}"))
    for key in MINIMUMS:
        if key in known and not (_is_int(known[key]) and known[key] >= 0):
            failures.append(
                Failure(key, f"{key} must be an integer of at least 0, got {known[key]!r}")
            )
    if "overrideSpecial" in known and not isinstance(known["overrideSpecial"], str):
        failures.append(Failure("overrideSpecial", "overrideSpecial must be a string"))
    if "keepers" in known and not (
        isinstance(known["keepers"], dict)
        and all(isinstance(v, str) for v in known["keepers"].values())
    ):
        failures.append(Failure("keepers", "keepers must be a map of strings"))
    if (
        isinstance(known.get("number"), bool)
        and isinstance(known.get("numeric"), bool)
        and known["number"] != known["numeric"]
    ):
        failures.append(
            Failure("number", "number (deprecated alias of numeric) disagrees with numeric")
        )
    if failures:
        return inputs, failures

    # Upstream defaults: every class on, no minimums; `number` and `numeric` follow each other.
    for key in ("lower", "upper", "special"):
        inputs.setdefault(key, True)
    for key in MINIMUMS:
        inputs.setdefault(key, 0)
    alias = inputs.get("numeric", inputs.get("number", True))
    inputs.setdefault("numeric", alias)
    inputs.setdefault("number", alias)

    plain = {key: reveal(value) for key, value in inputs.items()}
    if not any(has_unknown(plain[key]) for key in ("length", *FLAGS, *MINIMUMS)):
        rules = rules_of(plain)
        if rules.length < rules.minimum_total:
            failures.append(
                Failure(
                    "length",
                    f"length ({rules.length}) must be at least minUpper + minLower + minNumeric"
                    f" + minSpecial ({rules.minimum_total})",
                )
            )
        elif rules.length > rules.minimum_total and not rules.pool:
            failures.append(
                Failure(
                    "length",
                    "lower, upper, numeric and special are all false, so only the minimums"
                    f" ({rules.minimum_total}) can be generated, not length {rules.length}",
                )
            )
    return inputs, failures


def rules_of(plain: Props) -> PasswordRules:
    """The generation rules from checked, revealed, fully known inputs."""
    return PasswordRules(
        length=plain["length"],
        lower=plain.get("lower", True),
        upper=plain.get("upper", True),
        numeric=bool(plain.get("numeric", plain.get("number", True))),
        special=plain.get("special", True),
        min_lower=plain.get("minLower", 0),
        min_upper=plain.get("minUpper", 0),
        min_numeric=plain.get("minNumeric", 0),
        min_special=plain.get("minSpecial", 0),
        override_special=plain.get("overrideSpecial") or "",
    )
