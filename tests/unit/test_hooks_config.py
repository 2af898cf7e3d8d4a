"""Triggers and schedules in the stack config and the component: each problem named by its key,
queues referenced by name must be declared here, one resource each, after (depending on) its
queue, named `<installation>-trigger-<name>` / `<installation>-schedule-<name>`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from supaqueue.config import parse_stack_config
from supaqueue.errors import ConfigError
from supaqueue.installation import Supaqueue, args_from_config
from supaqueue.installation_spec import installation_problems
from supaqueue.providers.schedule import Schedule
from supaqueue.providers.trigger import Trigger
from tests.unit.test_wiring import ENV, QUEUES, TYPE_PREFIX, Recorder, RecordingMonitor, by_name

TRIGGER = {"name": "new-orders", "table": "public.orders", "events": ["insert", "UPDATE"],
           "queue": "emails", "when": " NEW.status = 'paid' "}  # fmt: skip
SCHEDULE = {"name": "nightly", "cron": "0 3 * * *", "queue": "thumbs"}


@pytest.fixture(name="monitor")
def recording_monitor() -> RecordingMonitor:
    """As tests/unit/test_wiring.py's `monitor`."""
    recorder = RecordingMonitor(Recorder())
    pulumi.runtime.set_mocks(Recorder(), preview=False, monitor=recorder)
    return recorder


@pytest.fixture(name="edge_dir")
def function_folders(tmp_path: Path) -> Path:
    for slug in ("supaqueue", "demo-target"):
        (tmp_path / slug).mkdir()
        (tmp_path / slug / "index.ts").write_text("Deno.serve(() => new Response());\n")
    return tmp_path


def problems(**values: Any) -> str:
    """The stack config's problems, or else the component's (each names its field)."""
    try:
        config = parse_stack_config({"target": "local", "queues": QUEUES, **values}, ENV)
    except ConfigError as caught:
        return str(caught)
    return "\n".join(map(str, installation_problems(args_from_config(config))))


def test_triggers_and_schedules_are_passed_on_as_written() -> None:
    """Their resources normalize and fill defaults (test_one_resource_each_after_its_queue)."""
    config = parse_stack_config(
        {
            "target": "local",
            "queues": QUEUES,
            # the engine hands objects over as JSON text
            "triggers": json.dumps([TRIGGER]),
            "schedules": json.dumps([SCHEDULE]),
        },
        ENV,
    )
    assert config.triggers == [TRIGGER]
    assert config.schedules == [SCHEDULE]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"triggers": [{**TRIGGER, "queue": "nope"}]},
         "trigger 'new-orders'.queue: 'nope' is not one of the queues declared here"),
        ({"triggers": [{**TRIGGER, "table": "orders"}]},
         "trigger 'new-orders'.table: must be a schema-qualified table name"),
        ({"triggers": [{**TRIGGER, "events": []}]},
         "trigger 'new-orders'.events: must be a non-empty list"),
        ({"triggers": [{**TRIGGER, "name": "x" * 41}]},
         f"trigger {'x' * 41!r}.name: is longer than 40 characters"),
        ({"triggers": [TRIGGER, TRIGGER]},
         "triggers[1].name: 'new-orders' is declared twice"),
        ({"triggers": [{"name": "t"}]}, "trigger 't'.table: is required"),
        ({"triggers": [{"table": "public.t"}]}, "triggers[0].name: is required"),
        ({"triggers": {"name": "t"}}, "supaqueue:triggers: must be a list of objects"),
        ({"schedules": [{**SCHEDULE, "payload": [1]}]},
         "schedule 'nightly'.payload: must be a JSON object, got list"),
        ({"schedules": [{**SCHEDULE, "cron": ""}]},
         "schedule 'nightly'.cron: must be a non-empty string"),
        ({"schedules": [{**SCHEDULE, "every": "1h"}]},
         "schedule 'nightly'.every: unknown key"),
        ({"schedules": [{**SCHEDULE, "queue": "emails"}, {**SCHEDULE, "queue": "gone"}]},
         "schedule 'nightly'.queue: 'gone' is not one of the queues declared here"),
    ],
)  # fmt: skip
def test_bad_triggers_and_schedules_are_named(values: dict[str, Any], expected: str) -> None:
    assert expected in problems(**values)


def deploy(edge_dir: Path, **values: Any) -> Supaqueue:
    config = parse_stack_config(
        {"target": "local", "queues": QUEUES, "triggers": [TRIGGER], "schedules": [SCHEDULE],
         **values},
        ENV,
    )  # fmt: skip
    args = args_from_config(config)
    args["edge_dir"] = str(edge_dir)
    return Supaqueue("sq", args)


def test_one_resource_each_after_its_queue(monitor: RecordingMonitor, edge_dir: Path) -> None:
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        sq = deploy(edge_dir)
        return sq.schedule_next_runs.apply(lambda runs: resolved.update(runs=runs))

    program()
    names = by_name(monitor)
    trigger = names["sq-trigger-new-orders"]
    schedule = names["sq-schedule-nightly"]
    assert trigger.type == TYPE_PREFIX + "Trigger" and schedule.type == TYPE_PREFIX + "Schedule"
    assert trigger.parent == schedule.parent == names["sq"].urn
    assert names["sq-queue-emails"].urn in trigger.dependencies
    assert names["sq-queue-thumbs"].urn in schedule.dependencies
    assert names["sq-schema"].urn in trigger.dependencies
    assert trigger.is_secret("db_url") and schedule.is_secret("db_url")
    fields = trigger.raw.fields
    assert fields["table"].string_value == "public.orders"
    assert [v.string_value for v in fields["events"].list_value.values] == ["INSERT", "UPDATE"]
    assert fields["when"].string_value == "NEW.status = 'paid'"
    assert set(resolved["runs"]) == {"nightly"}


