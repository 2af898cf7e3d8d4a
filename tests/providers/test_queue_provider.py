"""The queue resource against the real engine SQL: create, in-place updates (same id, jobs
kept), rename replaces, drift seen by read, delete refused with unfinished jobs (SQ001) unless
discard, a name taken outside the stack's state refused with what to do, check failures naming
the field."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from supaqueue.providers.queue import QueueProvider
from supaqueue.providers.queue.spec import (
    DEFAULT_RETENTION_SECONDS,
    FIELDS,
    expand_statuses,
    queue_problems,
    with_defaults,
)
from tests.providers.conftest import QUEUE_OWNER, failure_text, sql_value

# Queue settings that are not columns of supaqueue.queue.
NOT_COLUMNS = (
    "headers",
    "workers",
    "discard_unfinished_on_delete",
    "edge_function_name",
    "keep_finished_forever",
)


def declare(db_url: str, **settings: Any) -> dict[str, Any]:
    # As the program sends a queue: every default filled in (resource.py), then the inputs
    # whose value is null dropped (Pulumi does that).
    spec = with_defaults({"name": "emails", "edge_function_name": "send-email", **settings})
    props = {
        **{key: value for key, value in spec.items() if value is not None},
        "db_url": db_url,
        "owner": QUEUE_OWNER,
    }
    # As the engine checks a queue already in its state (a new queue's check also probes its
    # name in the database: tested on its own below).
    checked = QueueProvider().check({"name": props["name"]}, {**props, "queue_id": None})
    assert checked.failures == []
    return checked.inputs


def workers(db_url: str, queue_id: str) -> int:
    return int(
        sql_value(
            db_url,
            "select count(*) from supaqueue.worker where queue = %s and not retiring",
            queue_id,
        )
    )


def test_create_writes_the_row_and_workers(installed: dict[str, Any], db_url: str) -> None:
    provider = QueueProvider()
    props = declare(
        db_url,
        workers=3,
        method="PUT",
        headers={"Authorization": "Bearer t"},
        rate_limit_per_second=2.5,
        rate_limit_burst=5,
        max_attempts=4,
        non_retryable_statuses=[400, 422],
        timeout_ms=5000,
        retention_seconds=3600,
    )
    created = provider.create(props)
    assert created.outs is not None and created.outs["queue_id"] == created.id
    assert workers(db_url, created.id) == 3
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "select name, edge_function_name, method, default_headers, max_attempts,"
            " rate_limit_per_second, rate_limit_burst, non_retryable_statuses, timeout_ms,"
            " retention_seconds, paused from supaqueue.queue where id = %s",
            (created.id,),
        ).fetchone()
    assert row == (
        "emails",
        "send-email",
        "PUT",
        {"Authorization": "Bearer t"},
        4,
        2.5,
        5,
        [400, 422],
        5000,
        3600,
        False,
    )
    read = provider.read(created.id, created.outs)
    assert read.id == created.id
    assert {k: (read.outs or {})[k] for k in FIELDS if k != "discard_unfinished_on_delete"} == {
        k: props[k] for k in FIELDS if k != "discard_unfinished_on_delete"
    }


def test_defaults_match_the_engine_defaults(installed: dict[str, Any], db_url: str) -> None:
    provider = QueueProvider()
    props = declare(db_url)
    created = provider.create(props)
    read = provider.read(created.id, created.outs or {}).outs or {}
    for key in FIELDS:
        assert read[key] == props[key], key
    # Our default list is the engine's own default.
    engine_default = sql_value(db_url, "select supaqueue.default_non_retryable_statuses()")
    # (kept as compact ranges: `pulumi preview` shows one line, not 98)
    assert props["non_retryable_statuses"] == "400-407,409-428,430-499"
    assert expand_statuses(props["non_retryable_statuses"]) == engine_default
    assert 408 not in engine_default and 429 not in engine_default
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into supaqueue.queue (name, edge_function_name) values ('raw', 'f')")
        row = conn.execute(
            "select "
            + ", ".join(k for k in FIELDS if k not in NOT_COLUMNS)
            + " from supaqueue.queue where name = 'raw'"
        ).fetchone()
    assert row is not None
    columns = [k for k in FIELDS if k not in NOT_COLUMNS]
    seed_defaults = dict(zip(columns, row, strict=True))
    declared = {**props, "non_retryable_statuses": engine_default}
    assert seed_defaults == {k: declared[k] for k in columns if k != "name"} | {"name": "raw"}


def test_updates_are_in_place_and_keep_jobs(installed: dict[str, Any], db_url: str) -> None:
    provider = QueueProvider()
    props = declare(db_url, workers=2)
    created = provider.create(props)
    outs = created.outs or {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update supaqueue.queue set paused = true where id = %s", (created.id,))
        conn.execute("insert into supaqueue.job (queue, payload) values (%s, '{}')", (created.id,))
    news = declare(db_url, workers=5, rate_limit_per_second=10.0, paused=True, headers={"X-A": "1"})
    diff = provider.diff(created.id, outs, news)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(created.id, outs, news).outs or {}
    assert updated["queue_id"] == created.id
    assert workers(db_url, created.id) == 5
    assert sql_value(db_url, "select rate_limit_per_second from supaqueue.queue") == 10.0
    assert sql_value(db_url, "select count(*) from supaqueue.job where queue = %s", created.id) == 1
    fewer = declare(db_url, workers=1, paused=True)
    provider.update(created.id, updated, fewer)
    assert workers(db_url, created.id) == 1


def test_lease_grace_is_a_queue_setting(installed: dict[str, Any], db_url: str) -> None:
    """How long a lost dispatch stalls its worker (timeout + grace) is the user's choice."""
    provider = QueueProvider()
    props = declare(db_url, timeout_ms=5000, lease_grace_ms=2000)
    created = provider.create(props)
    assert sql_value(db_url, "select lease_grace_ms from supaqueue.queue") == 2000
    outs = created.outs or {}
    assert outs["lease_grace_ms"] == 2000
    news = declare(db_url, timeout_ms=5000, lease_grace_ms=10_000.0)  # the engine sends floats
    diff = provider.diff(created.id, outs, news)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(created.id, outs, news).outs or {}
    assert sql_value(db_url, "select lease_grace_ms from supaqueue.queue") == 10_000
    assert updated["queue_id"] == created.id
    # drift made in SQL shows on refresh
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("update supaqueue.queue set lease_grace_ms = 7")
    assert (provider.read(created.id, updated).outs or {})["lease_grace_ms"] == 7


