"""Postgres connections for the dynamic providers, with errors that never show the password.

A password that is not URL-encoded makes libpq misread the URL (a '/' ends the host part, a
second '@' moves part of the password into the host name) and its messages then echo those
pieces. So a URL is accepted only when its authority is unambiguous, and no message about a
refused URL quotes any part of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo

from supaqueue.errors import DatabaseError

CONNECT_TIMEOUT_SECONDS = 10
SCHEMES = ("postgresql://", "postgres://")
NOT_A_URL = "is not a Postgres connection URL (postgresql://user:password@host:port/db)"
UNPARSEABLE = (
    "could not be parsed: URL-encode the user name and password "
    "(e.g. '/' as %2F, '@' as %40, ':' in the user name as %3A)"
)
# One host of the authority: a name or [IPv6], an optional numeric port (libpq allows a list).
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]*)(:[0-9]*)?$")


def describe(db_url: str) -> str:
    """`user@host:port/dbname` of a connection string, for messages (no password)."""
    if check_url(db_url) is not None:
        return "<unparseable database URL>"
    parts = conninfo.conninfo_to_dict(db_url)
    user = parts.get("user", "?")
    host = parts.get("host", "?")
    port = parts.get("port", "5432")
    dbname = parts.get("dbname", user)
    return f"{user}@{host}:{port}/{dbname}"


def check_url(db_url: Any) -> str | None:
    """Why a database URL is unusable, or None when it parses."""
    if not isinstance(db_url, str) or not db_url.strip():
        return "is empty"
    if not db_url.startswith(SCHEMES):
        return NOT_A_URL
    if _ambiguous(db_url):
        return UNPARSEABLE
    try:
        conninfo.conninfo_to_dict(db_url)
    except psycopg.ProgrammingError:
        return UNPARSEABLE  # its message may quote the URL, password included
    return None


def _ambiguous(db_url: str) -> bool:
    """True when libpq would read the URL differently than its writer meant: an unencoded '@'
    or '/' in the password, or a host part that is no host[:port] list."""
    rest = db_url.split("://", 1)[1]
    authority, _, after = rest.partition("/")
    authority = authority.split("?", 1)[0]
    if "@" in after.split("?", 1)[0] or authority.count("@") > 1:
        return True
    hosts = authority.rpartition("@")[2]
    return not all(_HOST.fullmatch(host) for host in hosts.split(","))


def sql_message(exc: psycopg.Error) -> str:
    """The server's own message (and hint) of a failed statement."""
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    if diag.message_hint:
        message += f" (hint: {diag.message_hint})"
    return message


def _without_password(text: str, db_url: str) -> str:
    password = conninfo.conninfo_to_dict(db_url).get("password")
    if password:
        text = text.replace(str(password), "***")
    return text


@contextmanager
def connect(db_url: str, *, autocommit: bool = True) -> Iterator[psycopg.Connection]:
    """A short-lived connection; callers open one per provider call (providers are pickled)."""
    problem = check_url(db_url)
    if problem:
        raise DatabaseError(f"the database URL {problem}")
    try:
        conn = psycopg.connect(
            db_url,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="supaqueue-pulumi",
        )
    except psycopg.Error as exc:
        # psycopg's message can echo the conninfo; keep only its first line, which does not,
        # and take out the password should a server or libpq ever quote it.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        raise DatabaseError(
            f"cannot connect to the database {describe(db_url)}: {_without_password(first, db_url)}"
        ) from None
    try:
        yield conn
    finally:
        conn.close()
