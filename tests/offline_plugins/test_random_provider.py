"""The offline random plugin over real gRPC: RandomPassword rules, secrets, diffs, errors."""

from __future__ import annotations

import json
import string
from collections.abc import Iterator

import bcrypt
import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import provider_pb2

from offline_plugins.common.properties import UNKNOWN, is_secret, reveal, secret
from offline_plugins.random_provider.password import DEFAULT_SPECIAL
from tests.offline_plugins.provider_client import PluginProcess

PASSWORD = "random:index/randomPassword:RandomPassword"
SPECIAL = set(DEFAULT_SPECIAL)


@pytest.fixture(scope="module")
def plugin() -> Iterator[PluginProcess]:
    # Flags the CLI may add must be accepted and ignored.
    with PluginProcess("offline_plugins.random_provider", "--logtostderr", "-v=9") as proc:
        yield proc
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr


def make(plugin: PluginProcess, **news: object) -> tuple[str, dict[str, object]]:
    inputs = plugin.checked(PASSWORD, "pw", dict(news))
    return plugin.create(PASSWORD, "pw", inputs)


def test_reports_the_version_the_wheel_requests(plugin: PluginProcess) -> None:
    assert plugin.plugin_version() == "4.21.4"


def test_configure_and_handshake_accept_secrets_and_previews(plugin: PluginProcess) -> None:
    configured = plugin.rpc.Configure(provider_pb2.ConfigureRequest(acceptSecrets=True))
    assert configured.acceptSecrets and configured.supportsPreview and configured.acceptResources
    shook = plugin.rpc.Handshake(provider_pb2.ProviderHandshakeRequest(engine_address="x"))
    assert shook.accept_secrets and shook.accept_resources
    assert plugin.rpc.GetMapping(provider_pb2.GetMappingRequest(key="tf")).data == b""
    plugin.rpc.Cancel(empty_pb2.Empty())


def test_defaults_and_secret_outputs(plugin: PluginProcess) -> None:
    resource_id, outs = make(plugin, length=40)
    assert resource_id == "none"
    for key in ("lower", "upper", "numeric", "number", "special"):
        assert outs[key] is True
    for key in ("minLower", "minUpper", "minNumeric", "minSpecial"):
        assert outs[key] == 0
    assert is_secret(outs["result"]) and is_secret(outs["bcryptHash"])
    result = reveal(outs["result"])
    assert len(result) == 40
    assert set(result) <= set(string.ascii_letters + string.digits) | SPECIAL
    bcrypt_hash = reveal(outs["bcryptHash"])
    assert bcrypt_hash.startswith("$2a$10$")
    assert bcrypt.checkpw(result.encode(), bcrypt_hash.encode())


def test_each_password_is_new(plugin: PluginProcess) -> None:
    results = {reveal(make(plugin, length=24)[1]["result"]) for _ in range(5)}
    assert len(results) == 5


def test_minimums_are_honoured(plugin: PluginProcess) -> None:
    for _ in range(25):
        _, outs = make(plugin, length=12, minUpper=3, minLower=3, minNumeric=3, minSpecial=3)
        result = reveal(outs["result"])
        assert len(result) == 12
        assert sum(c in string.ascii_uppercase for c in result) >= 3
        assert sum(c in string.ascii_lowercase for c in result) >= 3
        assert sum(c in string.digits for c in result) >= 3
        assert sum(c in SPECIAL for c in result) >= 3


def test_minimums_filling_the_length_with_classes_off(plugin: PluginProcess) -> None:
    # Upstream draws minimums even from a class that is switched off.
    _, outs = make(plugin, length=4, upper=False, minUpper=4)
    assert all(c in string.ascii_uppercase for c in reveal(outs["result"]))


def test_override_special_replaces_the_special_set(plugin: PluginProcess) -> None:
    _, outs = make(
        plugin, length=300, overrideSpecial="_%", lower=False, upper=False, numeric=False
    )
    result = reveal(outs["result"])
    assert set(result) == {"_", "%"}
    _, outs = make(plugin, length=300, overrideSpecial="^", minSpecial=5)
    result = reveal(outs["result"])
    assert result.count("^") >= 5
    assert not (set(result) & SPECIAL)