def test_rename_replaces_and_other_changes_do_not(installed: dict[str, Any], db_url: str) -> None:
    provider = QueueProvider()
    created = provider.create(declare(db_url))
    olds, x = created.outs or {}, created.id
    assert provider.diff(x, olds, declare(db_url, name="mails")).replaces == ["name"]
    for change in ({"workers": 9}, {"paused": True}, {"headers": {"A": "b"}}, {"max_attempts": 9}):
        diff = provider.diff(x, olds, declare(db_url, **change))
        assert diff.changes is True and diff.replaces == [], change
    assert provider.diff(x, olds, declare(db_url)).changes is False


def test_refresh_sees_changes_made_behind_pulumis_back(
    installed: dict[str, Any], db_url: str
) -> None:
    provider = QueueProvider()
    props = declare(db_url, workers=2)
    created = provider.create(props)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select supaqueue.set_worker_count(%s, 7)", (created.id,))
        conn.execute("update supaqueue.queue set max_attempts = 9 where id = %s", (created.id,))
    refreshed = provider.read(created.id, created.outs or {}).outs or {}
    assert refreshed["workers"] == 7 and refreshed["max_attempts"] == 9
    # The next `up` sees the drift against the program and updates it back.
    diff = provider.diff(created.id, refreshed, props)
    assert diff.changes is True and diff.replaces == []
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("delete from supaqueue.queue where id = %s", (created.id,))
    assert provider.read(created.id, created.outs or {}).id == ""


