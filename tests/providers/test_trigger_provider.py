"""The table trigger resource against the real engine SQL: preview checks naming the field (the
table, the role's right, the condition: also before supaqueue is installed), create, in-place
updates (same id), drift seen by read, a name taken outside the state, delete that leaves the
user's table as it was."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from supaqueue.providers.queue import QueueProvider
from supaqueue.providers.trigger import TriggerProvider
from tests.providers.conftest import failure_text, sql_value, uninstall


@pytest.fixture
def orders(db_url: str) -> Iterator[str]:
    """A user table (made by `postgres`, as on Supabase), dropped afterwards."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("drop table if exists public.hook_orders, public.hook_invoices")
        conn.execute("create table public.hook_orders (id int primary key, status text)")
        conn.execute("create table public.hook_invoices (id int primary key)")
        conn.execute("create view public.hook_orders_view as select * from public.hook_orders")
    yield "public.hook_orders"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("drop view if exists public.hook_orders_view")
        conn.execute("drop table if exists public.hook_orders, public.hook_invoices")


def queue(db_url: str, name: str = "hooked") -> str:
    provider = QueueProvider()
    props = provider.check(
        {}, {"db_url": db_url, "name": name, "edge_function_name": "f", "paused": True}
    ).inputs
    return provider.create(props).id


def declare(db_url: str, queue_id: Any, **settings: Any) -> dict[str, Any]:
    props = {
        "db_url": db_url,
        "name": "new-orders",
        "table": "public.hook_orders",
        "events": ["insert", "UPDATE"],
        "queue_id": queue_id,
        "when": None,
        **settings,
    }
    checked = TriggerProvider().check({}, {**props, "trigger_id": None})
    assert checked.failures == [], checked.failures
    return dict(checked.inputs)


def failures(db_url: str, **settings: Any) -> dict[str, str]:
    props = {
        "db_url": db_url,
        "name": "new-orders",
        "table": "public.hook_orders",
        "events": ["INSERT"],
        "queue_id": "00000000-0000-0000-0000-000000000000",
        **settings,
    }
    found = TriggerProvider().check({}, props).failures
    return {failure.property: failure.reason for failure in found}


def triggers_on(db_url: str, table: str = "public.hook_orders") -> list[str]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select tgname from pg_trigger where not tgisinternal and tgrelid = %s::regclass"
            " order by 1",
            (table,),
        ).fetchall()
    return [row[0] for row in rows]


def test_check_names_the_field_before_supaqueue_is_installed(db_url: str, orders: str) -> None:
    uninstall(db_url)  # preview of a first `up`: only the user's tables exist
    assert failures(db_url) == {}
    assert (
        "public.nope does not exist in the database"
        in failures(db_url, table="public.nope")["table"]
    )
    assert "is a view, not a table" in failures(db_url, table="public.hook_orders_view")["table"]
    assert "schema-qualified" in failures(db_url, table="hook_orders")["table"]
    assert "cannot have supaqueue triggers" in failures(db_url, table="supaqueue.job")["table"]
    assert "'TRUNCATE' is not one of" in failures(db_url, events=["TRUNCATE"])["events"]
    assert "twice" in failures(db_url, events=["INSERT", "insert"])["events"]
    bad = failures(db_url, events=["INSERT", "DELETE"], when="NEW.status = 'paid'")["when"]
    assert "not a valid condition for DELETE on public.hook_orders" in bad
    assert 'missing FROM-clause entry for table "new"' in bad
    assert "column new.nope does not exist" in failures(db_url, when="NEW.nope = 1")["when"]
    # one expression only: a second statement is refused (and nothing of it ran)
    sneaky = failures(db_url, when="true); drop table public.hook_invoices; select (1")["when"]
    assert "cannot insert multiple commands" in sneaky
    assert sql_value(db_url, "select to_regclass('public.hook_invoices') is not null") is True
    assert "unknown key" in failures(db_url, colour="red")["colour"]
    assert sql_value(db_url, "select to_regnamespace('supaqueue') is null") is True


