"""Objects in a stack's state that were dropped in the database behind Pulumi's back.

Their `diff` fails rather than showing them "unchanged" (preview and `up` stop, changing
nothing), with a message naming what is gone and what to run. supaqueue never silently makes
them again: what was dropped by hand may have been dropped on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from supaqueue.clients.postgres import check_url, connect
from supaqueue.errors import DatabaseError


def diff_url(olds: dict[str, Any], news: dict[str, Any]) -> str | None:
    """The database URL a `diff` reads with (None: none usable yet): the new one where known,
    as the old one may hold a password since rotated."""
    url = news.get("db_url") if isinstance(news.get("db_url"), str) else olds.get("db_url")
    return url if isinstance(url, str) and not check_url(url) else None


def fail_if_vanished(
    olds: dict[str, Any],
    news: dict[str, Any],
    problem: Callable[[psycopg.Connection], str | None],
) -> None:
    """A `diff`'s first step: raise what `problem` finds gone (nothing is changed), read with
    `diff_url`; no usable URL yet (e.g. unknown at preview): nothing to read."""
    if db_url := diff_url(olds, news):
        with connect(db_url) as conn:
            if found := problem(conn):
                raise DatabaseError(found)


def refresh_advice(again: str, forgets: str, keep_gone: str) -> str:
    """What to run, in the wording of the vanished queue and installation: refresh, then up;
    or remove the resource from the stack."""
    return (
        f"nothing was changed. To {again}, run `pulumi refresh` ({forgets}), then `pulumi up`, "
        f"or both at once with `pulumi up --refresh`. To keep it gone, remove it from the stack "
        f"({keep_gone})."
    )
