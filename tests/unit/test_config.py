"""Stack config: YAML mapped to the component's arguments, the stack's own keys named when bad,
env fallback for target local. What the stack declares is judged by the component
(supaqueue/installation_spec.py): `declared_problems` runs that on what the config maps to."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.toolchain import REPO
from supaqueue.config import parse_stack_config
from supaqueue.errors import ConfigError
from supaqueue.installation import args_from_config
from supaqueue.installation_spec import installation_problems
from supaqueue.stack_file import stack_file_problems
from tests.support.stack_script import stand_in_pulumi

LOCAL_ENV = {
    "API_URL": "http://127.0.0.1:54321",
    "DB_URL": "postgresql://postgres:pw@127.0.0.1:54322/postgres",
    "PROJECT_REF": "abcdefghijklmnopqrst",
    "MANAGEMENT_API_URL": "http://127.0.0.1:54321",
    "ACCESS_TOKEN": "sbp_" + "a" * 40,
}
SUPABASE = {
    "target": "supabase",
    "projectRef": "qwertyuiopasdfghjklz",
    "accessToken": "sbp_" + "b" * 40,
    "dbUrl": "postgresql://postgres:pw@db.qwertyuiopasdfghjklz.supabase.co:5432/postgres",
}


def problems(values: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(values, env or {})
    return str(caught.value)


def declared_problems(values: dict[str, Any]) -> str:
    """What the component says of the stack config `values` (one per line)."""
    args = args_from_config(parse_stack_config(values, {}))
    return "\n".join(map(str, installation_problems(args)))


def test_local_target_takes_missing_values_from_the_environment() -> None:
    config = parse_stack_config({"target": "local", "demo": "true"}, LOCAL_ENV)
    assert config.project_ref == "abcdefghijklmnopqrst"
    assert config.db_url == LOCAL_ENV["DB_URL"]
    assert config.access_token == LOCAL_ENV["ACCESS_TOKEN"]
    assert config.functions_url == "http://127.0.0.1:54321/functions/v1"
    assert config.management_api_url == "http://127.0.0.1:54321"
    assert config.demo is True
    assert config.secret_version == "1"


def test_config_values_win_over_the_environment() -> None:
    config = parse_stack_config(
        {"target": "local", "dbUrl": "postgresql://u:p@127.0.0.1:1/db"}, LOCAL_ENV
    )
    assert config.db_url == "postgresql://u:p@127.0.0.1:1/db"


def test_local_target_without_the_environment_says_how_to_get_it() -> None:
    text = problems({"target": "local"}, {})
    for key, env in (("dbUrl", "DB_URL"), ("projectRef", "PROJECT_REF")):
        assert f"supaqueue:{key}: not set, and {env} is not in the environment" in text
    assert "supaqueue dev up" in text


def test_supabase_target_needs_explicit_secrets_and_defaults_urls() -> None:
    text = problems({"target": "supabase"}, LOCAL_ENV)
    assert "pulumi config set --secret supaqueue:dbUrl" in text
    no_token = {key: value for key, value in SUPABASE.items() if key != "accessToken"}
    text = declared_problems(no_token)
    assert "access_token: is required with installation: owner" in text
    assert "pulumi config set --secret supaqueue:accessToken" in text
    config = parse_stack_config(SUPABASE, LOCAL_ENV)
    assert config.api_url == "https://qwertyuiopasdfghjklz.supabase.co"
    assert config.management_api_url == "https://api.supabase.com"


def test_installation_modes() -> None:
    config = parse_stack_config(SUPABASE, LOCAL_ENV)
    assert (config.installation, config.drop_dependents_on_destroy) == (None, False)
    # A stack that only declares queues never calls the Management API: no token needed.
    external = {k: v for k, v in SUPABASE.items() if k != "accessToken"}
    config = parse_stack_config({**external, "installation": "external"}, {})
    assert config.installation == "external" and config.access_token == ""
    assert declared_problems({**external, "installation": "external"}) == ""
    assert "access_token: is required" in declared_problems(external)
    allowed = parse_stack_config({**SUPABASE, "dropDependentObjectsOnDestroy": "true"}, {})
    assert allowed.drop_dependents_on_destroy is True


def test_secrets_are_not_in_the_repr() -> None:
    config = parse_stack_config(SUPABASE, {})
    assert SUPABASE["accessToken"] not in repr(config)
    assert "pw@" not in repr(config)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"target": "cloud"}, "supaqueue:target: must be 'local'"),
        ({"taget": "local"}, "supaqueue:taget: unknown key"),
        ({"projectRef": "Not-A-Ref"}, "supaqueue:projectRef: must be the 20 lowercase letters"),
        ({"dbUrl": "host=="}, "supaqueue:dbUrl: is not a Postgres connection URL"),
        ({"apiUrl": "ftp://x"}, "supaqueue:apiUrl: must be an http(s) URL"),
        ({"demo": "maybe"}, "supaqueue:demo:"),
        ({"queues": {"name": "q"}}, "supaqueue:queues: must be a list"),
        (
            {"dropDependentObjectsOnDestroy": "yes"},
            "supaqueue:dropDependentObjectsOnDestroy: must be true or false, got 'yes'",
        ),
        ({"demo": "yes"}, "supaqueue:demo: must be true or false, got 'yes'"),
        ({"demo": "1"}, "supaqueue:demo: must be true or false, got '1'"),
        (
            {"secretVersion": "[1, 2]"},
            "supaqueue:secretVersion: must be a string or number (change it to rotate the "
            "secret), got a list [1, 2]",
        ),
        ({"secretVersion": '{"v": 1}'}, "supaqueue:secretVersion: must be a string or number"),
        ({"secretVersion": True}, "supaqueue:secretVersion: must be a string or number"),
        ({"dropDependentObjectsOnDestroy": 1}, "supaqueue:dropDependentObjectsOnDestroy: must"),
    ],
)
def test_bad_values_are_named(values: dict[str, Any], expected: str) -> None:
    text = problems({**SUPABASE, **values})
    assert expected in text
    assert "got None" not in text and "not valid JSON" not in text, text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"installation": "shared"}, "installation: must be 'owner'"),
        ({"chainMaxJobs": "1001"}, "chain_max_jobs: must be a whole number from 0 to 1000"),
        ({"chainMaxJobs": "-1"}, "chain_max_jobs: must be a whole number from 0 to 1000"),
        ({"chainMaxJobs": "5.5"}, "chain_max_jobs: must be a whole number"),
        ({"chainMaxJobs": True}, "chain_max_jobs: must be a whole number"),
        ({"chainMaxSeconds": "0"}, "chain_max_seconds: must be a whole number from 1 to"),
        ({"chainMaxSeconds": "121"}, "chain_max_seconds: must be a whole number"),
        ({"chainMaxSeconds": "1 min"}, "chain_max_seconds: must be a whole number"),
    ],
)
def test_bad_declarations_are_named_by_the_component(values: dict[str, Any], expected: str) -> None:
    """The config passes them on as written; the component's one check names them."""
    parse_stack_config({**SUPABASE, **values}, {})  # no problem of the stack config's own
    assert expected in declared_problems({**SUPABASE, **values})


