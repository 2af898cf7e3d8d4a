"""Table-event triggers (sql/*_hooks.sql): Supabase's webhook payload per event, same transaction
as the row change, one set-based enqueue per bulk statement, conditions, in-place changes,
removal that leaves the user's table as it was, and rights (any role writing the table can
enqueue)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from harness.engine import Engine
from harness.toolchain import REPO
from supaqueue.providers.trigger.spec import MAX_NAME_LENGTH

TABLE = "public.orders"


@pytest.fixture
def orders(engine: Engine) -> str:
    engine.conn.execute(
        'create table public.orders (id bigint primary key, status text, "Total €" numeric)'
    )
    return TABLE


def set_trigger(
    engine: Engine,
    queue: str,
    events: list[str],
    when: str | None = None,
    trigger_id: str | None = None,
    name: str = "new-orders",
    table: tuple[str, str] = ("public", "orders"),
) -> str:
    return str(
        engine.one(
            "select supaqueue.set_table_trigger(%s, %s, %s, %s, %s, %s, %s)::text",
            (trigger_id, name, queue, table[0], table[1], events, when),
        )
    )


def payloads(engine: Engine) -> list[dict[str, Any]]:
    rows = engine.conn.execute(
        "select payload from supaqueue.job order by created_at, payload->>'type',"
        " payload->'record'->>'id', payload->'old_record'->>'id'"
    ).fetchall()
    return [row["payload"] for row in rows]


def our_triggers(engine: Engine, table: str = TABLE) -> list[str]:
    rows = engine.conn.execute(
        "select tgname from pg_trigger where not tgisinternal and tgrelid = %s::regclass"
        " order by tgname",
        (table,),
    ).fetchall()
    return [row["tgname"] for row in rows]


def hook_functions(engine: Engine) -> int:
    return int(engine.one("select count(*) from pg_proc where proname like 'tg_hook_%%'"))


def test_payload_is_supabase_webhook_shape_for_each_event(engine: Engine, orders: str) -> None:
    q = engine.queue(workers=0)
    set_trigger(engine, q, ["INSERT", "UPDATE", "DELETE"])
    assert our_triggers(engine) == [
        "supaqueue_new-orders_delete",
        "supaqueue_new-orders_insert",
        "supaqueue_new-orders_update",
        "supaqueue_new-orders_update_flush",
    ]
    engine.conn.execute("insert into public.orders values (1, 'new', 9.5)")
    engine.conn.execute("update public.orders set status = 'paid' where id = 1")
    engine.conn.execute("delete from public.orders where id = 1")
    row = {"id": 1, "status": "new", "Total €": 9.5}
    paid = {**row, "status": "paid"}
    common = {"table": "orders", "schema": "public"}
    assert payloads(engine) == [
        {"type": "INSERT", **common, "record": row, "old_record": None},
        {"type": "UPDATE", **common, "record": paid, "old_record": row},
        {"type": "DELETE", **common, "record": None, "old_record": paid},
    ]
    assert engine.one("select count(distinct queue) from supaqueue.job") == 1
    assert engine.one("select min(queue::text) from supaqueue.job") == q


def test_jobs_roll_back_with_the_row_change(engine: Engine, orders: str) -> None:
    q = engine.queue(workers=0)
    set_trigger(engine, q, ["INSERT"])
    with psycopg.connect(engine.dsn) as conn:
        conn.execute("insert into public.orders values (1, 'new', 1)")
        assert conn.execute("select count(*) from supaqueue.job").fetchone() == (1,)
        conn.rollback()
    assert engine.one("select count(*) from supaqueue.job") == 0
    with psycopg.connect(engine.dsn) as conn:
        conn.execute("insert into public.orders values (2, 'new', 1)")
        conn.commit()
    assert engine.one("select count(*) from supaqueue.job") == 1


def test_bulk_insert_is_one_set_based_enqueue(engine: Engine, orders: str) -> None:
    q = engine.queue(workers=1)
    set_trigger(engine, q, ["INSERT", "DELETE"], when=None)
    # statement-level (tgtype bit 0 unset), reading the statement's transition table
    shape = engine.conn.execute(
        "select tgname, tgtype & 1 as per_row, tgnewtable, tgoldtable from pg_trigger"
        " where tgrelid = 'public.orders'::regclass and not tgisinternal order by tgname"
    ).fetchall()
    assert [tuple(row.values()) for row in shape] == [
        ("supaqueue_new-orders_delete", 0, None, "supaqueue_old_rows"),
        ("supaqueue_new-orders_insert", 0, "supaqueue_new_rows", None),
    ]
    engine.conn.execute(
        "insert into public.orders select g, 'new', g from generate_series(1, 5000) g"
    )
    assert engine.one("select count(*) from supaqueue.job") == 5000
    # One dispatch for the whole statement: the single worker holds exactly one job.
    assert engine.in_flight(q) == 1
    engine.conn.execute("delete from public.orders where id <= 100")
    assert engine.one("select count(*) from supaqueue.job where payload->>'type' = 'DELETE'") == 100


def test_when_condition_filters_rows(engine: Engine, orders: str) -> None:
    q = engine.queue(workers=0)
    set_trigger(engine, q, ["INSERT", "UPDATE"], when="NEW.status = 'paid'")
    engine.conn.execute("insert into public.orders values (1, 'new', 1), (2, 'paid', 2)")
    engine.conn.execute("update public.orders set status = 'paid' where id = 1")
    engine.conn.execute("update public.orders set status = 'refunded' where id = 2")
    got = [(p["type"], p["record"]["id"]) for p in payloads(engine)]
    assert got == [("INSERT", 2), ("UPDATE", 1)]

    # OLD and NEW together on UPDATE
    set_trigger(
        engine,
        q,
        ["UPDATE"],
        when="OLD.status is distinct from NEW.status",
        trigger_id=engine.one("select id::text from supaqueue.table_trigger"),
    )
    engine.conn.execute("delete from supaqueue.job")
    engine.conn.execute("update public.orders set status = status")  # no change: no job
    engine.conn.execute("update public.orders set status = 'done' where id = 1")
    assert [(p["type"], p["record"]["id"]) for p in payloads(engine)] == [("UPDATE", 1)]


@pytest.mark.parametrize(
    ("events", "when", "says"),
    [
        (["DELETE"], "NEW.status = 'paid'", 'missing FROM-clause entry for table "new"'),
        (["INSERT"], "OLD.id > 1", 'missing FROM-clause entry for table "old"'),
        (["INSERT"], "NEW.nope = 1", "column new.nope does not exist"),
        (["INSERT"], "NEW.id", "cannot cast type bigint to boolean"),
    ],
)
def test_invalid_condition_installs_nothing(
    engine: Engine, orders: str, events: list[str], when: str, says: str
) -> None:
    q = engine.queue(workers=0)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        set_trigger(engine, q, events, when=when)
    message = caught.value.diag.message_primary or ""
    assert message.startswith("when: ") and says in message
    assert our_triggers(engine) == []
    assert engine.one("select count(*) from supaqueue.table_trigger") == 0
    assert hook_functions(engine) == 0


def test_missing_table_is_refused(engine: Engine) -> None:
    q = engine.queue(workers=0)
    with pytest.raises(psycopg.errors.UndefinedTable, match=r"table: public\.nope does not exist"):
        set_trigger(engine, q, ["INSERT"], table=("public", "nope"))
    assert engine.one("select count(*) from supaqueue.table_trigger") == 0


def test_changes_in_place_then_removal_leaves_the_table_as_it_was(
    engine: Engine, orders: str
) -> None:
    q = engine.queue(workers=0)
    other = engine.queue(workers=0)
    engine.conn.execute("create table public.invoices (id int)")
    engine.conn.execute("insert into public.orders values (1, 'new', 1)")
    before = engine.one("select count(*) from pg_trigger where tgrelid = 'public.orders'::regclass")
    trigger = set_trigger(engine, q, ["INSERT", "UPDATE"])
    # other events, another queue: same id, old triggers gone
    assert set_trigger(engine, other, ["DELETE"], trigger_id=trigger) == trigger
    assert our_triggers(engine) == ["supaqueue_new-orders_delete"]
    engine.conn.execute("delete from public.orders")
    assert engine.one("select queue::text from supaqueue.job") == other
    # another table: the triggers move
    set_trigger(engine, other, ["INSERT"], trigger_id=trigger, table=("public", "invoices"))
    assert our_triggers(engine) == []
    assert our_triggers(engine, "public.invoices") == ["supaqueue_new-orders_insert"]
    assert hook_functions(engine) == 1

    assert engine.one("select supaqueue.drop_table_trigger(%s)", (trigger,)) is True
    assert our_triggers(engine, "public.invoices") == []
    assert hook_functions(engine) == 0
    assert (
        engine.one("select count(*) from pg_trigger where tgrelid = 'public.orders'::regclass")
        == before
    )
    assert engine.one("select to_regclass('public.invoices') is not null") is True
    assert engine.one("select supaqueue.drop_table_trigger(%s)", (trigger,)) is False


@pytest.mark.parametrize("way", ["function", "script"])
def test_uninstall_removes_our_triggers_and_keeps_the_table(
    engine: Engine, orders: str, way: str
) -> None:
    """Our triggers are supaqueue's, not objects of the user's that depend on it: they do not
    stop an uninstall (nor a destroy), and go with the schema; a user's own trigger running a
    supaqueue function still does."""
    q = engine.queue(workers=0)
    set_trigger(engine, q, ["INSERT", "UPDATE", "DELETE"])
    engine.conn.execute("insert into public.orders values (1, 'new', 1)")
    assert engine.conn.execute("select * from supaqueue.external_dependents()").fetchall() == []
    # a trigger of the user's running one of our functions is theirs: it is listed
    engine.conn.execute(
        "create trigger users_own after insert on public.orders"
        ' execute function supaqueue."tg_hook_new-orders_insert"()'
    )
    listed = engine.conn.execute("select * from supaqueue.external_dependents()").fetchall()
    assert [tuple(row.values()) for row in listed] == [("trigger", "users_own on public.orders")]
    engine.conn.execute("drop trigger users_own on public.orders")
    if way == "function":
        engine.conn.execute("select supaqueue.uninstall()")
    else:
        engine.conn.execute((REPO / "supaqueue" / "sql" / "uninstall.sql").read_text())
    assert engine.one("select to_regnamespace('supaqueue') is null") is True
    assert our_triggers(engine) == []
    engine.conn.execute("insert into public.orders values (2, 'new', 2)")
    assert engine.one("select count(*) from public.orders") == 2


def test_a_queue_fed_by_a_trigger_cannot_be_dropped(engine: Engine, orders: str) -> None:
    q = engine.queue(workers=0)
    set_trigger(engine, q, ["INSERT"])
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="table_trigger"):
        engine.conn.execute("select supaqueue.drop_queue(%s)", (q,))
    engine.conn.execute("insert into public.orders values (1, 'new', 1)")  # still works
    assert engine.one("select count(*) from supaqueue.job") == 1


def test_any_role_writing_the_table_enqueues(engine: Engine, orders: str) -> None:
    """The trigger function runs as its owner: `authenticated` has no right on supaqueue but
    its writes to the user's table still enqueue (and it cannot read the jobs)."""
    q = engine.queue(workers=0)
    set_trigger(engine, q, ["INSERT"], when="NEW.status = 'paid'")
    engine.conn.execute("grant insert, select on public.orders to authenticated")
    with psycopg.connect(engine.dsn) as conn:
        conn.execute("set role authenticated")
        conn.execute("insert into public.orders values (1, 'paid', 1)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select count(*) from supaqueue.job")
        conn.rollback()
        conn.execute("set role authenticated")
        conn.execute("insert into public.orders values (2, 'paid', 1)")
        conn.commit()
    assert [p["record"]["id"] for p in payloads(engine)] == [2]


