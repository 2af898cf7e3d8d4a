"""Postgres connections for the dynamic providers, with errors that never show the password."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo

from components.errors import DatabaseError

CONNECT_TIMEOUT_SECONDS = 10


def describe(db_url: str) -> str:
    """`user@host:port/dbname` of a connection string, for messages (no password)."""
    try:
        parts = conninfo.conninfo_to_dict(db_url)
    except psycopg.ProgrammingError:
        return "<unparseable database URL>"
    user = parts.get("user", "?")
    host = parts.get("host", "?")
    port = parts.get("port", "5432")
    dbname = parts.get("dbname", user)
    return f"{user}@{host}:{port}/{dbname}"


def check_url(db_url: Any) -> str | None:
    """Why a database URL is unusable, or None when it parses."""
    if not isinstance(db_url, str) or not db_url.strip():
        return "is empty"
    if not db_url.startswith(("postgresql://", "postgres://")):
        return "is not a Postgres connection URL (postgresql://user:password@host:port/db)"
    try:
        conninfo.conninfo_to_dict(db_url)
    except psycopg.ProgrammingError:
        return "is not a Postgres connection URL (postgresql://user:password@host:port/db)"
    return None


def sql_message(exc: psycopg.Error) -> str:
    """The server's own message (and hint) of a failed statement."""
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    if diag.message_hint:
        message += f" (hint: {diag.message_hint})"
    return message


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
    except psycopg.OperationalError as exc:
        # psycopg's message can echo the conninfo; keep only its first line, which does not.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
        raise DatabaseError(f"cannot connect to the database {describe(db_url)}: {first}") from None
    try:
        yield conn
    finally:
        conn.close()