def test_delete_refuses_unfinished_jobs_unless_discard(
    installed: dict[str, Any], db_url: str
) -> None:
    provider = QueueProvider()
    created = provider.create(declare(db_url, paused=True))
    outs = created.outs or {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into supaqueue.job (queue, payload) values (%s, '{}')", (created.id,))
        conn.execute("insert into supaqueue.job (queue, payload) values (%s, '{}')", (created.id,))
    text = failure_text(lambda: provider.delete(created.id, outs))
    assert "QueueNotEmptyError: cannot remove queue 'emails'" in text
    assert "2 unfinished job(s)" in text
    assert "discard_unfinished_on_delete: true" in text
    assert "Traceback" not in text
    assert sql_value(db_url, "select count(*) from supaqueue.queue") == 1

    provider.delete(created.id, {**outs, "discard_unfinished_on_delete": True})
    assert sql_value(db_url, "select count(*) from supaqueue.queue") == 0
    assert sql_value(db_url, "select count(*) from supaqueue.job") == 0


@pytest.mark.parametrize("made_by", ["hand", "lost state"])
def test_create_of_a_name_taken_outside_the_state_says_what_to_do(
    installed: dict[str, Any], db_url: str, made_by: str
) -> None:
    provider = QueueProvider()
    props = declare(db_url, workers=3)  # checked while the name is free
    if made_by == "hand":
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                "insert into supaqueue.queue (name, edge_function_name)"
                " values ('emails', 'by-hand') returning id::text"
            ).fetchone()
        assert row is not None
        existing = str(row[0])
    else:  # created by a stack whose state is gone: Pulumi creates it again
        existing = provider.create(declare(db_url, workers=2)).id
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("insert into supaqueue.job (queue, payload) values (%s, '{}')", (existing,))
    workers_before = workers(db_url, existing)

    # Preview (check) says it first; create (the name taken after the preview) says the same.
    [failure] = provider.check({}, props).failures
    assert failure.property == "name"
    text = failure_text(lambda: provider.create(props))
    for said in (failure.reason, text):
        assert "queue 'emails' already exists in the database" in said
        assert f"(id {existing}, 1 unfinished job(s))" in said
        assert "not in this stack's state" in said
        assert "Adopt it, `pulumi import supaqueue:index:Queue <resource name> emails" in said
        assert f"select supaqueue.drop_queue('{existing}');" in said
    assert "QueueExistsError: queue 'emails' already exists" in text
    assert "duplicate key" not in text and "Traceback" not in text
    # Nothing changed: the existing queue keeps its row, workers and job.
    assert sql_value(db_url, "select count(*) from supaqueue.queue") == 1
    assert workers(db_url, existing) == workers_before
    assert sql_value(db_url, "select count(*) from supaqueue.job") == 1

    # Following the advice works: drop it (discarding its job), then create.
    sql_value(db_url, "select supaqueue.drop_queue(%s, true)", existing)
    assert provider.check({}, props).failures == []
    created = provider.create(props)
    assert created.id != existing and workers(db_url, created.id) == 3


def test_delete_after_uninstall_is_a_no_op(db_url: str, installed: dict[str, Any]) -> None:
    provider = QueueProvider()
    created = provider.create(declare(db_url))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("drop schema supaqueue cascade")
    provider.delete(created.id, created.outs or {})
    assert provider.read(created.id, created.outs or {}).id == ""


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"workers": -1}, "workers", "at least 1"),
        ({"name": "bad name"}, "name", "not a valid slug"),
        (
            {"edge_function_name": "https://x.supabase.co/functions/v1/f"},
            "edge_function_name",
            "not a URL",
        ),
        ({"headers": {"X": 1}}, "headers", "must be a string"),
        ({"method": "FETCH"}, "method", "must be one of"),
        ({"colour": "red"}, "colour", "unknown key"),
        ({"db_url": "mysql://x"}, "db_url", "not a Postgres connection URL"),
    ],
)
def test_check_names_the_field(change: dict[str, Any], field: str, fragment: str) -> None:
    news = {"db_url": "postgresql://u:p@127.0.0.1:5432/db", "name": "q", "edge_function_name": "f"}
    failures = QueueProvider().check({}, {**news, **change}).failures
    found = {f.property: f.reason for f in failures}
    assert field in found and fragment in found[field], found


def test_check_says_what_the_program_says() -> None:
    """One rule set: the engine-side check refuses with the program's own reasons (before, it
    wrote its own for unknown keys and for statuses it could not read)."""
    bad = {"name": "q", "edge_function_name": "f", "workers": 0, "colour": "x",
           "non_retryable_statuses": "4xx", "backoff_jitter": 2}  # fmt: skip
    program = {
        p.field.removeprefix("queue 'q'."): p.reason for p in queue_problems(bad, "queue 'q'")
    }
    news = {**bad, "db_url": "postgresql://u:p@127.0.0.1:5432/db"}
    engine = {f.property: f.reason for f in QueueProvider().check({}, news).failures}
    assert engine == program
    assert set(engine) == {"workers", "colour", "non_retryable_statuses", "backoff_jitter"}