def test_condition_runs_with_an_empty_search_path(engine: Engine, orders: str) -> None:
    """A function outside pg_catalog must be schema-qualified: refused at install, not at the
    first insert (which would fail the user's write)."""
    q = engine.queue(workers=0)
    engine.conn.execute(
        "create function public.is_big(numeric) returns boolean language sql as 'select $1 > 10'"
    )
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="is_big"):
        set_trigger(engine, q, ["INSERT"], when='is_big(NEW."Total €")')
    set_trigger(engine, q, ["INSERT"], when='public.is_big(NEW."Total €")')
    engine.conn.execute("insert into public.orders values (1, 'new', 5), (2, 'new', 50)")
    assert [p["record"]["id"] for p in payloads(engine)] == [2]


def test_installed_and_used_by_a_non_superuser_owner(pg_dsn: str) -> None:
    """As on hosted Supabase (and the local stack after #16): the installer is not a superuser;
    it owns supaqueue and the tables it created, and that is enough to install a trigger; a table
    it does not own is refused by PostgreSQL itself."""
    from supaqueue import migrations

    role = f"owner_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"create role {role} nosuperuser login password '{password}'")
        admin.execute(f"grant create on database {admin.info.dbname} to {role}")
        # the memberships `postgres` has on Supabase
        admin.execute(f"grant authenticated, anon, service_role, pg_monitor to {role}")
        admin.execute(f"grant create on schema public to {role}")
        admin.execute("create table public.not_theirs (id int)")
    dsn = f"postgresql://{role}:{password}@{pg_dsn.split('@', 1)[1]}"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrations.apply(conn, migrations.load_migrations())
            conn.execute("create table public.orders (id int primary key, status text)")
            conn.execute("grant insert on public.orders to authenticated")
            q = conn.execute(
                "insert into supaqueue.queue (name, edge_function_name) values ('q', 'f')"
                " returning id"
            ).fetchone()
            assert q is not None
            conn.execute(
                "select supaqueue.set_table_trigger(null, 't', %s, 'public', 'orders',"
                " array['INSERT'], null)",
                (q[0],),
            )
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(
                    "select supaqueue.set_table_trigger(null, 'u', %s, 'public', 'not_theirs',"
                    " array['INSERT'], null)",
                    (q[0],),
                )
            conn.execute("set role authenticated")
            conn.execute("insert into public.orders values (1, 'new')")
            conn.execute("reset role")
            assert conn.execute("select count(*) from supaqueue.job").fetchone() == (1,)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            # `postgres` is no superuser either: it takes the owner's rights to clean up.
            admin.execute(f"grant {role} to current_user")
            admin.execute("drop schema if exists supaqueue cascade")
            admin.execute("drop table if exists public.orders, public.not_theirs")
            admin.execute(f"revoke create on database {admin.info.dbname} from {role}")
            admin.execute(f"revoke create on schema public from {role}")
            admin.execute(f"drop owned by {role}")
            admin.execute(f"drop role {role}")


