"""The keyword form `pulumi import` prints (`supaqueue.Queue("q", name="q", ..., opts=...)`):
without an installation, or given both ways, it is refused saying what to do, before any
resource is registered (the whole path: tests/e2e/test_import.py)."""

from __future__ import annotations

import pulumi
import pytest

import supaqueue
from supaqueue.errors import ConfigError


@pytest.mark.parametrize("kind", ["Queue", "Trigger", "Schedule"])
def test_no_installation_is_refused_naming_both_ways_to_give_it(kind: str) -> None:
    resource = getattr(supaqueue, kind)
    with pytest.raises(ConfigError) as caught:
        resource("x", name="x", edge_function_name="f", opts=pulumi.ResourceOptions())
    said = str(caught.value)
    assert f"{kind.lower()} 'x': no installation" in said
    assert "installation=" in said and "parent" in said


def test_settings_as_a_dict_and_as_keywords_at_once_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        supaqueue.Queue("x", {"name": "x", "edge_function_name": "f"}, workers=2)
    assert "not both" in str(caught.value) and "workers" in str(caught.value)


def test_the_package_exports_what_the_printed_code_uses() -> None:
    assert {"Supaqueue", "Queue", "Trigger", "Schedule"} <= set(supaqueue.__all__)
    with pytest.raises(AttributeError):
        _ = supaqueue.Nope  # type: ignore[attr-defined]