def test_classes_switched_off_are_absent(plugin: PluginProcess) -> None:
    _, outs = make(plugin, length=300, upper=False, special=False)
    result = reveal(outs["result"])
    assert set(result) <= set(string.ascii_lowercase + string.digits)
    assert set(result) & set(string.digits) and set(result) & set(string.ascii_lowercase)


def test_deprecated_number_alias_follows_numeric(plugin: PluginProcess) -> None:
    inputs = plugin.checked(PASSWORD, "pw", {"length": 200, "number": False})
    assert inputs["numeric"] is False and inputs["number"] is False
    _, outs = plugin.create(PASSWORD, "pw", inputs)
    assert not set(reveal(outs["result"])) & set(string.digits)
    _, failures = plugin.check(PASSWORD, "pw", {"length": 8, "number": False, "numeric": True})
    assert failures and failures[0][0] == "number"


@pytest.mark.parametrize(
    ("news", "prop", "words"),
    [
        ({"length": 0}, "length", "at least 1"),
        ({"length": -3}, "length", "at least 1"),
        ({"length": 10**9}, "length", "at most 1000000"),
        ({}, "length", "required"),
        ({"length": "ten"}, "length", "integer"),
        ({"length": 2.5}, "length", "integer"),
        ({"length": 4, "minUpper": 3, "minLower": 2}, "length", "minUpper + minLower"),
        ({"length": 8, "minSpecial": -1}, "minSpecial", "at least 0"),
        ({"length": 8, "upper": "yes"}, "upper", "boolean"),
        ({"length": 8, "keepers": {"a": 1}}, "keepers", "map of strings"),
        ({"length": 8, "lenght": 8}, "lenght", "unknown property"),
        (
            {"length": 8, "lower": False, "upper": False, "numeric": False, "special": False},
            "length",
            "all false",
        ),
    ],
)
def test_bad_inputs_fail_check_clearly(
    plugin: PluginProcess, news: dict[str, object], prop: str, words: str
) -> None:
    _, failures = plugin.check(PASSWORD, "pw", news)
    assert failures, news
    assert failures[0][0] == prop
    assert words in failures[0][1]
    assert "Traceback" not in failures[0][1]


def test_unknown_inputs_pass_check_during_preview(plugin: PluginProcess) -> None:
    inputs, failures = plugin.check(PASSWORD, "pw", {"length": UNKNOWN, "keepers": UNKNOWN})
    assert failures == []
    assert inputs["length"] == UNKNOWN


def test_preview_generates_nothing(plugin: PluginProcess) -> None:
    inputs = plugin.checked(PASSWORD, "pw", {"length": 16})
    resource_id, outs = plugin.create(PASSWORD, "pw", inputs, preview=True)
    assert resource_id == ""
    assert outs["result"] == UNKNOWN and outs["bcryptHash"] == UNKNOWN
    assert outs["length"] == 16


def test_secret_inputs_stay_secret(plugin: PluginProcess) -> None:
    inputs = plugin.checked(PASSWORD, "pw", {"length": 10, "keepers": secret({"k": "v"})})
    assert is_secret(inputs["keepers"])
    _, outs = plugin.create(PASSWORD, "pw", inputs)
    assert is_secret(outs["keepers"]) and reveal(outs["keepers"]) == {"k": "v"}


def test_no_change_no_diff(plugin: PluginProcess) -> None:
    inputs = plugin.checked(PASSWORD, "pw", {"length": 10, "keepers": {"v": "1"}})
    _, outs = plugin.create(PASSWORD, "pw", inputs)
    resp = plugin.diff(PASSWORD, "pw", outs, inputs)
    assert resp.changes == provider_pb2.DiffResponse.DIFF_NONE
    # A secret wrapper alone is not a change of value.
    resp = plugin.diff(PASSWORD, "pw", outs, {**inputs, "keepers": secret({"v": "1"})})
    assert resp.changes == provider_pb2.DiffResponse.DIFF_NONE


