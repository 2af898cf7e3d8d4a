"""Ownership (issue 15 item 0, issue 14 item 3) at the providers: a stack never adopts, changes
or destroys another stack's installation or queues; a vanished installation is never
"unchanged"; installations from before ownership records are claimed by their own stack; destroy
refuses while other stacks' queues or the user's objects depend on the schema."""

from __future__ import annotations

import functools
from typing import Any

import psycopg
import pytest
from pulumi.runtime import rpc

from supaqueue.providers import ownership
from supaqueue.providers.destroy_guard import DestroyGuardProvider
from supaqueue.providers.external_installation import ExternalInstallationProvider
from supaqueue.providers.migrations import MigrationsProvider
from supaqueue.providers.ownership_gate import OwnershipGateProvider
from supaqueue.providers.queue import QueueProvider
from supaqueue.providers.stack_identity import StackIdentityProvider
from tests.providers.conftest import (
    STACK,
    failure_text,
    migrations_props,
    sql_value,
    uninstall,
)

PROD = "supaqueue/prod"


def execute(db_url: str, statement: str, *params: Any) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(statement, params)


def snapshot(db_url: str) -> tuple[Any, ...]:
    """What an adopting stack would change: the ledger, the owner, the queues."""
    return (
        sql_value(db_url, "select max(applied_at) from supaqueue.migrations"),
        sql_value(db_url, "select stack || ':' || stack_id from supaqueue.installation_owner"),
        sql_value(db_url, "select count(*) from supaqueue.queue"),
    )


def inputs_of(outs: dict[str, Any]) -> dict[str, Any]:
    """The inputs the engine keeps in state for the schema resource (check's output)."""
    keys = ("db_url", "migrations_dir", "migrations", "repeatables", "owner", "drop_dependents")
    return {key: outs[key] for key in keys}


def queue_props(db_url: str, owner: dict[str, Any], name: str = "emails") -> dict[str, Any]:
    news = {"db_url": db_url, "name": name, "edge_function_name": "f", "owner": owner}
    checked = QueueProvider().check({}, news)
    assert checked.failures == []
    return checked.inputs


def test_a_second_stack_is_refused_at_check_and_changes_nothing(
    installed: dict[str, Any], db_url: str
) -> None:
    provider = MigrationsProvider()
    before = snapshot(db_url)
    assert before[1] == f"{STACK}:{installed['owner']['stack_id']}"
    others = [
        migrations_props(db_url, stack=PROD, stack_id="prod-id"),
        # another checkout with the same stack name (its own state, its own stack id)
        migrations_props(db_url, stack_id="other-checkout-id"),
        # a new stack's preview: its stack id is not known yet
        migrations_props(db_url, stack=PROD, stack_id=rpc.UNKNOWN),
    ]
    for props in others:
        checked = provider.check({}, props)
        (failure,) = checked.failures
        assert failure.property == "owner"
        assert f"owned by the Pulumi stack '{STACK}'" in failure.reason
        assert "nothing was changed" in failure.reason
        assert "supaqueue:installation: external" in failure.reason
        if props["owner"]["stack_id"] == rpc.UNKNOWN:
            continue
        # Even if the engine went on, create refuses before applying anything.
        inputs = checked.inputs
        text = failure_text(lambda: provider.create(inputs))  # noqa: B023 - called at once
        assert "OwnershipError" in text and f"'{STACK}'" in text and "Traceback" not in text
    assert snapshot(db_url) == before
    # The owner itself passes (its state keeps the stack id).
    again = provider.check(inputs_of(installed), migrations_props(db_url))
    assert again.failures == []
    assert again.inputs["owner"]["stack_id"] == installed["owner"]["stack_id"]


def test_a_vanished_installation_is_never_unchanged(installed: dict[str, Any], db_url: str) -> None:
    uninstall(db_url)  # behind the stack's back
    checked = MigrationsProvider().check(inputs_of(installed), migrations_props(db_url))
    (failure,) = checked.failures
    assert "not installed in the database" in failure.reason
    assert "pulumi refresh" in failure.reason
    # refresh forgets it; the next up creates it again
    assert MigrationsProvider().read("supaqueue", installed).id == ""


