"""The README's stack-config fragments, put in a minimal stack file, go through the real config
path (stack file check, parse_stack_config, args_from_config, installation_problems, as
`pulumi preview` runs it) without a problem, and give the values the README's prose says."""

from __future__ import annotations

import re
from typing import Any

import yaml

from supaqueue.chain_budget import CHAIN_SETTINGS
from supaqueue.config import StackConfig, parse_stack_config
from supaqueue.installation import args_from_config
from supaqueue.installation_spec import installation_problems
from supaqueue.stack_file import stack_file_problems
from tests.support.readme import block

# What the prod example sets, its secrets given (tests/unit/test_config.py)
BASE = (
    "config:\n"
    "  supaqueue:target: supabase\n"
    "  supaqueue:projectRef: qwertyuiopasdfghjklz\n"
    "  supaqueue:accessToken: sbp_" + "b" * 40 + "\n"
    "  supaqueue:dbUrl: postgresql://postgres:pw@db.qwertyuiopasdfghjklz.supabase.co:5432/postgres\n"
)
# The queues the fragments name
QUEUES = (
    "  supaqueue:queues:\n"
    "    - {name: emails, edge_function_name: send-email}\n"
    "    - {name: reports, edge_function_name: report}\n"
)


def accepted(stack_file: str) -> tuple[StackConfig, dict[str, Any]]:
    """The config of `stack_file`, which the stack file check, the config and the component
    all accept."""
    assert stack_file_problems(stack_file) == []
    raw = yaml.safe_load(stack_file)["config"]
    values = {key.removeprefix("supaqueue:"): value for key, value in raw.items()}
    config = parse_stack_config(values, {})
    args = dict(args_from_config(config))
    assert [str(problem) for problem in installation_problems(args)] == []
    return config, args


def test_the_chain_budget_block() -> None:
    text = block(
        "supaqueue:chainMaxJobs: 100        # 0-1000, default 50; 0 or 1: no chaining"
    ).text
    config, args = accepted(BASE + text)
    assert config.chain_budget == {"chain_max_jobs": 100, "chain_max_seconds": 60}
    assert (args["chain_max_jobs"], args["chain_max_seconds"]) == (100, 60)  # SupaqueueArgs
    # the comments' ranges are the ones preview enforces
    ranges = dict(re.findall(r"supaqueue:(\w+): \d+ +# (\d+-\d+)", text))
    assert ranges == {s.config_key: f"{s.minimum}-{s.maximum}" for s in CHAIN_SETTINGS}


def test_the_batch_queue_block() -> None:
    text = block("- name: emails").text
    config, _ = accepted(BASE + "  supaqueue:queues:\n" + text)
    assert config.queues == [
        {
            "name": "emails",
            "edge_function_name": "send-email",
            "workers": 100,
            "batch_size": 50,
            "batch_max_wait_ms": 200,
        }
    ]


def test_the_trigger_block() -> None:
    config, _ = accepted(BASE + QUEUES + block("supaqueue:triggers:").text)
    assert config.triggers == [
        {
            "name": "paid-orders",
            "table": "public.orders",
            "events": ["INSERT", "UPDATE"],
            "queue": "emails",
            "when": "NEW.status = 'paid'",
        }
    ]


def test_the_schedule_block() -> None:
    config, _ = accepted(BASE + QUEUES + block("supaqueue:schedules:").text)
    assert config.schedules == [
        {
            "name": "nightly-report",
            "cron": "0 3 * * *",
            "timezone": "Europe/Paris",
            "queue": "reports",
            "payload": {"kind": "daily"},
        }
    ]
