"""The schedule resource against the real engine SQL: preview validates and shows next run times
(also before supaqueue is installed, leaving nothing behind), create, in-place updates (a new
cron starts over; a payload change keeps the next slot), drift seen by read, delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from supaqueue.providers.queue import QueueProvider
from supaqueue.providers.schedule import ScheduleProvider
from tests.providers.conftest import REPO, failure_text, sql_value, uninstall


def queue(db_url: str, name: str = "scheduled") -> str:
    provider = QueueProvider()
    props = provider.check(
        {}, {"db_url": db_url, "name": name, "edge_function_name": "f", "paused": True}
    ).inputs
    return provider.create(props).id


def checked(db_url: str, queue_id: Any, **settings: Any) -> Any:
    props = {
        "db_url": db_url,
        "name": "nightly",
        "cron": "0 3 * * *",
        "queue_id": queue_id,
        "payload": {"kind": "daily"},
        **settings,
    }
    return ScheduleProvider().check({}, {**props, "schedule_id": None, "next_runs": None})


def declare(db_url: str, queue_id: Any, **settings: Any) -> dict[str, Any]:
    result = checked(db_url, queue_id, **settings)
    assert result.failures == [], result.failures
    return dict(result.inputs)


def test_preview_validates_and_shows_next_runs_before_install(db_url: str) -> None:
    uninstall(db_url)
    props = declare(
        db_url,
        "00000000-0000-0000-0000-000000000000",
        timezone="Europe/Paris",
        migrations_dir=str(REPO / "supaqueue" / "sql"),
    )
    assert props["timezone"] == "Europe/Paris"
    runs = [
        datetime.strptime(r, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) for r in props["next_runs"]
    ]
    assert len(runs) == 3 and runs == sorted(runs) and runs[0] > datetime.now(UTC)
    assert {r.hour for r in runs} <= {1, 2}  # 03:00 in Paris is 01:00 or 02:00 UTC
    bad = checked(db_url, "x", cron="61 * * * *").failures
    assert [(f.property, f.reason) for f in bad] == [
        ("cron", "minute field '61': values must be within 0-59")
    ]
    bad = checked(db_url, "x", timezone="Mars/Olympus").failures
    assert [f.property for f in bad] == ["timezone"]
    assert "unknown time zone 'Mars/Olympus'" in bad[0].reason
    bad = checked(db_url, "x", payload=[1, 2]).failures
    assert [f.property for f in bad] == ["payload"]
    # the evaluator ran in a transaction that was rolled back: nothing was installed
    assert sql_value(db_url, "select to_regnamespace('supaqueue') is null") is True


def test_create_update_read_delete(installed: dict[str, Any], db_url: str) -> None:
    provider = ScheduleProvider()
    q = queue(db_url)
    props = declare(db_url, q)
    assert props["timezone"] == "UTC" and len(props["next_runs"]) == 3
    created = provider.create(props)
    outs = created.outs or {}
    assert outs["schedule_id"] == created.id
    assert outs["next_run_at"] == outs["next_runs"][0]
    assert outs["next_run_at"].endswith("T03:00:00Z")
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "select queue::text, cron, timezone, payload from supaqueue.schedule where id = %s",
            (created.id,),
        ).fetchone()
    assert row == (q, "0 3 * * *", "UTC", {"kind": "daily"})
    read = provider.read(created.id, outs).outs or {}
    assert read == outs
    # the computed values never make a diff
    assert provider.diff(created.id, outs, {**props, "next_runs": ["other"]}).changes is False

    # A payload change keeps the next slot; a new cron starts over; both in place.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "update supaqueue.schedule set next_run_at = '2030-01-01T03:00Z' where id = %s",
            (created.id,),
        )
    outs = provider.read(created.id, outs).outs or {}
    news = declare(db_url, q, payload={"kind": "weekly"})
    diff = provider.diff(created.id, outs, news)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(created.id, outs, news).outs or {}
    assert updated["next_run_at"] == "2030-01-01T03:00:00Z"
    assert updated["payload"] == {"kind": "weekly"}
    news = declare(db_url, q, payload={"kind": "weekly"}, cron="*/5 * * * *")
    updated = provider.update(created.id, updated, news).outs or {}
    assert updated["schedule_id"] == created.id and updated["cron"] == "*/5 * * * *"
    next_run = datetime.strptime(updated["next_run_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert next_run.minute % 5 == 0 and next_run.year < 2030
    assert provider.diff(created.id, updated, {**news, "name": "other"}).replaces == ["name"]

    # Drift: a cron changed in SQL is seen by refresh.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "update supaqueue.schedule set cron = '0 4 * * *' where id = %s", (created.id,)
        )
    refreshed = provider.read(created.id, updated).outs or {}
    assert refreshed["cron"] == "0 4 * * *"
    assert provider.diff(created.id, refreshed, news).changes is True

    provider.delete(created.id, updated)
    assert sql_value(db_url, "select count(*) from supaqueue.schedule") == 0
    assert provider.read(created.id, updated).id == ""
    uninstall(db_url)
    provider.delete(created.id, updated)  # after uninstall: a no-op


def test_create_of_a_name_taken_outside_the_state_says_what_to_do(
    installed: dict[str, Any], db_url: str
) -> None:
    provider = ScheduleProvider()
    q = queue(db_url)
    existing = provider.create(declare(db_url, q)).id
    text = failure_text(lambda: provider.create(declare(db_url, q)))
    assert (
        f"NameTakenError: schedule 'nightly' already exists in the database (id {existing})" in text
    )
    assert "Traceback" not in text
    assert sql_value(db_url, "select count(*) from supaqueue.schedule") == 1


def test_a_schedule_deleted_in_sql_fails_preview_saying_to_refresh(
    installed: dict[str, Any], db_url: str
) -> None:
    provider = ScheduleProvider()
    props = declare(db_url, queue(db_url))
    created = provider.create(props)
    outs = created.outs or {}
    assert provider.diff(created.id, outs, props).changes is False
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("delete from supaqueue.schedule where id = %s", (created.id,))
    text = failure_text(lambda: provider.diff(created.id, outs, props))
    assert (
        f"schedule 'nightly' ({created.id}) is in this stack's state but not in the database"
        in text
    )
    assert "`pulumi refresh`" in text and "`pulumi up --refresh`" in text
    assert "remove it from the stack" in text and "Traceback" not in text
    # What the advice leads to: refresh forgets it, the next create makes it again.
    assert provider.read(created.id, outs).id == ""
    again = provider.create(props)
    assert again.id != created.id
    # Removing it from the stack instead: its delete finds nothing to do.
    sql_value(db_url, "delete from supaqueue.schedule where id = %s returning 1", again.id)
    provider.delete(again.id, again.outs or {})
    assert sql_value(db_url, "select count(*) from supaqueue.schedule") == 0