def test_keepers_and_booleans_as_the_engine_passes_them() -> None:
    config = parse_stack_config(
        {
            **SUPABASE,
            "secretVersion": "2024-01",
            "demo": "False",
            "dropDependentObjectsOnDestroy": "TRUE",
        },
        {},
    )
    assert (config.secret_version, config.demo, config.drop_dependents_on_destroy) == (
        "2024-01",
        False,
        True,
    )
    assert parse_stack_config({**SUPABASE, "secretVersion": 3}, {}).secret_version == "3"
    assert parse_stack_config({**SUPABASE, "secretVersion": "[v2"}, {}).secret_version == "[v2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("config:\n  supaqueue:chainMaxSeconds: .nan\n", "supaqueue:chainMaxSeconds: .nan is not"),
        (
            "config:\n  supaqueue:queues:\n    - name: q\n      rate_limit_per_second: .inf\n",
            "supaqueue:queues[0].rate_limit_per_second: .inf is not",
        ),
        (
            "config:\n  supaqueue:queues:\n    - {name: q, timeout_ms: -1e400}\n",
            "supaqueue:queues[0].timeout_ms: -1e400 is not",
        ),
    ],
)
def test_nan_and_infinity_in_the_stack_file_are_named(text: str, expected: str) -> None:
    """The Pulumi CLI itself refuses them naming no key ("json: unsupported value: NaN"), before
    the program runs; scripts/pulumi-stack.sh checks the file first."""
    found = stack_file_problems(text)
    assert len(found) == 1 and found[0].startswith(expected), found
    assert "give a finite number" in found[0]
    fine = "config:\n  supaqueue:demo: true\n  supaqueue:secretVersion: '.nan'\n  x: 1e3\n"
    assert stack_file_problems(fine) == []