def test_bulk_update_pairs_each_row_and_enqueues_once_per_statement(
    engine: Engine, orders: str
) -> None:
    """UPDATE: each row's old and new values captured by a row-level trigger, enqueued by one
    statement-level INSERT; pairs stay right even when the key changes; nothing is left over."""
    q = engine.queue(workers=1)
    engine.conn.execute(
        "insert into public.orders select g, 'new', g from generate_series(1, 3000) g"
    )
    set_trigger(engine, q, ["UPDATE"], when="NEW.status <> OLD.status")
    engine.conn.execute("update public.orders set status = 'paid', id = id + 10000")
    rows = engine.conn.execute(
        "select count(*) as jobs,"
        " count(*) filter (where (payload->'record'->>'id')::int"
        "                         = (payload->'old_record'->>'id')::int + 10000"
        "                     and payload->'record'->>'status' = 'paid'"
        "                     and payload->'old_record'->>'status' = 'new') as paired"
        " from supaqueue.job"
    ).fetchone()
    assert rows == {"jobs": 3000, "paired": 3000}
    assert engine.in_flight(q) == 1  # one dispatch for the statement
    assert engine.one("select count(*) from supaqueue.table_trigger_buffer") == 0
    engine.conn.execute("update public.orders set status = status")  # WHEN filters all
    assert engine.one("select count(*) from supaqueue.job") == 3000