@pytest.mark.parametrize(
    ("events", "when", "says"),
    [
        # passed preview before, then failed at `up` (issue 21 item 4)
        (["INSERT"], "true) --", "syntax error"),
        (["UPDATE"], "true) --", "syntax error"),
        (["INSERT"], "true) or (true", "syntax error"),
        (["INSERT"], "NEW.id > 1 -- big ones", "syntax error"),
        (["UPDATE"], "NEW.id in (select id from public.hook_invoices)", "subquer"),
        (["INSERT"], "NEW.id in (select id from public.hook_invoices)", "subquer"),
    ],
)
def test_preview_checks_when_exactly_as_up_uses_it(
    db_url: str, orders: str, events: list[str], when: str, says: str
) -> None:
    """Preview (before supaqueue is installed) refuses what `up` would refuse, and changes
    nothing: the probe trigger is rolled back."""
    uninstall(db_url)
    reason = failures(db_url, events=events, when=when)["when"]
    assert f"is not a valid condition for {events[0]} on public.hook_orders" in reason
    assert "one SQL expression" in reason and says in reason, reason
    assert triggers_on(db_url) == []
    # a condition with parentheses (and a block comment) is one expression
    assert failures(db_url, events=events, when="(NEW.id > 1) or /* x */ (NEW.status = 'x')") == {}


def test_a_role_that_may_not_create_triggers_is_told_what_to_do(db_url: str, orders: str) -> None:
    """As on hosted Supabase, `postgres` is not a superuser: a table it does not own needs a
    TRIGGER grant. Checked here with a role of that kind connecting for the provider."""
    role = "hook_check_role"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"drop role if exists {role}")
        conn.execute(f"create role {role} login password 'pw-for-this-test-only'")
    try:
        host = db_url.split("@", 1)[1]
        dsn = f"postgresql://{role}:pw-for-this-test-only@{host}"
        reason = failures(dsn, table="public.hook_orders")
        assert (
            "role hook_check_role may not create triggers on public.hook_orders" in reason["table"]
        )
        assert "grant trigger on public.hook_orders to hook_check_role" in reason["table"]
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f"drop role if exists {role}")


def test_create_update_read_delete(installed: dict[str, Any], db_url: str, orders: str) -> None:
    provider = TriggerProvider()
    q = queue(db_url)
    props = declare(db_url, q)
    assert props["events"] == ["INSERT", "UPDATE"]
    created = provider.create(props)
    outs = created.outs or {}
    assert outs["trigger_id"] == created.id
    assert triggers_on(db_url) == [
        "supaqueue_new-orders_insert",
        "supaqueue_new-orders_update",
        "supaqueue_new-orders_update_flush",
    ]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into public.hook_orders values (1, 'new')")
    payload = sql_value(db_url, "select payload from supaqueue.job where queue = %s", q)
    assert payload == {
        "type": "INSERT",
        "table": "hook_orders",
        "schema": "public",
        "record": {"id": 1, "status": "new"},
        "old_record": None,
    }
    assert provider.read(created.id, outs).outs == outs

    # In place: events, condition, table, queue.
    other = queue(db_url, "hooked-2")
    news = declare(
        db_url, other, events=["DELETE"], when="OLD.id > 1", table="public.hook_invoices"
    )
    diff = provider.diff(created.id, outs, news)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(created.id, outs, news).outs or {}
    assert updated["trigger_id"] == created.id
    assert triggers_on(db_url) == []
    assert triggers_on(db_url, "public.hook_invoices") == ["supaqueue_new-orders_delete"]
    assert provider.diff(created.id, updated, news).changes is False
    assert provider.diff(created.id, updated, {**news, "name": "renamed"}).replaces == ["name"]

    # Drift: our trigger dropped behind Pulumi's back shows as a change; up puts it back.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('drop trigger "supaqueue_new-orders_delete" on public.hook_invoices')
    refreshed = provider.read(created.id, updated).outs or {}
    assert refreshed["events"] == []
    assert provider.diff(created.id, refreshed, news).changes is True
    provider.update(created.id, refreshed, news)
    assert triggers_on(db_url, "public.hook_invoices") == ["supaqueue_new-orders_delete"]

    provider.delete(created.id, updated)
    assert triggers_on(db_url, "public.hook_invoices") == []
    assert sql_value(db_url, "select count(*) from supaqueue.table_trigger") == 0
    assert sql_value(db_url, "select count(*) from public.hook_orders") == 1  # the table is intact
    assert provider.read(created.id, updated).id == ""


def test_create_refuses_what_preview_would_and_changes_nothing(
    installed: dict[str, Any], db_url: str, orders: str
) -> None:
    provider = TriggerProvider()
    q = queue(db_url)
    props = declare(db_url, q)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("alter table public.hook_orders drop column status cascade")
    text = failure_text(lambda: provider.create({**props, "when": "NEW.status = 'x'"}))
    assert "ConfigError: trigger 'new-orders': when:" in text
    assert "column new.status does not exist" in text
    assert "Traceback" not in text
    assert triggers_on(db_url) == []
    assert sql_value(db_url, "select count(*) from supaqueue.table_trigger") == 0