def test_the_stack_script_names_a_nan_before_pulumi_runs(tmp_path: Path) -> None:
    """A project folder of this checkout's code with a stand-in `pulumi` that must not run."""
    for name in ("supaqueue", ".venv"):
        (tmp_path / name).symlink_to(REPO / name)
    env = stand_in_pulumi(tmp_path, "s3://not-used")
    (tmp_path / "Pulumi.nan.yaml").write_text(
        "config:\n  supaqueue:queues:\n    - name: q\n      workers: .NaN\n"
    )
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "pulumi-stack.sh"), "nan", "preview"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert not (tmp_path / "pulumi-calls").exists()
    assert done.stderr.strip() == (
        "Pulumi.nan.yaml: supaqueue:queues[0].workers: .NaN is not a number Pulumi can read "
        "(no NaN or infinity in its config): give a finite number"
    )


def test_queue_problems_name_the_queue_and_field() -> None:
    queues = [
        {"name": "ok", "edge_function_name": "fn"},
        {
            "name": "1bad",
            "edge_function_name": "https://x.supabase.co/functions/v1/fn",
            "workers": -1,
            "method": "FETCH",
            "headers": {"X-Num": 5},
            "colour": "red",
        },
        {"name": "ok", "edge_function_name": "fn"},
    ]
    text = declared_problems({**SUPABASE, "queues": queues})
    assert "queue '1bad'.name: '1bad' is not a valid slug" in text
    assert "queue '1bad'.edge_function_name: must be a function slug" in text
    assert "not a URL" in text
    assert "queue '1bad'.workers: must be at least 1, got -1" in text
    assert "queue '1bad'.method: must be one of GET, POST, PUT, PATCH, DELETE" in text
    assert "queue '1bad'.headers: value of header 'X-Num' must be a string" in text
    assert "queue '1bad'.colour: unknown key" in text
    assert "queues[2].name: 'ok' is declared twice" in text
    assert "queues[0].name: is required" in declared_problems({**SUPABASE, "queues": [{}]})


def test_hold_on_retry_after_from_yaml_is_judged_naming_the_queue_and_field() -> None:
    held = {"name": "held", "edge_function_name": "fn", "hold_on_retry_after": "queue"}
    assert declared_problems({**SUPABASE, "queues": [held]}) == ""
    bad = {**held, "hold_on_retry_after": "tenant"}
    assert "queue 'held'.hold_on_retry_after: must be one of job, key, queue, got 'tenant'" in (
        declared_problems({**SUPABASE, "queues": [bad]})
    )


def test_queues_arrive_as_json_text_from_the_engine_and_are_passed_on_as_written() -> None:
    """Defaults are the Queue resource's to apply (tests/unit/test_wiring.py), once."""
    config = parse_stack_config(
        {**SUPABASE, "queues": '[{"name": "emails", "edge_function_name": "send-email"}]'}, {}
    )
    assert config.queues == [{"name": "emails", "edge_function_name": "send-email"}]


def stack_file(name: str) -> dict[str, Any]:
    config = yaml.safe_load((REPO / name).read_text())["config"]
    return {key.removeprefix("supaqueue:"): value for key, value in config.items()}


def test_the_dev_stack_file_is_valid_with_the_local_stack_environment() -> None:
    config = parse_stack_config(stack_file("Pulumi.dev.yaml"), LOCAL_ENV)
    assert config.target == "local" and config.demo is True
    assert [q["name"] for q in config.queues] == ["demo-echo", "demo-pipeline"]
    assert {q["edge_function_name"] for q in config.queues} == {"demo-target"}