def test_python_api_needs_a_queue_resource(monitor: RecordingMonitor, edge_dir: Path) -> None:
    @pulumi.runtime.test
    def program() -> None:
        sq = deploy(edge_dir, triggers=[], schedules=[])
        with pytest.raises(ConfigError, match=r"trigger 't'.queue: must be a declared Queue"):
            Trigger("t", {**TRIGGER, "name": "t", "queue": "emails"}, installation=sq)  # type: ignore[typeddict-item,arg-type]
        with pytest.raises(ConfigError, match=r"schedule 's'.cron: must be a non-empty string"):
            Schedule("s", {"name": "s", "cron": " ", "queue": sq.queues["emails"]}, installation=sq)
        Schedule(
            "s", {"name": "s", "cron": "@daily", "queue": sq.queues["emails"]}, installation=sq
        )

    program()
    assert "s" in by_name(monitor)


def test_a_bad_trigger_of_the_component_fails_before_any_child_is_declared(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    config = parse_stack_config({"target": "local", "queues": QUEUES}, ENV)
    args = args_from_config(config)
    args["edge_dir"] = str(edge_dir)
    args["triggers"] = [{**TRIGGER, "queue": "unknown"}]

    @pulumi.runtime.test
    def program() -> None:
        with pytest.raises(ConfigError, match=r"'unknown' is not one of the queues declared here"):
            Supaqueue("sq", args)

    program()
    component = TYPE_PREFIX + "Supaqueue"
    declared = [r.name for r in monitor.registrations if r.type.startswith(TYPE_PREFIX)]
    assert [name for name in declared if by_name(monitor)[name].type != component] == []


def test_with_an_external_installation_too(monitor: RecordingMonitor, edge_dir: Path) -> None:
    """A stack that only declares queues in another stack's installation declares its triggers
    and schedules too: they belong to it, after its queues; the destroy guard (owner mode only)
    is not involved."""

    @pulumi.runtime.test
    def program() -> Any:
        return deploy(edge_dir, installation="external").queue_ids

    program()
    regs = by_name(monitor)
    assert {name for name in regs if name.startswith(("sq-trigger", "sq-schedule"))} == {
        "sq-trigger-new-orders",
        "sq-schedule-nightly",
    }
    assert regs["sq-external"].urn in regs["sq-trigger-new-orders"].dependencies
    assert regs["sq-queue-emails"].urn in regs["sq-trigger-new-orders"].dependencies
    assert regs["sq-queue-thumbs"].urn in regs["sq-schedule-nightly"].dependencies


def test_the_destroy_guard_goes_first(monitor: RecordingMonitor, edge_dir: Path) -> None:
    """Owner mode: the guard depends on the triggers and schedules, so a destroy checks before
    anything is removed."""

    @pulumi.runtime.test
    def program() -> Any:
        return deploy(edge_dir).queue_ids

    program()
    regs = by_name(monitor)
    guard = regs["sq-destroy-guard"].dependencies
    assert regs["sq-trigger-new-orders"].urn in guard
    assert regs["sq-schedule-nightly"].urn in guard


def test_settings_given_as_outputs_are_passed_on_not_refused(
    monitor: RecordingMonitor, edge_dir: Path
) -> None:
    """A trigger's events or condition, a schedule's cron or payload, given as another
    resource's output (a config secret, a computed value): judged by the provider's check once
    known, normalized as plain values are. Before, events and when were refused as not a list /
    not a string, and an output payload raised a TypeError."""
    later = pulumi.Output.from_input

    @pulumi.runtime.test
    def program() -> None:
        sq = deploy(edge_dir, triggers=[], schedules=[])
        Trigger(
            "t",
            {"name": later("t"), "table": later("public.orders"),
             "events": later(["update", "insert"]), "when": later(" NEW.status = 'paid' "),
             "queue": sq.queues["emails"]},
            installation=sq,
        )  # fmt: skip
        Schedule(
            "s",
            {"name": later("s"), "cron": later("@daily"), "timezone": later("Europe/Paris"),
             "payload": pulumi.Output.secret({"token": "x"}), "queue": sq.queues["emails"]},
            installation=sq,
        )  # fmt: skip

    program()
    trigger, schedule = by_name(monitor)["t"].raw.fields, by_name(monitor)["s"].raw.fields
    assert [v.string_value for v in trigger["events"].list_value.values] == ["INSERT", "UPDATE"]
    assert trigger["when"].string_value == "NEW.status = 'paid'"
    assert trigger["table"].string_value == "public.orders"
    assert schedule["cron"].string_value == "@daily"
    assert schedule["timezone"].string_value == "Europe/Paris"
    assert by_name(monitor)["s"].is_secret("payload")