def test_create_of_a_name_taken_outside_the_state_says_what_to_do(
    installed: dict[str, Any], db_url: str, orders: str
) -> None:
    provider = TriggerProvider()
    q = queue(db_url)
    existing = provider.create(declare(db_url, q)).id
    text = failure_text(lambda: provider.create(declare(db_url, q)))
    assert (
        f"NameTakenError: trigger 'new-orders' already exists in the database (id {existing})"
        in text
    )
    assert f"select supaqueue.drop_table_trigger('{existing}');" in text
    assert triggers_on(db_url) == [
        "supaqueue_new-orders_insert",
        "supaqueue_new-orders_update",
        "supaqueue_new-orders_update_flush",
    ]


def test_delete_after_uninstall_is_a_no_op(
    installed: dict[str, Any], db_url: str, orders: str
) -> None:
    provider = TriggerProvider()
    created = provider.create(declare(db_url, queue(db_url)))
    uninstall(db_url)
    assert triggers_on(db_url) == []  # dropped with the schema
    provider.delete(created.id, created.outs or {})
    assert provider.read(created.id, created.outs or {}).id == ""


def functions_of(db_url: str, name: str = "new-orders") -> list[str]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "select proname from pg_proc where pronamespace = 'supaqueue'::regnamespace"
            " and proname like %s order by 1",
            (f"tg_hook_{name}_%",),
        ).fetchall()
    return [row[0] for row in rows]


def test_a_trigger_dropped_in_sql_fails_preview_saying_to_refresh(
    installed: dict[str, Any], db_url: str, orders: str
) -> None:
    provider = TriggerProvider()
    props = declare(db_url, queue(db_url))
    created = provider.create(props)
    outs = created.outs or {}
    assert provider.diff(created.id, outs, props).changes is False

    # One table trigger dropped by hand: not "unchanged".
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('drop trigger "supaqueue_new-orders_insert" on public.hook_orders')
    text = failure_text(lambda: provider.diff(created.id, outs, props))
    assert (
        f"trigger 'new-orders' ({created.id}) is in this stack's state but its table trigger(s) "
        "for INSERT on public.hook_orders are not in the database" in text
    )
    assert "`pulumi refresh`" in text and "`pulumi up --refresh`" in text
    assert "remove it from the stack" in text and "Traceback" not in text
    # What the advice leads to: refresh records what is left, up puts it back.
    refreshed = provider.read(created.id, outs).outs or {}
    assert refreshed["events"] == ["UPDATE"]
    diff = provider.diff(created.id, refreshed, props)
    assert diff.changes is True and diff.replaces == []
    outs = provider.update(created.id, refreshed, props).outs or {}
    assert len(triggers_on(db_url)) == 3

    # Its function dropped (with cascade, which drops the table trigger too): the same.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('drop function supaqueue."tg_hook_new-orders_update_flush"() cascade')
    text = failure_text(lambda: provider.diff(created.id, outs, props))
    assert "table trigger(s) for UPDATE on public.hook_orders are not in the database" in text

    # The whole trigger dropped in SQL: refresh forgets it, the next create makes it again.
    assert sql_value(db_url, "select supaqueue.drop_table_trigger(%s)", created.id) is True
    text = failure_text(lambda: provider.diff(created.id, outs, props))
    assert (
        f"trigger 'new-orders' ({created.id}) is in this stack's state but not in the database"
        in text
    )
    assert "`pulumi refresh`" in text and "Traceback" not in text
    assert provider.read(created.id, outs).id == ""
    again = provider.create(declare(db_url, props["queue_id"]))
    assert again.id != created.id and len(triggers_on(db_url)) == 3
    # Removing it from the stack instead: its delete finds nothing to do.
    sql_value(db_url, "select supaqueue.drop_table_trigger(%s)", again.id)
    provider.delete(again.id, again.outs or {})
    assert triggers_on(db_url) == [] and functions_of(db_url) == []


