"""`pulumi import` by name and the upgrade from dynamic-provider state, through the plugin process
(supaqueue/providers/importing.py, supaqueue/provider/dynamic_state.py); the whole path with the
engine: tests/e2e/test_import.py, tests/e2e/test_upgrade_from_dynamic.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest
from pulumi.runtime import proto

from supaqueue.providers.importing import config_db_url, stack_of_urn
from supaqueue.providers.queue.spec import DEFAULT_RETENTION_SECONDS
from tests.providers.conftest import STACK, STACK_ID, sql_value
from tests.providers.test_provider_plugin import Plugin, plain, queue_news, struct, urn


@pytest.fixture
def plugin() -> Iterator[Plugin]:
    started = Plugin()
    yield started
    started.stop()


# The provider tests' stack (conftest.STACK, `supaqueue/provider-tests`) owns the installation.
ME = "provider-tests"


def import_urn(kind: str, name: str, stack: str = ME) -> str:
    return urn(kind, name).replace("urn:pulumi:test::", f"urn:pulumi:{stack}::")


def configure(plugin: Plugin, db_url: str | None) -> None:
    variables = {"supaqueue:config:target": "supabase"}
    if db_url:
        variables["supaqueue:config:dbUrl"] = db_url
    plugin.call("Configure", proto.ConfigureRequest(variables=variables))


def read(plugin: Plugin, kind: str, name: str, stack: str = ME) -> Any:
    request = proto.ReadRequest(urn=import_urn(kind, f"imported-{name}", stack), id=name)
    return plugin.call("Read", request)


def refusal(plugin: Plugin, kind: str, name: str, stack: str = ME) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        read(plugin, kind, name, stack)
    said = str(caught.value.details())
    assert "Traceback" not in said
    return said


def execute(db_url: str, *statements: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_the_database_is_the_stack_configs() -> None:
    assert config_db_url({"supaqueue:config:dbUrl": "postgres://a"}, {}) == "postgres://a"
    assert config_db_url({"supaqueue:dbUrl": "postgres://b"}, {}) == "postgres://b"
    local = {"supaqueue:config:target": "local"}
    assert config_db_url(local, {"DB_URL": "postgres://c"}) == "postgres://c"
    assert config_db_url({"supaqueue:config:target": "supabase"}, {"DB_URL": "x"}) is None
    assert stack_of_urn("urn:pulumi:dev::supaqueue::supaqueue:index:Queue::q") == "supaqueue/dev"


def test_a_queue_kept_for_ever_imports_with_the_flag(
    plugin: Plugin, installed: dict[str, Any], db_url: str
) -> None:
    """A null retention (kept for ever) is printed as `keep_finished_forever`, so the printed
    code keeps it (it printed nothing: the code then declared the default, 7 days)."""
    execute(
        db_url,
        "insert into supaqueue.queue (name, edge_function_name, retention_seconds) "
        "values ('kept', 'demo-target', null)",
        "select supaqueue.set_worker_count(id, 1) from supaqueue.queue where name = 'kept'",
    )
    configure(plugin, db_url)
    found = read(plugin, "Queue", "kept")
    assert plain(found.inputs) == {
        "name": "kept",
        "edge_function_name": "demo-target",
        "keep_finished_forever": True,
    }
    assert plain(found.properties)["keep_finished_forever"] is True


def test_a_queue_made_in_sql_is_read_by_name_and_becomes_the_stacks(
    plugin: Plugin, installed: dict[str, Any], db_url: str
) -> None:
    execute(
        db_url,
        "insert into supaqueue.queue (name, edge_function_name, max_attempts) "
        "values ('made-in-sql', 'demo-target', 7)",
        "select supaqueue.set_worker_count(id, 2) from supaqueue.queue where name = 'made-in-sql'",
    )
    queue_id = sql_value(db_url, "select id::text from supaqueue.queue where name = 'made-in-sql'")
    configure(plugin, db_url)
    found = read(plugin, "Queue", "made-in-sql")
    assert found.id == queue_id
    # Printed as code: only what differs from the defaults, never the URL, owner or headers.
    assert plain(found.inputs) == {
        "name": "made-in-sql",
        "edge_function_name": "demo-target",
        "max_attempts": 7,
        "workers": 2,
    }
    outs = plain(found.properties)
    assert "db_url" not in outs and outs["queue_id"] == queue_id
    assert outs["owner"] == {"stack": STACK, "stack_id": STACK_ID}
    owner = "select owner_stack || ' ' || owner_stack_id from supaqueue.queue where id = %s"
    assert sql_value(db_url, owner, queue_id) == f"{STACK} {STACK_ID}"
    # The state it left diffs clean against the declaration (the URL: the declared one).
    declared = plain(
        plugin.call(
            "Check",
            proto.CheckRequest(
                urn=import_urn("Queue", "imported-made-in-sql"),
                olds=found.inputs,
                news=struct(
                    # as the Queue class sends it: every default filled in (resource.py)
                    queue_news(db_url, name="made-in-sql", max_attempts=7, workers=2, headers={})
                    | {"owner": {"stack": STACK, "stack_id": STACK_ID}}
                    | {"retention_seconds": DEFAULT_RETENTION_SECONDS}
                ),
            ),
        ).inputs
    )
    diff = plugin.call(
        "Diff",
        proto.DiffRequest(
            urn=import_urn("Queue", "imported-made-in-sql"),
            id=found.id,
            olds=found.properties,
            news=struct(declared),
        ),
    )
    assert diff.changes == proto.DiffResponse.DIFF_NONE, list(diff.diffs)
    # Its delete works from the imported state too (the configured database).
    plugin.call(
        "Delete",
        proto.DeleteRequest(
            urn=import_urn("Queue", "imported-made-in-sql"),
            id=found.id,
            properties=found.properties,
        ),
    )
    assert sql_value(db_url, "select count(*) from supaqueue.queue where id = %s", queue_id) == 0


def test_what_cannot_be_imported_is_refused_saying_why(
    plugin: Plugin, installed: dict[str, Any], db_url: str
) -> None:
    execute(
        db_url,
        "insert into supaqueue.queue (name, edge_function_name, owner_stack, owner_stack_id) "
        "values ('theirs', 'f', 'other/prod', 'aaaabbbbccccdddd')",
        "insert into supaqueue.queue (name, edge_function_name, default_headers) "
        """values ('with-headers', 'f', '{"Authorization": "Bearer s3cr3t"}')""",
        "insert into supaqueue.queue (name, edge_function_name) values ('no-workers', 'f')",
        "insert into supaqueue.queue (name, edge_function_name) values ('fine', 'f')",
        "select supaqueue.set_worker_count(id, 1) from supaqueue.queue where name <> 'no-workers'",
        "create table if not exists public.import_rows (id int)",
        "select supaqueue.set_table_trigger(null, 'their-trigger', "
        "(select id from supaqueue.queue where name = 'theirs'), 'public', 'import_rows', "
        "array['INSERT'], null)",
    )
    try:
        configure(plugin, None)
        assert "supaqueue:dbUrl" in refusal(plugin, "Queue", "fine")
        configure(plugin, db_url)
        said = refusal(plugin, "Queue", "theirs")
        assert "owned by the Pulumi stack 'other/prod'" in said and "not imported" in said
        said = refusal(plugin, "Queue", "with-headers")
        assert "default headers" in said and "s3cr3t" not in said
        assert "no workers" in refusal(plugin, "Queue", "no-workers")
        said = refusal(plugin, "Queue", "nope")
        assert "no queue named 'nope'" in said and "fine" in said
        said = refusal(plugin, "Queue", "fine", stack="never-upped")
        assert "records no stack 'supaqueue/never-upped'" in said
        assert "feeds queue 'theirs'" in refusal(plugin, "Trigger", "their-trigger")
        assert "cannot be imported" in refusal(plugin, "Migrations", "supaqueue")
        # Nothing was claimed by the refusals.
        unowned = "select count(*) from supaqueue.queue where owner_stack is null"
        assert sql_value(db_url, unowned) == 3
    finally:
        execute(db_url, "drop table if exists public.import_rows")


def test_a_dynamic_providers_pickle_goes_in_an_update_that_changes_nothing_else(
    plugin: Plugin, installed: dict[str, Any], db_url: str
) -> None:
    target = urn("Queue", "pickled")
    checked = plugin.call(
        "Check",
        proto.CheckRequest(urn=target, olds=struct({}), news=struct(queue_news(db_url))),
    )
    created = plugin.call("Create", proto.CreateRequest(urn=target, properties=checked.inputs))
    # The state a pre-0.1.0 stack holds: the same outputs, plus the pickled provider.
    old = plain(created.properties) | {"__provider": "gASV...pickled code"}
    diff = plugin.call(
        "Diff",
        proto.DiffRequest(urn=target, id=created.id, olds=struct(old), news=checked.inputs),
    )
    assert diff.changes == proto.DiffResponse.DIFF_SOME
    assert list(diff.diffs) == ["__provider"] and list(diff.replaces) == []
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update supaqueue.queue set max_attempts = 9 where id = %s", (created.id,))
    updated = plugin.call(
        "Update",
        proto.UpdateRequest(urn=target, id=created.id, olds=struct(old), news=checked.inputs),
    )
    outs = plain(updated.properties)
    assert "__provider" not in outs
    assert outs == plain(created.properties)
    # Nothing was written: the change made behind its back is still there.
    attempts = "select max_attempts from supaqueue.queue where id = %s"
    assert sql_value(db_url, attempts, created.id) == 9