def test_an_installation_from_before_ownership_is_claimed_by_its_own_stack(
    installed: dict[str, Any], db_url: str
) -> None:
    provider = MigrationsProvider()
    execute(db_url, "delete from supaqueue.installation_owner")
    legacy_state = {k: installed[k] for k in ("db_url", "migrations_dir", "migrations")}

    # A stack whose state does not hold the schema may not take it...
    (failure,) = provider.check({}, migrations_props(db_url, stack=PROD, stack_id="p")).failures
    assert "no stack owns it" in failure.reason
    assert f"values ('{PROD}')" in failure.reason  # how to hand it over explicitly

    # ...the stack whose state holds it (written before ownership existed) claims it at up.
    checked = provider.check(legacy_state, migrations_props(db_url))
    assert checked.failures == []
    diff = provider.diff("supaqueue", legacy_state, checked.inputs)
    assert diff.changes is True and diff.replaces == []
    provider.update("supaqueue", legacy_state, checked.inputs)
    stack_id = checked.inputs["owner"]["stack_id"]
    assert snapshot(db_url)[1] == f"{STACK}:{stack_id}"
    (failure,) = provider.check({}, migrations_props(db_url, stack=PROD, stack_id="p")).failures
    assert f"owned by the Pulumi stack '{STACK}'" in failure.reason


def test_an_explicit_hand_over(installed: dict[str, Any], db_url: str) -> None:
    provider = MigrationsProvider()
    execute(db_url, "update supaqueue.installation_owner set stack = %s, stack_id = null", PROD)
    assert provider.check({}, migrations_props(db_url, stack="supaqueue/other")).failures
    checked = provider.check({}, migrations_props(db_url, stack=PROD, stack_id="prod-id"))
    assert checked.failures == []
    created = provider.create(checked.inputs)
    assert created.outs is not None
    assert snapshot(db_url)[1] == f"{PROD}:{checked.inputs['owner']['stack_id']}"
    # the old owner is refused now, and its destroy removes nothing
    guard = DestroyGuardProvider()
    text = failure_text(lambda: guard.delete("g", {**installed, "drop_dependents": False}))
    assert f"owned by the Pulumi stack '{PROD}'" in text
    text = failure_text(lambda: provider.delete("supaqueue", installed))
    assert "not removed" in text
    assert sql_value(db_url, "select to_regnamespace('supaqueue') is not null") is True


def test_queues_are_owned_by_their_stack(installed: dict[str, Any], db_url: str) -> None:
    provider = QueueProvider()
    dev = {"stack": STACK, "stack_id": "dev-id"}
    prod = {"stack": PROD, "stack_id": "prod-id"}
    created = provider.create(queue_props(db_url, prod))
    row = "select owner_stack || ':' || owner_stack_id from supaqueue.queue where id = %s"
    assert sql_value(db_url, row, created.id) == f"{PROD}:prod-id"

    # Another stack (its state somehow holding the queue's id) may neither change nor drop it.
    theirs = {**props_of(db_url, dev), "workers": 4}  # (its check, a create's, would refuse)
    text = failure_text(lambda: provider.update(created.id, theirs, theirs))
    assert f"owned by the Pulumi stack '{PROD}'" in text and "Traceback" not in text
    text = failure_text(lambda: provider.delete(created.id, theirs))
    assert f"owned by the Pulumi stack '{PROD}'" in text
    assert (
        sql_value(db_url, "select count(*) from supaqueue.worker where queue = %s", created.id) == 1
    )

    # A queue made before ownership records is claimed by the stack whose state holds it.
    execute(db_url, "update supaqueue.queue set owner_stack = null, owner_stack_id = null")
    provider.update(created.id, theirs, theirs)
    assert sql_value(db_url, row, created.id) == f"{STACK}:dev-id"
    provider.delete(created.id, theirs)
    assert sql_value(db_url, "select count(*) from supaqueue.queue") == 0