@pytest.mark.parametrize(
    ("change", "key", "kind"),
    [
        ({"keepers": {"v": "2"}}, "keepers", provider_pb2.PropertyDiff.UPDATE_REPLACE),
        ({"keepers": UNKNOWN}, "keepers", provider_pb2.PropertyDiff.UPDATE_REPLACE),
        ({"length": 11}, "length", provider_pb2.PropertyDiff.UPDATE_REPLACE),
        ({"special": False}, "special", provider_pb2.PropertyDiff.UPDATE_REPLACE),
        ({"overrideSpecial": "!"}, "overrideSpecial", provider_pb2.PropertyDiff.ADD_REPLACE),
    ],
)
def test_every_input_change_replaces(
    plugin: PluginProcess, change: dict[str, object], key: str, kind: int
) -> None:
    inputs = plugin.checked(PASSWORD, "pw", {"length": 10, "keepers": {"v": "1"}})
    _, outs = plugin.create(PASSWORD, "pw", inputs)
    resp = plugin.diff(PASSWORD, "pw", outs, {**inputs, **change})
    assert resp.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(resp.replaces) == [key]
    assert resp.detailedDiff[key].kind == kind
    assert not resp.deleteBeforeReplace


def test_ignored_change_is_no_diff_and_update_keeps_the_password(plugin: PluginProcess) -> None:
    inputs = plugin.checked(PASSWORD, "pw", {"length": 10, "keepers": {"v": "1"}})
    resource_id, outs = plugin.create(PASSWORD, "pw", inputs)
    news = {**inputs, "keepers": {"v": "2"}}
    resp = plugin.diff(PASSWORD, "pw", outs, news, ignore_changes=["keepers"])
    assert resp.changes == provider_pb2.DiffResponse.DIFF_NONE
    updated = plugin.update(PASSWORD, "pw", resource_id, outs, news)
    assert updated["result"] == outs["result"] and is_secret(updated["result"])
    assert updated["keepers"] == {"v": "2"}


def test_read_returns_the_state_and_import_uses_the_id(plugin: PluginProcess) -> None:
    inputs = plugin.checked(PASSWORD, "pw", {"length": 10})
    resource_id, outs = plugin.create(PASSWORD, "pw", inputs)
    read_id, read_outs, read_inputs = plugin.read(PASSWORD, "pw", resource_id, outs)
    assert read_id == "none" and read_outs == outs
    assert read_inputs["length"] == 10 and "result" not in read_inputs
    _, imported, _ = plugin.read(PASSWORD, "pw", "existing-Secret1", {})
    assert reveal(imported["result"]) == "existing-Secret1" and imported["length"] == 16
    assert bcrypt.checkpw(b"existing-Secret1", reveal(imported["bcryptHash"]).encode())
    plugin.delete(PASSWORD, "pw", resource_id, outs)


@pytest.mark.parametrize(
    "token", ["random:index/randomString:RandomString", "random:index/randomPet:RandomPet"]
)
def test_other_types_are_refused_naming_the_official_plugin(
    plugin: PluginProcess, token: str
) -> None:
    for call in (
        lambda: plugin.check(token, "s", {"length": 8}),
        lambda: plugin.create(token, "s", {"length": 8}),
        lambda: plugin.delete(token, "s", "id", {}),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = caught.value.details()
        assert token in details
        assert "official pulumi-random 4.21.4 plugin" in details
        assert "Traceback" not in details


def test_stops_quietly_on_sigterm() -> None:
    with PluginProcess("offline_plugins.random_provider") as proc:
        assert proc.plugin_version() == "4.21.4"
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_schema_describes_the_password_with_secret_outputs(plugin: PluginProcess) -> None:
    schema = json.loads(plugin.rpc.GetSchema(provider_pb2.GetSchemaRequest(version=0)).schema)
    assert (schema["name"], schema["version"]) == ("random", "4.21.4")
    resource = schema["resources"][PASSWORD]
    assert resource["requiredInputs"] == ["length"]
    assert resource["properties"]["result"]["secret"] is True
    assert resource["properties"]["bcryptHash"]["secret"] is True
    assert list(schema["resources"]) == [PASSWORD]
