"""The README's example of what `pulumi preview` warns ("All or nothing"): each line is one the
preflight makes from the same situation (a cut in workers under calls in flight, a lower
max_attempts, a removal that discards, an Edge Function not deployed), word for word where the
README does not elide with "…"."""

from __future__ import annotations

from typing import Any

import psycopg

from supaqueue.providers import plan
from supaqueue.providers.preflight import function_warnings, warnings
from supaqueue.providers.queue import QueueProvider
from tests.providers.conftest import STACK, STACK_ID
from tests.providers.test_plan import execute, ours, preflight, spec
from tests.support.readme import block

KEY = (
    "warning: supaqueue: queue 'emails': workers 10 → 2: the 8 calls in flight finish first "
    "(none is cut short; …); a new call starts only when one of the 2 remaining worker(s) is free"
)


def shown_as(readme_line: str, shown: str) -> bool:
    """`shown` is the README's line, its "…" standing for any text."""
    first, *rest = readme_line.split("…")
    if not shown.startswith(first):
        return False
    at = len(first)
    for fragment in rest:
        found = shown.find(fragment, at)
        if found < 0:
            return False
        at = found + len(fragment)
    return readme_line.endswith("…") or shown.endswith(rest[-1] if rest else first)


def test_the_warnings_are_what_preview_says(
    installed: dict[str, Any], db_url: str, api: dict[str, str]
) -> None:
    emails = (
        QueueProvider()
        .create(ours(db_url, name="emails", workers=10, max_attempts=5, paused=False))
        .id
    )
    old = QueueProvider().create(ours(db_url, name="old", discard_unfinished_on_delete=True)).id
    # 8 calls in flight; 12 jobs whose next failure is final under 3 attempts (not under 5)
    execute(
        db_url,
        "insert into supaqueue.job (queue, payload, status, attempts)"
        " select %s, '{}', 'in_progress', 1 from generate_series(1, 8)",
        emails,
    )
    execute(
        db_url,
        "insert into supaqueue.job (queue, payload, attempts)"
        " select %s, '{}', 2 from generate_series(1, 12)",
        emails,
    )
    execute(
        db_url,
        "insert into supaqueue.job (queue, payload) select %s, '{}' from generate_series(1, 43)",
        old,
    )
    olds = preflight(
        db_url,
        {
            "emails": spec(workers=10, max_attempts=5),
            "old": spec(discard_unfinished_on_delete=True),
        },
    )
    news = preflight(
        db_url,
        {
            "emails": spec(workers=2, max_attempts=3),
            "thumbs": spec(edge_function_name="thumbnailer"),
        },
        **api,
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        found = plan.up_plan(conn, plan.Stack(STACK, STACK_ID), olds, news)
    assert found.blockers == []
    # the engine prints each as `warning: <message>` (providers/diagnostics.py)
    shown = [f"warning: {m}" for m in warnings(found.effects + function_warnings(news))]
    readme = block(KEY).text.replace("<ref>", api["project_ref"]).splitlines()
    assert len(readme) == 4
    for line in readme:
        assert any(shown_as(line, s) for s in shown), "\n".join([line, "not in:", *shown])


def test_an_elision_stands_for_text_not_for_a_difference() -> None:
    said = "warning: supaqueue: queue 'a': workers 3 → 1: the 2 calls in flight finish first (x)"
    assert shown_as("warning: supaqueue: queue 'a': workers 3 → 1: the 2 calls …", said)
    assert not shown_as("warning: supaqueue: queue 'a': workers 4 → 1: the 2 calls …", said)
    assert shown_as(said, said) and not shown_as(said[:-1], said)
    assert not shown_as("warning: supaqueue: … in flight (y)", said)