def test_numbers_arrive_as_floats_from_the_engine(installed: dict[str, Any], db_url: str) -> None:
    provider = QueueProvider()
    news = {
        "db_url": db_url,
        "name": "floats",
        "edge_function_name": "f",
        "owner": QUEUE_OWNER,
        "workers": 2.0,
        "timeout_ms": 5000.0,
        "non_retryable_statuses": [400.0, 404.0],
    }
    checked = provider.check({}, news)
    assert checked.failures == []
    assert checked.inputs["workers"] == 2 and isinstance(checked.inputs["workers"], int)
    # The engine serializes the checked inputs again before create: floats once more.
    created = provider.create({**checked.inputs, "workers": 2.0, "timeout_ms": 5000.0})
    assert workers(db_url, created.id) == 2
    assert sql_value(db_url, "select non_retryable_statuses from supaqueue.queue") == [400, 404]


def test_retention_unset_gets_the_default_and_null_keeps_for_ever(
    installed: dict[str, Any], db_url: str
) -> None:
    provider = QueueProvider()
    unset = provider.create(declare(db_url))
    forever = provider.create(declare(db_url, name="forever", retention_seconds=None))
    assert (
        sql_value(db_url, "select retention_seconds from supaqueue.queue where id = %s", unset.id)
        == DEFAULT_RETENTION_SECONDS
    )
    assert (
        sql_value(db_url, "select retention_seconds from supaqueue.queue where id = %s", forever.id)
        is None
    )
    # the state says the same, so the next preview shows no change
    assert (forever.outs or {}).get("retention_seconds") is None
    diff = provider.diff(
        forever.id, forever.outs or {}, declare(db_url, name="forever", retention_seconds=None)
    )
    assert diff.changes is False


def test_dead_letter_queue_by_name(installed: dict[str, Any], db_url: str) -> None:
    provider = QueueProvider()
    alerts = provider.create(declare(db_url, name="alerts"))
    orders = provider.create(declare(db_url, name="orders", dead_letter_queue="alerts"))
    assert (
        sql_value(
            db_url, "select dead_letter_queue::text from supaqueue.queue where id = %s", orders.id
        )
        == alerts.id
    )
    assert (orders.outs or {})["dead_letter_queue"] == "alerts"
    assert provider.read(orders.id, orders.outs or {}).outs["dead_letter_queue"] == "alerts"  # type: ignore[index]
    with pytest.raises(Exception, match="dead_letter_queue 'nowhere' is not a queue"):
        provider.create(declare(db_url, name="lost", dead_letter_queue="nowhere"))
    assert sql_value(db_url, "select count(*) from supaqueue.queue where name = 'lost'") == 0
    # pointing alerts back at orders would loop: refused by the database, nothing changed
    looped = declare(db_url, name="alerts", dead_letter_queue="orders")
    with pytest.raises(Exception, match="dead letter would loop"):
        provider.update(alerts.id, alerts.outs or {}, looped)
    assert (
        sql_value(db_url, "select dead_letter_queue from supaqueue.queue where id = %s", alerts.id)
        is None
    )
    check = provider.check({}, {**declare(db_url, name="self"), "dead_letter_queue": "self"})
    assert [f.property for f in check.failures] == ["dead_letter_queue"]


def test_payload_schema_is_stored_read_back_and_removed(
    installed: dict[str, Any], db_url: str
) -> None:
    """`payload_schema` lands in supaqueue.queue (where `gen types` reads it), comes back on
    refresh (drift shows), updates in place and goes away when the declaration drops it; a bad
    schema fails check naming the field."""
    provider = QueueProvider()
    schema = {"type": "object", "properties": {"to": {"type": "string", "maxLength": 9.0}}}
    made = provider.create(declare(db_url, payload_schema=schema))
    stored = sql_value(db_url, "select payload_schema from supaqueue.queue where id = %s", made.id)
    assert stored == {"type": "object", "properties": {"to": {"type": "string", "maxLength": 9}}}
    read = provider.read(made.id, made.outs or {}).outs or {}
    assert read["payload_schema"] == stored
    psycopg.connect(db_url, autocommit=True).execute(
        'update supaqueue.queue set payload_schema = \'{"type": "array"}\' where id = %s',
        (made.id,),
    ).connection.close()
    drifted = provider.read(made.id, made.outs or {}).outs or {}
    assert drifted["payload_schema"] == {"type": "array"}
    updated = provider.update(made.id, drifted, declare(db_url))
    assert (updated.outs or {})["payload_schema"] is None
    assert (
        sql_value(db_url, "select payload_schema from supaqueue.queue where id = %s", made.id)
        is None
    )
    bad = {**declare(db_url), "payload_schema": {"type": "strin"}}
    check = provider.check({"name": "emails"}, bad)
    assert [f.property for f in check.failures] == ["payload_schema"]
    assert "not a valid JSON Schema" in check.failures[0].reason


