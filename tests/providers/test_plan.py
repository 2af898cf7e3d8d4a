"""All-or-nothing plans at the providers (issue 22 item 1): the preflight's check and the
destroy guard's delete find, before anything changes, what a later delete would refuse, and the
preflight says what an update does to live work. The real engine's order: tests/e2e/
test_all_or_nothing.py."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from supaqueue.providers.destroy_guard import DestroyGuardProvider
from supaqueue.providers.preflight import PLAN, PreflightProvider
from supaqueue.providers.queue import QueueProvider
from supaqueue.providers.queue.spec import compact_statuses, expand_statuses
from tests.providers.conftest import STACK, STACK_ID, failure_text, sql_value
from tests.providers.test_queue_provider import declare


def execute(db_url: str, statement: str, *params: Any) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(statement, params)


def spec(**settings: Any) -> dict[str, Any]:
    """A queue as the component gives it to the preflight (plan.QUEUE_KEYS)."""
    return {
        "edge_function_name": "send-email",
        "workers": 1,
        "max_attempts": 3,
        "paused": False,
        "discard_unfinished_on_delete": False,
        **settings,
    }


def preflight(db_url: str, queues: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "db_url": db_url,
        "owner": OWNER,
        "queues": queues,
        "triggers": {},
        "schedules": {},
        "functions": [],
        **more,
    }


def guard_props(db_url: str) -> dict[str, Any]:
    return {"db_url": db_url, "owner": OWNER, "drop_dependents": False}


# The stack that installed supaqueue (the `installed` fixture) also declares the queues here.
OWNER = {"stack": STACK, "stack_id": STACK_ID}


def ours(db_url: str, **settings: Any) -> dict[str, Any]:
    """A queue of the stack OWNER, as the program declares it (test_queue_provider.declare)."""
    declared = {"paused": True, "max_attempts": 5, "workers": 3, **settings}
    props = {**declare(db_url, **declared), "owner": OWNER}
    checked = QueueProvider().check({"name": props["name"]}, props)
    assert checked.failures == []
    return checked.inputs


@pytest.fixture
def queue(installed: dict[str, Any], db_url: str) -> dict[str, Any]:
    """The queue 'emails' of the stack QUEUE_OWNER, paused, holding 3 pending jobs."""
    created = QueueProvider().create(ours(db_url))
    execute(
        db_url,
        "insert into supaqueue.job (queue, payload, attempts)"
        " select %s, '{}', g from generate_series(1, 3) g",
        created.id,
    )
    return {"id": created.id, "outs": created.outs or {}}


def test_the_guard_refuses_a_destroy_that_would_stop_at_a_queue(
    queue: dict[str, Any], db_url: str
) -> None:
    guard = DestroyGuardProvider()
    text = failure_text(lambda: guard.delete("g", guard_props(db_url)))
    assert "supaqueue was not removed, and nothing else was" in text
    assert "would remove queue 'emails' with 3 pending jobs, paused by the stack" in text
    assert "discard_unfinished_on_delete: true" in text
    assert "cancel them (`supaqueue cancel --queue emails --pending`)" in text
    assert "DestroyRefusedError: " in text and "supaqueue." not in text

    # Declared discardable: the database records it, the guard lets the destroy go on.
    news = ours(db_url, discard_unfinished_on_delete=True)
    QueueProvider().update(queue["id"], queue["outs"], news)
    assert sql_value(
        db_url,
        "select discard_unfinished_on_delete from supaqueue.queue where id = %s",
        queue["id"],
    )
    guard.delete("g", guard_props(db_url))

    # A queue no stack owns (made in SQL) holding a job: its jobs would go with the schema.
    execute(db_url, "insert into supaqueue.queue (name, edge_function_name) values ('raw', 'f')")
    execute(
        db_url,
        "insert into supaqueue.job (queue) select id from supaqueue.queue where name = 'raw'",
    )
    text = failure_text(lambda: guard.delete("g", guard_props(db_url)))
    assert "queue 'raw'" in text and "has no owner" in text and "drop_queue" in text


def test_a_queue_diff_writes_a_discard_flag_the_database_lacks(
    queue: dict[str, Any], db_url: str
) -> None:
    """An installation upgraded to sql/0022 starts with false: the next `up` writes the
    stack's declared flag, so the checks read what the stack says."""
    news = ours(db_url, discard_unfinished_on_delete=True)
    outs = QueueProvider().update(queue["id"], queue["outs"], news).outs or {}
    assert QueueProvider().diff(queue["id"], outs, news).changes is False
    execute(db_url, "update supaqueue.queue set discard_unfinished_on_delete = false")
    assert QueueProvider().diff(queue["id"], outs, news).changes is True