def test_destroy_refuses_while_other_stacks_queues_exist(
    installed: dict[str, Any], db_url: str
) -> None:
    QueueProvider().create(queue_props(db_url, {"stack": PROD, "stack_id": "prod-id"}))
    guard = DestroyGuardProvider()
    props = {"db_url": db_url, "owner": installed["owner"], "drop_dependents": False}
    for call in (
        lambda: guard.delete("g", props),
        lambda: MigrationsProvider().delete("supaqueue", installed),
    ):
        text = failure_text(call)
        assert "supaqueue was not removed" in text
        assert f"'emails' (stack '{PROD}')" in text
    assert sql_value(db_url, "select count(*) from supaqueue.queue") == 1
    execute(db_url, "delete from supaqueue.queue")
    guard.delete("g", props)  # nothing in the way now
    MigrationsProvider().delete("supaqueue", installed)
    assert sql_value(db_url, "select to_regnamespace('supaqueue') is null") is True


@pytest.fixture
def user_objects(installed: dict[str, Any], db_url: str) -> Any:
    """A user's table with a column of a supaqueue type and a foreign key to its queues, and a
    view over its jobs (issue 14 item 3)."""
    execute(
        db_url,
        "create table public.user_jobs (id int, state supaqueue.job_status,"
        " queue uuid references supaqueue.queue (id));"
        "create view public.user_job_view as select id, status from supaqueue.job",
    )
    yield
    execute(db_url, "drop view if exists public.user_job_view; drop table public.user_jobs")


def test_destroy_refuses_while_user_objects_depend_on_the_schema(
    installed: dict[str, Any], db_url: str, user_objects: Any
) -> None:
    guard = DestroyGuardProvider()
    props = {"db_url": db_url, "owner": installed["owner"], "drop_dependents": False}
    for call in (
        lambda: guard.delete("g", props),
        lambda: MigrationsProvider().delete("supaqueue", installed),
    ):
        text = failure_text(call)
        assert "table column public.user_jobs.state" in text
        assert "table constraint user_jobs_queue_fkey on public.user_jobs" in text
        assert "view public.user_job_view" in text
        assert "supaqueue:dropDependentObjectsOnDestroy: true" in text
        assert "Traceback" not in text
    assert sql_value(db_url, "select to_regnamespace('supaqueue') is not null") is True
    assert sql_value(db_url, "select to_regclass('public.user_job_view') is not null") is True

    # Allowed explicitly: they go with it.
    allowed = {**installed, "drop_dependents": True}
    guard.delete("g", {**props, "drop_dependents": True})
    MigrationsProvider().delete("supaqueue", allowed)
    assert sql_value(db_url, "select to_regnamespace('supaqueue') is null") is True
    assert sql_value(db_url, "select to_regclass('public.user_job_view') is null") is True


def test_destroy_refuses_while_user_objects_are_inside_the_schema(
    installed: dict[str, Any], db_url: str
) -> None:
    """A table, view, function or type someone made inside schema supaqueue was dropped by destroy
    without being named (issue 21 item 4): the same rule as dependents outside it."""
    execute(
        db_url,
        "create table supaqueue.notes (id int primary key generated always as identity, t text);"
        "create view supaqueue.note_view as select t from supaqueue.notes;"
        "create function supaqueue.note_count() returns bigint language sql"
        " as 'select count(*) from supaqueue.notes';"
        "create type supaqueue.mood as enum ('calm');",
    )
    guard = DestroyGuardProvider()
    props = {"db_url": db_url, "owner": installed["owner"], "drop_dependents": False}
    for call in (
        lambda: guard.delete("g", props),
        lambda: MigrationsProvider().delete("supaqueue", installed),
    ):
        text = failure_text(call)
        assert "4 object(s) in the schema supaqueue were not made by supaqueue" in text, text
        for named in (
            "table supaqueue.notes",
            "view supaqueue.note_view",
            "function supaqueue.note_count()",
            "type supaqueue.mood",
        ):
            assert named in text, text
        assert "notes_id_seq" not in text  # goes with its table
        assert "supaqueue:dropDependentObjectsOnDestroy: true" in text
    assert sql_value(db_url, "select to_regclass('supaqueue.notes') is not null") is True

    # Allowed explicitly: they go with it.
    guard.delete("g", {**props, "drop_dependents": True})
    MigrationsProvider().delete("supaqueue", {**installed, "drop_dependents": True})
    assert sql_value(db_url, "select to_regnamespace('supaqueue') is null") is True