def test_enqueue_roles_are_written_updated_and_read_back(
    installed: dict[str, Any], db_url: str
) -> None:
    provider = QueueProvider()
    props = declare(db_url, name="user-exports", enqueue_roles=["authenticated"])
    created = provider.create(props)
    roles = "select enqueue_roles from supaqueue.queue where id = %s"
    assert sql_value(db_url, roles, created.id) == ["authenticated"]
    wider = {**props, "enqueue_roles": ["anon", "authenticated"]}
    assert provider.diff(created.id, created.outs or {}, wider).changes is True
    outs = provider.update(created.id, created.outs or {}, wider).outs or {}
    assert sql_value(db_url, roles, created.id) == ["anon", "authenticated"]
    assert provider.read(created.id, outs).outs["enqueue_roles"] == ["anon", "authenticated"]  # type: ignore[index]
    provider.delete(created.id, outs)


def test_enqueue_roles_refuse_other_roles(db_url: str) -> None:
    spec = with_defaults(
        {"name": "q", "edge_function_name": "f", "enqueue_roles": ["service_role"]}
    )
    checked = QueueProvider().check({}, {**spec, "db_url": db_url, "owner": QUEUE_OWNER})
    assert [f.property for f in checked.failures] == ["enqueue_roles"]
    assert "service_role may always enqueue" in checked.failures[0].reason


def test_retention_from_another_language_unset_is_the_default_and_the_flag_keeps_for_ever(
    installed: dict[str, Any], db_url: str
) -> None:
    """A queue declared outside Python: no defaults filled in, a null dropped. Unset retention
    was read as the explicit null (kept for ever); it is the default, and
    `keep_finished_forever` is the way to keep jobs for ever."""
    provider = QueueProvider()
    bare = {"edge_function_name": "send-email", "db_url": db_url, "owner": QUEUE_OWNER}
    unset = provider.check({}, {**bare, "name": "ts-unset"})
    flagged = provider.check({}, {**bare, "name": "ts-forever", "keep_finished_forever": True})
    assert unset.failures == [] and flagged.failures == []
    assert unset.inputs["retention_seconds"] == DEFAULT_RETENTION_SECONDS
    assert flagged.inputs["retention_seconds"] is None
    made = {name: provider.create(dict(c.inputs)) for name, c in (("unset", unset), ("f", flagged))}
    retention = "select retention_seconds from supaqueue.queue where id = %s"
    assert sql_value(db_url, retention, made["unset"].id) == DEFAULT_RETENTION_SECONDS
    assert sql_value(db_url, retention, made["f"].id) is None
    assert (made["f"].outs or {})["keep_finished_forever"] is True
    assert provider.diff(made["f"].id, made["f"].outs or {}, dict(flagged.inputs)).changes is False
    both = provider.check({}, {**bare, "name": "x", "keep_finished_forever": True,
                               "retention_seconds": 60})  # fmt: skip
    assert [f.property for f in both.failures] == ["keep_finished_forever"]


def test_a_state_from_before_the_flag_upgrades_without_a_change(
    installed: dict[str, Any], db_url: str
) -> None:
    """A queue kept for ever by the old explicit null: its state has no flag and no retention;
    the same declaration today (Python's `retention_seconds=None`) is no change."""
    provider = QueueProvider()
    made = provider.create(declare(db_url, name="legacy", retention_seconds=None))
    old_state = {
        k: v
        for k, v in (made.outs or {}).items()
        if k not in ("keep_finished_forever", "retention_seconds")
    }
    news = declare(db_url, name="legacy", retention_seconds=None)
    assert news["keep_finished_forever"] is True
    assert provider.diff(made.id, old_state, news).changes is False
    kept = declare(db_url, name="legacy")  # the default now: an update, shown at preview
    assert provider.diff(made.id, old_state, kept).changes is True