def test_the_prod_example_is_valid_once_its_secrets_are_set() -> None:
    values = stack_file("Pulumi.prod.example.yaml")
    assert "accessToken" not in values and "dbUrl" not in values  # secrets stay out of files
    text = problems(values)
    assert "pulumi config set --secret supaqueue:dbUrl" in text
    assert "supaqueue:accessToken" in declared_problems({**values, "dbUrl": SUPABASE["dbUrl"]})
    config = parse_stack_config(
        {**values, "accessToken": SUPABASE["accessToken"], "dbUrl": SUPABASE["dbUrl"]}, {}
    )
    assert config.target == "supabase"
    assert [q["name"] for q in config.queues] == ["emails", "thumbnails"]


@pytest.mark.parametrize(
    ("key", "url"),
    [("apiUrl", "http://[::1"), ("managementApiUrl", "https://api.supabase.com:443x")],
)
def test_a_malformed_url_is_a_config_error_not_a_traceback(key: str, url: str) -> None:
    text = problems({"target": "local", key: url}, LOCAL_ENV)
    assert f"supaqueue:{key}: is not a valid URL" in text


def test_retired_service_role_key_is_ignored_with_a_warning() -> None:
    """`serviceRoleKey` was parsed and documented but never used: a stack that still sets it
    deploys as before, told to remove it; the value itself never appears."""
    config = parse_stack_config({**SUPABASE, "serviceRoleKey": "eyJ-very-secret"}, {})
    [warning] = config.warnings
    assert warning.startswith("supaqueue:serviceRoleKey: is no longer used")
    assert "pulumi config rm supaqueue:serviceRoleKey" in warning
    assert "eyJ-very-secret" not in warning + repr(config)
    assert parse_stack_config(SUPABASE, {}).warnings == ()


def test_project_ref_with_a_trailing_newline_is_refused() -> None:
    text = problems({**SUPABASE, "projectRef": "qwertyuiopasdfghjklz\n"})
    assert "supaqueue:projectRef: must be the 20 lowercase letters" in text


def test_the_chain_budget_is_stack_config() -> None:
    """Set: the component's arguments (test_wiring: the settings rows). Unset: none."""
    config = parse_stack_config({**SUPABASE, "chainMaxJobs": "100", "chainMaxSeconds": 30}, {})
    assert config.chain_budget == {"chain_max_jobs": 100, "chain_max_seconds": 30}
    config = parse_stack_config({**SUPABASE, "chainMaxJobs": "0"}, {})
    assert config.chain_budget == {"chain_max_jobs": 0}
    assert parse_stack_config(SUPABASE, {}).chain_budget == {}


def test_an_external_stack_cannot_set_the_installations_chain_budget() -> None:
    text = declared_problems({**SUPABASE, "installation": "external", "chainMaxSeconds": "30"})
    assert "chain_max_seconds: the chain budget belongs to the installation" in text


def test_data_api_is_a_boolean_of_the_owning_stack() -> None:
    assert parse_stack_config(SUPABASE, {}).data_api is False
    assert parse_stack_config({**SUPABASE, "dataApi": "true"}, {}).data_api is True
    assert "supaqueue:dataApi: must be true or false" in problems({**SUPABASE, "dataApi": "yes"})
    text = declared_problems({**SUPABASE, "installation": "external", "dataApi": True})
    assert "data_api: the Data API exposure belongs to the installation" in text


def test_a_required_queue_setting_given_as_an_output_is_not_missing() -> None:
    """A `Queue` resource's name or function given as another resource's output is judged by
    the provider's check once known: the program does not call it missing."""
    import pulumi

    from supaqueue.providers.queue.spec import queue_problems

    later = pulumi.Output.from_input
    args = {"name": later("emails"), "edge_function_name": later("send-email"), "workers": 0}
    assert [str(p) for p in queue_problems(args, "queue 'q'")] == [
        "queue 'q'.workers: must be at least 1, got 0"
    ]
