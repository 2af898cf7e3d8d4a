"""The real `__main__.py` under Pulumi mocks: stack config in, resources and exports out."""

from __future__ import annotations

import json
import runpy
from typing import Any

import pulumi
import pytest
from pulumi.runtime import config as runtime_config

from harness.toolchain import REPO
from supaqueue.errors import ConfigError
from tests.unit.test_wiring import Recorder, RecordingMonitor, by_name

CONFIG = {
    "supaqueue:target": "supabase",
    "supaqueue:projectRef": "qwertyuiopasdfghjklz",
    "supaqueue:accessToken": "sbp_" + "d" * 40,
    "supaqueue:dbUrl": "postgresql://postgres:pw@db.example:5432/postgres",
    "supaqueue:queues": json.dumps([{"name": "emails", "edge_function_name": "send-email"}]),
}


@pytest.fixture
def monitor() -> RecordingMonitor:
    recorder = RecordingMonitor(Recorder())
    pulumi.runtime.set_mocks(Recorder(), preview=False, monitor=recorder)
    return recorder


def run_program(config: dict[str, str]) -> None:
    runtime_config.set_all_config(config, ["supaqueue:accessToken", "supaqueue:dbUrl"])

    @pulumi.runtime.test
    def program() -> Any:
        runpy.run_path(str(REPO / "__main__.py"), run_name="__main__")

    try:
        program()
    finally:
        runtime_config.set_all_config({}, [])


def test_the_program_declares_the_installation_from_stack_config(
    monitor: RecordingMonitor,
) -> None:
    run_program(CONFIG)
    regs = by_name(monitor)
    assert regs["supaqueue"].type == "supaqueue:index:Supaqueue"
    assert regs["supaqueue-queue-emails"].type == "supaqueue:index:Queue"
    assert "supaqueue-demo-function" not in regs  # demo defaults to false
    function = regs["supaqueue-function"].raw.fields
    assert function["project_ref"].string_value == "qwertyuiopasdfghjklz"
    assert function["management_api_url"].string_value == "https://api.supabase.com"
    assert function["source_dir"].string_value == str(REPO / "supaqueue" / "edge")
    settings = regs["supaqueue-settings"].raw.fields["values"].struct_value.fields
    expected = "https://qwertyuiopasdfghjklz.supabase.co/functions/v1"
    assert settings["functions_url"].string_value == expected
    assert regs["supaqueue-schema"].is_secret("db_url")


def test_bad_stack_config_stops_the_program_with_every_problem(
    monitor: RecordingMonitor,
) -> None:
    """The stack's own keys are named by the config, all at once; what it declares by the
    component, all at once; both before any resource."""
    bad_queue = json.dumps([{"name": "q"}, {"name": "r", "edge_function_name": "f", "workers": 0}])
    for bad, expected in (
        ({"supaqueue:colour": "x", "supaqueue:projectRef": "x"}, ["supaqueue:colour: unknown key",
                                                                  "supaqueue:projectRef: must"]),
        ({"supaqueue:queues": bad_queue}, ["queue 'q'.edge_function_name: is required",
                                           "queue 'r'.workers: must be at least 1, got 0"]),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            run_program({**CONFIG, **bad})
        for line in expected:
            assert line in str(caught.value)
        # Only the stack itself was registered: nothing half-declared.
        assert by_name(monitor) == {}
        assert isinstance(caught.value, pulumi.RunError)  # printed without a traceback