def test_a_fresh_installation_holds_only_supaqueue_objects(
    installed: dict[str, Any], db_url: str
) -> None:
    """Every object the migrations and table triggers make is known as supaqueue's (a migration
    that makes objects in a way the name list misses fails here, not in a user's destroy)."""
    execute(db_url, "create table public.hooked (id int)")
    try:
        queue = QueueProvider().create(queue_props(db_url, installed["owner"])).id
        execute(
            db_url,
            "select supaqueue.set_table_trigger(null, 'h', %s, 'public', 'hooked',"
            " array['INSERT', 'UPDATE', 'DELETE'], null)",
            queue,
        )
        with psycopg.connect(db_url, autocommit=True) as conn:
            assert ownership.foreign_objects(conn) == []
    finally:
        execute(db_url, "drop table public.hooked")


def test_an_external_installation(installed: dict[str, Any], db_url: str) -> None:
    provider = ExternalInstallationProvider()
    news = {"db_url": db_url, "owner": {"stack": PROD, "stack_id": "prod-id"}}
    checked = provider.check({}, news)
    assert checked.failures == []
    created = provider.create(checked.inputs)
    assert (created.outs or {})["schema_version"] == sql_value(
        db_url, "select max(version) from supaqueue.migrations"
    )
    provider.delete(created.id, created.outs or {})  # removes nothing
    assert sql_value(db_url, "select to_regnamespace('supaqueue') is not null") is True

    # The owner may not switch to external: its up would uninstall supaqueue.
    (failure,) = provider.check(
        inputs_of(installed), {**news, "owner": installed["owner"]}
    ).failures
    assert "owns supaqueue in this database" in failure.reason
    uninstall(db_url)
    (failure,) = provider.check({}, news).failures
    assert "supaqueue is not installed in this database" in failure.reason


def test_the_stack_id_is_made_once_and_kept() -> None:
    provider = StackIdentityProvider()
    first = provider.check({}, {"stack": STACK}).inputs
    assert len(first["stack_id"]) == 32
    assert provider.check(first, {"stack": STACK}).inputs == first  # kept from state
    assert provider.check({}, {"stack": STACK}).inputs["stack_id"] != first["stack_id"]
    (failure,) = provider.check({}, {"stack": "no-project"}).failures
    assert failure.property == "stack"


def test_a_failed_first_up_is_retried_by_the_same_stack(db_url: str, sql_copy: Any) -> None:
    """The schema's create failed in its last migration: one upgrade is one transaction, so
    nothing is left (no half installation another stack could find), and the retry (same stack
    id, kept by the stack id resource) installs it."""
    uninstall(db_url)
    broken = sql_copy / "0099_broken.sql"
    broken.write_text("select 1 / 0;\n")
    provider = MigrationsProvider()
    props = provider.check({}, migrations_props(db_url, sql_copy)).inputs
    text = failure_text(lambda: provider.create(props))
    assert "0099_broken" in text and "division by zero" in text
    assert sql_value(db_url, "select to_regnamespace('supaqueue') is null") is True
    broken.write_text("select 1;\n")
    retry = provider.check({}, migrations_props(db_url, sql_copy))
    assert retry.failures == []
    assert (provider.create(retry.inputs).outs or {})["schema_version"] == 99
    uninstall(db_url)


def test_the_gate_refuses_before_any_change_and_knows_a_legacy_owner_by_its_secret(
    installed: dict[str, Any], db_url: str
) -> None:
    gate = OwnershipGateProvider()
    name = "supaqueue_gate_test_secret"
    ours, theirs = "o" * 48, "t" * 48

    def props(stack: str, stack_id: str, secret: str) -> dict[str, Any]:
        owner = {"stack": stack, "stack_id": stack_id}
        return {"db_url": db_url, "owner": owner, "secret": secret, "vault_secret_name": name}

    execute(db_url, "delete from vault.secrets where name = %s", name)
    execute(db_url, "select vault.create_secret(%s, %s)", ours, name)
    try:
        assert gate.check({}, props(STACK, installed["owner"]["stack_id"], ours)).failures == []
        for other in (props(PROD, "p", theirs), props(PROD, rpc.UNKNOWN, theirs)):
            (failure,) = gate.check({}, other).failures
            assert f"owned by the Pulumi stack '{STACK}'" in failure.reason
        text = failure_text(lambda: gate.create(props(PROD, "p", theirs)))
        assert "OwnershipError" in text

        # Installed before ownership records: only the stack whose secret is in Vault passes.
        execute(db_url, "delete from supaqueue.installation_owner")
        (failure,) = gate.check({}, props(PROD, "p", theirs)).failures
        assert "no stack owns it" in failure.reason
        assert gate.check({}, props(STACK, "new-id", ours)).failures == []

        # Not installed: the gate lets it through (the schema's check tells fresh from vanished).
        uninstall(db_url)
        assert gate.check({}, props(PROD, "p", theirs)).failures == []
    finally:
        execute(db_url, "delete from vault.secrets where name = %s", name)