def test_update_rolled_back_to_a_savepoint_enqueues_nothing(engine: Engine, orders: str) -> None:
    q = engine.queue(workers=0)
    engine.conn.execute("insert into public.orders values (1, 'new', 1), (2, 'new', 2)")
    set_trigger(engine, q, ["UPDATE"])
    with psycopg.connect(engine.dsn) as conn:
        conn.execute("savepoint s")
        conn.execute("update public.orders set status = 'x' where id = 1")
        conn.execute("rollback to savepoint s")
        conn.execute("update public.orders set status = 'y' where id = 2")
        conn.commit()
    assert [(p["record"]["id"], p["record"]["status"]) for p in payloads(engine)] == [(2, "y")]
    assert engine.one("select count(*) from supaqueue.table_trigger_buffer") == 0


def test_concurrent_updates_each_enqueue_their_own_rows(engine: Engine, orders: str) -> None:
    """The capture buffer is shared: a statement's flush must take only its own rows. T1's
    rows sit captured (a slow trigger of the user's runs after ours) while T2 updates and
    flushes; each transaction's rows become jobs once, with the right pairs."""
    q = engine.queue(workers=0)
    engine.conn.execute("insert into public.orders select g, 'new', g from generate_series(1, 4) g")
    set_trigger(engine, q, ["UPDATE"])
    engine.conn.execute(
        "create function public.slow() returns trigger language plpgsql as"
        " $$ begin perform pg_sleep(0.5); return null; end $$"
    )
    # AFTER ROW triggers fire in name order: ours (supaqueue_…) first, then this one
    engine.conn.execute(
        "create trigger zz_slow after update on public.orders for each row"
        " when (NEW.id <= 2) execute function public.slow()"
    )
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with psycopg.connect(engine.dsn, autocommit=True) as conn:
                conn.execute("update public.orders set status = 't1' where id <= 2")
        except BaseException as exc:  # reported below
            errors.append(exc)

    t1 = threading.Thread(target=first)
    t1.start()
    deadline = time.monotonic() + 30
    # T1 is in the slow trigger: our capture of its first row already ran (uncommitted rows,
    # invisible here and to T2)
    while not engine.one(
        "select count(*) from pg_stat_activity where wait_event = 'PgSleep'"
        " and query like 'update public.orders set status = ''t1''%%'"
    ):
        assert time.monotonic() < deadline, "T1 never reached its slow trigger"
        time.sleep(0.01)
    engine.conn.execute("update public.orders set status = 't2' where id > 2")
    assert sorted((p["record"]["id"], p["record"]["status"]) for p in payloads(engine)) == [
        (3, "t2"),
        (4, "t2"),
    ]
    t1.join(timeout=60)
    assert not t1.is_alive() and errors == []
    got = sorted(
        (p["record"]["id"], p["record"]["status"], p["old_record"]["status"])
        for p in payloads(engine)
    )
    assert got == [(1, "t1", "new"), (2, "t1", "new"), (3, "t2", "new"), (4, "t2", "new")]
    assert engine.one("select count(*) from supaqueue.table_trigger_buffer") == 0


