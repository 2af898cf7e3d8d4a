"""What the plugin's Construct hands the Python `Supaqueue` component (supaqueue/provider/
construct.py): the wire's inputs as the component takes them."""

from __future__ import annotations

import os

import pulumi
import pytest

from supaqueue.errors import ConfigError
from supaqueue.provider.construct import component_args


def test_the_wire_inputs_become_the_component_arguments() -> None:
    args = component_args(
        {
            "project_ref": "abcdefghijklmnopqrst",
            "db_url": "postgresql://u:p@127.0.0.1:1/db",
            "access_token": "sbp_x",
            "chain_max_jobs": 10.0,  # the wire carries doubles
            "edge_dir": "edge",
            "queues": {
                "emails": {"edge_function_name": "f", "workers": 2.0, "backoff_jitter": 0.5},
                "reports": {"edge_function_name": "f", "keep_finished_forever": True},
            },
            "schedules": [{"name": "s", "cron": "0 3 * * *", "queue": "reports"}],
            "demo": None,  # dropped: the component's default applies
        }
    )
    assert isinstance(args["db_url"], pulumi.Output)  # secret (the schema says so)
    assert isinstance(args["access_token"], pulumi.Output)
    assert args["chain_max_jobs"] == 10 and isinstance(args["chain_max_jobs"], int)
    assert args["edge_dir"] == os.path.abspath("edge")
    assert args["queues"] == [
        {"name": "emails", "edge_function_name": "f", "workers": 2, "backoff_jitter": 0.5},
        {"name": "reports", "edge_function_name": "f", "keep_finished_forever": True},
    ]
    assert isinstance(args["queues"][0]["workers"], int)
    assert "demo" not in args


def test_a_map_entry_naming_another_queue_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"queues.emails.name: 'other' differs from its key"):
        component_args({"queues": {"emails": {"name": "other", "edge_function_name": "f"}}})


def test_an_output_where_the_component_needs_a_value_is_named() -> None:
    later = pulumi.Output.from_input("http://127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"  - api_url: is another resource's output"):
        component_args({"api_url": later, "db_url": "postgresql://u:p@127.0.0.1:1/db"})
