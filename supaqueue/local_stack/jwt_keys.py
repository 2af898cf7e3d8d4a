"""Credentials a Supabase project hands out, generated for the local stack.

The legacy anon and service_role keys are HS256 JWTs signed with the project's JWT secret,
exactly like a real project's, so code that decodes them (or the gateway's `verify_jwt`)
behaves the same here.
"""

from __future__ import annotations

import secrets
import string
import time
from collections import OrderedDict
from typing import Any

import jwt

# Supabase's legacy keys expire about ten years out; far future is what clients expect.
_TEN_YEARS = 10 * 365 * 24 * 3600


def new_jwt_secret() -> str:
    return secrets.token_urlsafe(48)


def new_project_ref() -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(20))


def new_access_token() -> str:
    return "sbp_" + secrets.token_hex(20)


def new_secret_key() -> str:
    return "sb_secret_" + secrets.token_urlsafe(24)


def new_publishable_key() -> str:
    return "sb_publishable_" + secrets.token_urlsafe(24)


def role_key(jwt_secret: str, role: str, ref: str, issued_at: int | None = None) -> str:
    """A legacy API key: a JWT with Supabase's claims (iss, ref, role, iat, exp)."""
    iat = int(time.time()) if issued_at is None else issued_at
    claims = {"iss": "supabase-demo", "ref": ref, "role": role, "iat": iat, "exp": iat + _TEN_YEARS}
    return jwt.encode(claims, jwt_secret, algorithm="HS256")


def verify(token: str, jwt_secret: str) -> dict[str, Any] | None:
    """The token's claims when it is a valid HS256 JWT for this secret, else None."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, jwt_secret, algorithms=["HS256"], options={"verify_aud": False}
        )
    except jwt.PyJWTError:
        return None
    return claims


class VerifiedTokens:
    """`verify` with a memory of tokens already found valid: their signature is not checked
    again, but their time claims are, exactly as PyJWT checks them (`exp` passed, `nbf` or `iat`
    in the future: invalid), so a cached token expires on time. Invalid tokens are never cached.
    The gateway checks the same few keys on every call; this spares it the HMAC and the JSON."""

    def __init__(self, max_tokens: int = 1024) -> None:
        self.max_tokens = max_tokens
        self._claims: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    def verify(self, token: str, jwt_secret: str) -> dict[str, Any] | None:
        key = (jwt_secret, token)
        claims = self._claims.get(key)
        if claims is None:
            claims = verify(token, jwt_secret)
            if claims is None:
                return None
            self._claims[key] = claims
            if len(self._claims) > self.max_tokens:
                self._claims.popitem(last=False)
            return claims
        if not _in_time(claims, time.time()):
            del self._claims[key]
            return None
        self._claims.move_to_end(key)
        return claims


def _in_time(claims: dict[str, Any], now: float) -> bool:
    """PyJWT's time checks (leeway 0) on claims that passed them once, so they are integers."""
    if "exp" in claims and int(claims["exp"]) <= now:
        return False
    if "nbf" in claims and int(claims["nbf"]) > now:
        return False
    return not ("iat" in claims and int(claims["iat"]) > now)
