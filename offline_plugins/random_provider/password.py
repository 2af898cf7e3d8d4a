"""Generating a password the way the upstream provider does, with the `secrets` module."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import bcrypt

LOWER = "abcdefghijklmnopqrstuvwxyz"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NUMERIC = "0123456789"
DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"
# bcrypt only ever reads 72 bytes; the library refuses longer input, so longer results are hashed
# on their first 72 bytes (what any bcrypt check compares). Cost 10 and "$2a$" match upstream.
BCRYPT_MAX_BYTES = 72


@dataclass(frozen=True)
class PasswordRules:
    length: int
    lower: bool = True
    upper: bool = True
    numeric: bool = True
    special: bool = True
    min_lower: int = 0
    min_upper: int = 0
    min_numeric: int = 0
    min_special: int = 0
    override_special: str = ""

    @property
    def special_chars(self) -> str:
        return self.override_special or DEFAULT_SPECIAL

    @property
    def pool(self) -> str:
        """Characters the part of the password beyond the minimums is drawn from."""
        parts = [
            (self.upper, UPPER),
            (self.lower, LOWER),
            (self.numeric, NUMERIC),
            (self.special, self.special_chars),
        ]
        return "".join(chars for enabled, chars in parts if enabled)

    @property
    def minimum_total(self) -> int:
        return self.min_lower + self.min_upper + self.min_numeric + self.min_special


def generate(rules: PasswordRules) -> str:
    """Minimums first (upstream draws them even for a class switched off), the rest from the pool,
    then a shuffle so the classes are not grouped."""
    chosen: list[str] = []
    for count, chars in (
        (rules.min_numeric, NUMERIC),
        (rules.min_lower, LOWER),
        (rules.min_upper, UPPER),
        (rules.min_special, rules.special_chars),
    ):
        chosen.extend(secrets.choice(chars) for _ in range(count))
    rest = rules.length - len(chosen)
    if rest > 0:
        pool = rules.pool
        if not pool:
            raise ValueError("no character class is enabled")
        chosen.extend(secrets.choice(pool) for _ in range(rest))
    secrets.SystemRandom().shuffle(chosen)
    return "".join(chosen)


def bcrypt_hash(password: str) -> str:
    data = password.encode()[:BCRYPT_MAX_BYTES]
    return bcrypt.hashpw(data, bcrypt.gensalt(rounds=10, prefix=b"2a")).decode()