def props_of(db_url: str, owner: dict[str, Any], name: str = "emails") -> dict[str, Any]:
    """A queue's checked inputs, whatever check found (as the engine would pass them on)."""
    news = {"db_url": db_url, "name": name, "edge_function_name": "f", "owner": owner}
    return QueueProvider().check({}, news).inputs


def test_a_queue_name_another_stack_owns_fails_preview_naming_it(
    installed: dict[str, Any], db_url: str
) -> None:
    """Found at check (so `pulumi preview`), not at create; and never "drop it" advice for a
    queue that is another stack's."""
    provider = QueueProvider()
    prod = {"stack": PROD, "stack_id": "prod-id"}
    theirs = provider.create(props_of(db_url, prod))
    execute(db_url, "insert into supaqueue.job (queue, payload) values (%s, '{}')", theirs.id)
    for me in ({"stack": STACK, "stack_id": "dev-id"}, {"stack": STACK, "stack_id": rpc.UNKNOWN}):
        news = props_of(db_url, me)
        [failure] = provider.check({}, {**news, "workers": 3}).failures
        assert failure.property == "name"
        assert failure.reason.startswith(
            f"queue 'emails' is owned by the Pulumi stack '{PROD}' (stack id prod-id), not by "
        )
        assert "drop_queue" not in failure.reason and theirs.id not in failure.reason
        # create (e.g. a name taken between preview and up) refuses it the same way
        more = {**news, "workers": 3}
        text = failure_text(functools.partial(provider.create, more))
        assert f"is owned by the Pulumi stack '{PROD}'" in text and "drop_queue" not in text
    # A stack of the same name whose state was lost is told how to remove its old queue.
    lost = props_of(db_url, {"stack": PROD, "stack_id": "new-prod-id"})
    [failure] = provider.check({}, lost).failures
    assert f"select supaqueue.drop_queue('{theirs.id}');`, 1 unfinished job(s)" in failure.reason
    # The owner's own queue, in its state, passes (an update is no create).
    assert provider.check(props_of(db_url, prod), props_of(db_url, prod)).failures == []
    assert sql_value(db_url, "select count(*) from supaqueue.worker") == 1
    # A rename onto a taken name is a create too.
    other = props_of(db_url, {"stack": STACK, "stack_id": "dev-id"}, name="other")
    [failure] = provider.check(other, props_of(db_url, other["owner"])).failures
    assert failure.property == "name" and f"'{PROD}'" in failure.reason


def test_a_queue_dropped_in_sql_fails_preview_saying_to_refresh(
    installed: dict[str, Any], db_url: str
) -> None:
    provider = QueueProvider()
    props = props_of(db_url, {"stack": STACK, "stack_id": "dev-id"})
    created = provider.create(props)
    outs = created.outs or {}
    assert provider.diff(created.id, outs, props).changes is False
    assert sql_value(db_url, "select supaqueue.drop_queue(%s)", created.id) is True
    text = failure_text(lambda: provider.diff(created.id, outs, props))
    assert f"queue 'emails' ({created.id}) is in this stack's state but not in the database" in text
    assert "`pulumi refresh`" in text and "`pulumi up --refresh`" in text
    assert "Traceback" not in text
    # What the advice leads to: refresh forgets it, the next create makes it again.
    assert provider.read(created.id, outs).id == ""
    assert provider.check({}, props).failures == []
    again = provider.create(props)
    assert again.id != created.id
    # Removing it from the stack instead: its delete finds nothing to do.
    sql_value(db_url, "select supaqueue.drop_queue(%s)", again.id)
    provider.delete(again.id, again.outs or {})