def test_name_length_limit_is_what_the_database_can_name(engine: Engine, orders: str) -> None:
    """MAX_NAME_LENGTH (supaqueue/providers/trigger/spec.py) is the longest name whose
    longest object name ('supaqueue_<name>_update_flush') fits PostgreSQL's 63 bytes."""
    q = engine.queue(workers=0)
    longest = "t" * MAX_NAME_LENGTH
    set_trigger(engine, q, ["INSERT", "UPDATE", "DELETE"], name=longest)
    assert len(our_triggers(engine)) == 4
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="too long for a trigger name"):
        set_trigger(engine, q, ["UPDATE"], name=longest + "t")


def test_a_row_over_the_payload_limit_fails_the_statement_not_silently(
    engine: Engine, orders: str
) -> None:
    """A job is never dropped: a row whose webhook payload exceeds the job payload limit makes
    the user's statement fail with supaqueue's message, and nothing of it is written."""
    q = engine.queue(workers=0)
    set_trigger(engine, q, ["INSERT"])
    limit = engine.one("select supaqueue.max_payload_bytes()")
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="over the limit of"):
        engine.conn.execute(
            "insert into public.orders values (1, 'new', 1), (2, repeat('x', %s), 2)", (limit,)
        )
    assert engine.one("select count(*) from public.orders") == 0
    assert engine.one("select count(*) from supaqueue.job") == 0


def test_a_condition_broken_by_a_later_schema_change_names_the_trigger(
    engine: Engine, orders: str
) -> None:
    """PostgreSQL lets the user drop a column a statement-level condition uses: the next write
    fails (never a silently lost event) with a message naming our trigger and what to do."""
    q = engine.queue(workers=0)
    set_trigger(engine, q, ["INSERT"], when="NEW.status = 'paid'")
    engine.conn.execute("alter table public.orders drop column status")
    with pytest.raises(psycopg.errors.UndefinedColumn) as caught:
        engine.conn.execute("insert into public.orders values (1, 1)")
    diag = caught.value.diag
    assert (diag.message_primary or "").startswith(
        "supaqueue trigger new-orders (INSERT on public.orders): its condition fails:"
    )
    assert "pulumi up" in (diag.message_hint or "")
    assert engine.one("select count(*) from public.orders") == 0
