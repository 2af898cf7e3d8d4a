"""The RandomPassword resource behind the ResourceProvider protocol."""

from __future__ import annotations

from typing import Any

from offline_plugins.common.properties import (
    UNKNOWN,
    Props,
    has_unknown,
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
from offline_plugins.random_provider import PACKAGE, PASSWORD_TYPE, VERSION
from offline_plugins.random_provider.inputs import INPUT_KEYS, check, rules_of
from offline_plugins.random_provider.password import bcrypt_hash, generate
from offline_plugins.random_provider.schema import SCHEMA

# Upstream's ID for every password: the result itself is the identity.
PASSWORD_ID = "none"
OUTPUT_KEYS = ("result", "bcryptHash")
# Absent and empty mean the same for these inputs (no replacement between them).
_EMPTY_EQUIVALENT = {"keepers": {}, "overrideSpecial": ""}


def _comparable(key: str, value: object) -> object:
    plain = reveal(value)
    return None if plain == _EMPTY_EQUIVALENT.get(key) else plain


class RandomProvider(OfflineResourceProvider):
    package = PACKAGE
    version = VERSION
    type_token = PASSWORD_TYPE

    def check(self, olds: Props, news: Props) -> tuple[Props, list[Failure]]:
        return check(news)

    def schema(self) -> dict[str, Any]:
        return SCHEMA

    def diff(self, olds: Props, news: Props, ignore_changes: list[str]) -> DiffResult:
        # Every input change replaces the password: a new password is the only way to honour it.
        changes: list[Change] = []
        for key in INPUT_KEYS:
            if key in ignore_changes:
                continue
            old, new = _comparable(key, olds.get(key)), _comparable(key, news.get(key))
            if old == new and not has_unknown(new):
                continue
            kind = "add" if old is None else "delete" if new is None else "update"
            changes.append(Change(key, kind, replace=True))
        return DiffResult(changes)

    def create(self, step: Step, props: Props) -> tuple[str, Props]:
        outs = {key: value for key, value in props.items() if key not in OUTPUT_KEYS}
        if step.preview:
            # Nothing is generated in a preview; the engine shows the result as known after apply.
            return "", {**outs, "result": UNKNOWN, "bcryptHash": UNKNOWN}
        plain = reveal(outs)
        if has_unknown(plain):
            raise ProviderError("cannot create a RandomPassword from inputs that are not known")
        result = generate(rules_of(plain))
        return PASSWORD_ID, {
            **outs,
            "result": secret(result),
            "bcryptHash": secret(bcrypt_hash(result)),
        }

    def read(self, resource_id: str, props: Props, inputs: Props) -> tuple[str, Props, Props]:
        if not props:
            return self._import(resource_id)
        outs = dict(props)
        for key in OUTPUT_KEYS:
            if key in outs:
                outs[key] = secret(outs[key])
        ins = inputs or {key: props[key] for key in INPUT_KEYS if key in props}
        return resource_id or PASSWORD_ID, outs, ins

    def _import(self, result: str) -> tuple[str, Props, Props]:
        """`pulumi import` passes the existing password as the ID (upstream behaviour)."""
        if not result:
            raise ProviderError("import a RandomPassword with the password itself as its ID")
        inputs: Props = {
            "length": len(result),
            "lower": True,
            "upper": True,
            "numeric": True,
            "number": True,
            "special": True,
            "minLower": 0,
            "minUpper": 0,
            "minNumeric": 0,
            "minSpecial": 0,
        }
        outs = {**inputs, "result": secret(result), "bcryptHash": secret(bcrypt_hash(result))}
        return PASSWORD_ID, outs, inputs

    def update(self, step: Step, resource_id: str, olds: Props, news: Props) -> Props:
        # Only reached for changes the program ignores; the password itself stays.
        outs = {key: value for key, value in news.items() if key not in OUTPUT_KEYS}
        for key in OUTPUT_KEYS:
            outs[key] = secret(olds[key]) if key in olds else UNKNOWN
        return outs

    def delete(self, step: Step, resource_id: str, props: Props) -> None:
        """Nothing outside the state holds a password."""
