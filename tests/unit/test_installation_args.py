"""The component judges its arguments once, before anything is registered, whichever way they
were written (stack config or Python); Deno is looked up only where a source needs checking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest

import supaqueue.installation as installation
from supaqueue.config import parse_stack_config
from supaqueue.errors import ConfigError
from supaqueue.installation import Supaqueue, SupaqueueArgs, args_from_config
from tests.unit.test_wiring import ENV, QUEUES, Recorder, RecordingMonitor, by_name

TOKEN = "sbp_" + "e" * 40


@pytest.fixture(name="monitor")
def recording_monitor() -> RecordingMonitor:
    """As tests/unit/test_wiring.py's `monitor`."""
    recorder = RecordingMonitor(Recorder())
    pulumi.runtime.set_mocks(Recorder(), preview=False, monitor=recorder)
    return recorder


@pytest.fixture(name="edge_dir")
def function_folders(tmp_path: Path) -> Path:
    """Function sources of the program's own (not the shipped ones)."""
    for slug in ("supaqueue", "demo-target"):
        (tmp_path / slug).mkdir()
        (tmp_path / slug / "index.ts").write_text("Deno.serve(() => new Response());\n")
    return tmp_path


def python_args(**extra: Any) -> SupaqueueArgs:
    """Arguments as a Python program writes them (no stack config)."""
    args = SupaqueueArgs(
        project_ref="abcdefghijklmnopqrst",
        db_url="postgresql://postgres:pw@127.0.0.1:54322/postgres",
        access_token=TOKEN,
        api_url="http://127.0.0.1:54321",
        queues=[dict(queue) for queue in QUEUES],  # type: ignore[misc]
    )
    args.update(extra)  # type: ignore[typeddict-item]
    return args


def refused(monitor: RecordingMonitor, args: SupaqueueArgs) -> str:
    """The component's refusal; nothing at all was registered (not even the component)."""
    message: list[str] = []

    @pulumi.runtime.test
    def program() -> None:
        with pytest.raises(ConfigError) as caught:
            Supaqueue("sq", args)
        message.append(str(caught.value))

    program()
    assert by_name(monitor) == {}
    return message[0]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # Before: the identity and preflight were registered, then the error was raised.
        ({"access_token": None}, "access_token: is required with installation: owner"),
        # Before: not judged by the component at all (the database refused them at `up`).
        (
            {"queues": [{"name": "a", "edge_function_name": "f", "dead_letter_queue": "nope"}]},
            "queue 'a'.dead_letter_queue: 'nope' is not one of the queues declared here (a)",
        ),
        (
            {
                "queues": [
                    {"name": "a", "edge_function_name": "f", "dead_letter_queue": "b"},
                    {"name": "b", "edge_function_name": "f", "dead_letter_queue": "a"},
                ]
            },
            "queue 'a'.dead_letter_queue: dead letters would loop (a -> b -> a)",
        ),
        # Before: two resources of one name, which the engine refuses with a URN error.
        ({"queues": [QUEUES[0], QUEUES[0]]}, "queues[1].name: 'emails' is declared twice"),
        ({"installation": "shared"}, "installation: must be 'owner'"),
        ({"installation": "external", "data_api": True}, "data_api: the Data API exposure"),
        ({"demo": True, "edge_dir": None}, "edge_dir: is required with demo"),
    ],
)
def test_the_python_api_is_judged_as_the_stack_config_is(
    monitor: RecordingMonitor, edge_dir: Path, extra: dict[str, Any], expected: str
) -> None:
    args = python_args(**{"edge_dir": str(edge_dir), **extra})
    for key in ("access_token", "edge_dir"):  # None: left out
        if key in extra and extra[key] is None:
            del args[key]  # type: ignore[misc]
    assert expected in refused(monitor, args)


def test_every_problem_at_once_each_named(monitor: RecordingMonitor, edge_dir: Path) -> None:
    args = python_args(
        edge_dir=str(edge_dir),
        chain_max_jobs=5000,
        queues=[{"name": "emails", "edge_function_name": "f", "workers": 0}, {"workers": 2}],
        triggers=[{"name": "t", "table": "orders", "events": ["INSERT"], "queue": "emails"}],
    )
    lines = refused(monitor, args).splitlines()
    assert lines[0] == "invalid supaqueue arguments:"
    assert lines[1:] == [
        "  - chain_max_jobs: must be a whole number from 0 to 1000, the jobs one dispatcher "
        "invocation may run (0 or 1: no chaining); got 5000",
        "  - queue 'emails'.workers: must be at least 1, got 0",
        "  - queues[1].name: is required",
        "  - queues[1].edge_function_name: is required",
        "  - trigger 't'.table: must be a schema-qualified table name such as 'public.orders', "
        "got 'orders'",
    ]


def no_deno(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A machine without Deno; returns the list of lookups made."""
    lookups: list[str] = []

    def find_deno() -> None:
        lookups.append("deno")

    monkeypatch.setattr(installation, "find_deno", find_deno)
    return lookups


def test_an_external_stack_never_looks_for_deno(
    monitor: RecordingMonitor, edge_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: `deno is not installed` stopped a stack that deploys no function."""
    lookups = no_deno(monkeypatch)
    config = parse_stack_config({"target": "local", "installation": "external"}, ENV)

    @pulumi.runtime.test
    def program() -> Any:
        args = args_from_config(config)
        args["edge_dir"] = str(edge_dir)
        args["dispatcher_dir"] = str(edge_dir / "supaqueue")
        return Supaqueue("sq", args).queue_ids

    program()
    assert lookups == []
    assert not any(r.type.startswith("command:") for r in monitor.registrations)


def test_the_shipped_function_needs_no_deno(
    monitor: RecordingMonitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without `dispatcher_dir` the component deploys the function shipped in the package, which
    our CI type-checks: no `deno check` resource, no Deno lookup (a user's machine may lack it)."""
    lookups = no_deno(monkeypatch)

    @pulumi.runtime.test
    def program() -> Any:
        return Supaqueue("sq", python_args()).queue_ids

    program()
    regs = by_name(monitor)
    assert lookups == []
    assert "sq-function" in regs and "sq-deno-check" not in regs


def test_a_source_of_ones_own_needs_deno(
    monitor: RecordingMonitor, edge_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A function folder the program names is type-checked before anything changes: without
    Deno, the component says so before registering anything."""
    no_deno(monkeypatch)
    for own in (
        {"dispatcher_dir": str(edge_dir / "supaqueue")},
        {"edge_dir": str(edge_dir), "demo": True},
    ):
        monitor.registrations.clear()
        assert "deno is not installed" in refused(monitor, python_args(**own))