def test_the_preflight_refuses_removing_a_queue_with_jobs(
    queue: dict[str, Any], db_url: str
) -> None:
    provider = PreflightProvider()
    olds = preflight(db_url, {"emails": spec()}, triggers={"paid": "emails"})
    news = preflight(db_url, {})
    checked = provider.check(olds, news)
    (failure,) = checked.failures
    assert failure.property == PLAN
    assert "nothing was changed" in failure.reason
    assert "removes queue 'emails' with 3 pending jobs, paused by the stack" in failure.reason
    # A removal not seen through is looked at again by the next check (an `up` that stopped).
    assert checked.inputs["removing"] == {"emails": {"discard_unfinished_on_delete": False}}
    again = provider.check({**news, "removing": checked.inputs["removing"]}, news)
    assert len(again.failures) == 1
    # Nothing removed: nothing to say.
    assert provider.check(olds, olds).failures == []
    # Another stack that declared the name (its queue's check refused it: never in its state)
    # and takes it back out is not removing anything.
    other = {"stack": "supaqueue/prod", "stack_id": "prod-id"}
    assert provider.check({**olds, "owner": other}, {**news, "owner": other}).failures == []
    assert provider.diff("p", olds, news).changes is False  # never an update

    # A schedule of no queue of this stack feeds it: its foreign key would refuse the delete.
    execute(
        db_url,
        "update supaqueue.queue set discard_unfinished_on_delete = true where id = %s",
        queue["id"],
    )
    execute(
        db_url,
        "insert into supaqueue.schedule (name, queue, cron, next_run_at)"
        " values ('elsewhere', %s, '0 3 * * *', now() + interval '1 day')",
        queue["id"],
    )
    (failure,) = provider.check(olds, news).failures
    assert "schedule 'elsewhere'" in failure.reason and "3 pending" not in failure.reason

    # A queue made in SQL names it as its dead-letter queue: its foreign key refuses too.
    execute(db_url, "delete from supaqueue.schedule")
    execute(
        db_url,
        "insert into supaqueue.queue (name, edge_function_name, dead_letter_queue)"
        " values ('sender', 'f', %s)",
        queue["id"],
    )
    (failure,) = provider.check(olds, news).failures
    assert "queue(s) 'sender' (not declared by this stack) name as their dead_letter_queue" in (
        failure.reason
    )


def test_the_preflight_says_what_an_update_does_to_live_work(
    queue: dict[str, Any], db_url: str
) -> None:
    from supaqueue.providers import plan

    olds = preflight(db_url, {"emails": spec(workers=3, max_attempts=5, paused=True)})
    news = preflight(db_url, {"emails": spec(workers=3, max_attempts=3, paused=False)})
    with psycopg.connect(db_url, autocommit=True) as conn:
        found = plan.up_plan(conn, plan.Stack(STACK, STACK_ID), olds, news)
    assert found.blockers == []
    # attempts 1, 2, 3: the next failure of the jobs with 2 and 3 is final under 3, not under 5
    assert any(
        "max_attempts 5 → 3: 2 unfinished job(s) have already used 2 or more attempts" in e
        for e in found.effects
    ), found.effects
    assert any("resumed by the stack: 3 pending job(s): they start now" in e for e in found.effects)
    # down to 1: every unfinished job is exposed, said plainly (was "already used 0 or more")
    news = preflight(db_url, {"emails": spec(workers=3, max_attempts=1, paused=True)})
    with psycopg.connect(db_url, autocommit=True) as conn:
        found = plan.up_plan(conn, plan.Stack(STACK, STACK_ID), olds, news)
    assert any(
        "max_attempts 5 → 1: no retry any more: 3 unfinished job(s): each fails for good" in e
        for e in found.effects
    ), found.effects
    assert not any("0 or more" in e for e in found.effects), found.effects


def test_statuses_are_shown_compactly_with_the_same_meaning() -> None:
    default = [status for status in range(400, 500) if status not in (408, 429)]
    assert compact_statuses(default) == "400-407,409-428,430-499"
    assert expand_statuses("400-407,409-428,430-499") == default
    assert compact_statuses([503, 500, 500, 502]) == "500,502-503"
    assert expand_statuses("") == [] and compact_statuses([]) == ""
    assert expand_statuses("499-400") is None and expand_statuses("4xx") is None


def test_a_trigger_on_a_renamed_table_stops_the_plan_first(
    installed: dict[str, Any], db_url: str
) -> None:
    """Its delete would refuse (our table triggers moved with the table): removing it, or
    destroying, is refused before the first change."""
    from supaqueue.providers.trigger import TriggerProvider

    execute(db_url, "drop table if exists public.plan_orders, public.plan_orders_renamed")
    execute(db_url, "create table public.plan_orders (id int primary key)")
    try:
        created = QueueProvider().create(ours(db_url, name="fed"))
        trigger = {"db_url": db_url, "name": "plan-orders", "table": "public.plan_orders",
                   "events": ["INSERT"], "queue_id": created.id, "when": None}  # fmt: skip
        checked = TriggerProvider().check({}, {**trigger, "trigger_id": None})
        assert checked.failures == []
        TriggerProvider().create(dict(checked.inputs))
        execute(db_url, "alter table public.plan_orders rename to plan_orders_renamed")
        advice = "which was renamed to plan_orders_renamed"

        olds = preflight(db_url, {"fed": spec()}, triggers={"plan-orders": "fed"})
        (failure,) = PreflightProvider().check(olds, {**olds, "triggers": {}}).failures
        assert advice in failure.reason and "Rename it back" in failure.reason
        text = failure_text(lambda: DestroyGuardProvider().delete("g", guard_props(db_url)))
        assert advice in text and "nothing else was" in text
    finally:
        execute(db_url, "drop table if exists public.plan_orders, public.plan_orders_renamed")