def test_a_trigger_whose_table_was_dropped_says_what_to_do_and_can_be_removed(
    installed: dict[str, Any], db_url: str, orders: str
) -> None:
    provider = TriggerProvider()
    q = queue(db_url)
    props = declare(db_url, q)
    created = provider.create(props)
    outs = created.outs or {}
    # Another trigger on another table, which removing this one must leave alone.
    other = provider.create(declare(db_url, q, name="invoices", table="public.hook_invoices"))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("drop view public.hook_orders_view")
        conn.execute("drop table public.hook_orders")
    assert functions_of(db_url) != []  # PostgreSQL dropped the table triggers, not our functions

    # Preview of the unchanged stack: check (first) and diff both say what happened.
    found = provider.check(props, {**props, "trigger_id": None}).failures
    assert [failure.property for failure in found] == ["table"]
    reason = found[0].reason
    assert "trigger 'new-orders' is on public.hook_orders, which no longer exists" in reason
    assert "create public.hook_orders again (or" in reason and "`pulumi refresh`" in reason
    assert "remove it from the stack" in reason
    text = failure_text(lambda: provider.diff(created.id, outs, props))
    assert "which no longer exists" in text and "Traceback" not in text
    # A first declaration of a trigger on a missing table keeps its own message.
    assert "create it first" in failures(db_url, name="fresh")["table"]

    # Removed from the stack: its delete removes only its record and functions.
    provider.delete(created.id, outs)
    assert functions_of(db_url) == []
    assert sql_value(db_url, "select count(*) from supaqueue.table_trigger") == 1
    assert triggers_on(db_url, "public.hook_invoices") == [
        "supaqueue_invoices_insert",
        "supaqueue_invoices_update",
        "supaqueue_invoices_update_flush",
    ]
    assert functions_of(db_url, "invoices") != []
    assert sql_value(db_url, "select count(*) from supaqueue.queue where id = %s", q) == 1
    provider.delete(other.id, other.outs or {})


def test_a_trigger_whose_table_was_dropped_can_move_to_another_table(
    installed: dict[str, Any], db_url: str, orders: str
) -> None:
    provider = TriggerProvider()
    q = queue(db_url)
    created = provider.create(declare(db_url, q))
    outs = created.outs or {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("drop view public.hook_orders_view")
        conn.execute("drop table public.hook_orders")
    moved = declare(db_url, q, table="public.hook_invoices")  # check: the new table is fine
    text = failure_text(lambda: provider.diff(created.id, outs, moved))
    assert "point its `table` at another table" in text and "`pulumi refresh`" in text
    # What the advice leads to: refresh, then up moves it (same id).
    refreshed = provider.read(created.id, outs).outs or {}
    assert provider.diff(created.id, refreshed, moved).changes is True
    updated = provider.update(created.id, refreshed, moved).outs or {}
    assert updated["trigger_id"] == created.id
    assert triggers_on(db_url, "public.hook_invoices") == [
        "supaqueue_new-orders_insert",
        "supaqueue_new-orders_update",
        "supaqueue_new-orders_update_flush",
    ]
    assert provider.diff(created.id, updated, moved).changes is False
    provider.delete(created.id, updated)
    assert triggers_on(db_url, "public.hook_invoices") == [] and functions_of(db_url) == []


def test_a_trigger_whose_table_was_renamed_says_to_rename_it_back(
    installed: dict[str, Any], db_url: str, orders: str
) -> None:
    provider = TriggerProvider()
    props = declare(db_url, queue(db_url))
    created = provider.create(props)
    outs = created.outs or {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("alter table public.hook_orders rename to hook_orders_renamed")
    try:
        advice = (
            "trigger 'new-orders' is on public.hook_orders, which was renamed to "
            "hook_orders_renamed (its table triggers went with it): nothing was changed. Rename "
            "it back, `alter table hook_orders_renamed rename to hook_orders;`"
        )
        assert advice in failure_text(lambda: provider.diff(created.id, outs, props))
        found = provider.check(props, {**props, "trigger_id": None}).failures
        assert [(f.property, advice in f.reason) for f in found] == [("table", True)]
        # Removing it from the stack: refused with the same advice, nothing changed.
        assert advice in failure_text(lambda: provider.delete(created.id, outs))
        assert len(triggers_on(db_url, "public.hook_orders_renamed")) == 3
        assert len(functions_of(db_url)) == 3
        # The advice works: renamed back, nothing to do.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("alter table public.hook_orders_renamed rename to hook_orders")
        assert provider.check(props, {**props, "trigger_id": None}).failures == []
        assert provider.diff(created.id, outs, props).changes is False
        provider.delete(created.id, outs)
        assert triggers_on(db_url) == [] and functions_of(db_url) == []
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("drop table if exists public.hook_orders_renamed cascade")
