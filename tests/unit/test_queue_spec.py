"""Queue declaration rules shared by stack config and the queue provider's check."""

from __future__ import annotations

from typing import Any

import pytest

from supaqueue.providers.queue.spec import FIELDS, validate_queue, with_defaults

BASE = {"name": "emails", "edge_function_name": "send-email"}


def reasons(**changes: Any) -> dict[str, str]:
    return {p.field: p.reason for p in validate_queue({**BASE, **changes})}


def test_a_minimal_queue_is_valid_and_complete_with_defaults() -> None:
    assert validate_queue(BASE) == []
    full = with_defaults(BASE)
    assert set(full) == set(FIELDS)
    assert full["workers"] == 1 and full["rate_limit_per_second"] is None


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"workers": 0}, "queue.workers", "at least 1"),
        ({"workers": True}, "queue.workers", "must be an integer"),
        ({"workers": 2.5}, "queue.workers", "must be an integer"),
        ({"max_attempts": 0}, "queue.max_attempts", "at least 1"),
        ({"edge_function_name": "http://evil/fn"}, "queue.edge_function_name", "not a URL"),
        ({"edge_function_name": "/functions/v1/fn"}, "queue.edge_function_name", "not a URL"),
        ({"edge_function_name": "send email"}, "queue.edge_function_name", "not a valid slug"),
        ({"name": "-x"}, "queue.name", "start with a letter"),
        ({"name": "a" * 64}, "queue.name", "longer than 63"),
        ({"method": "post"}, "queue.method", "must be one of"),
        ({"headers": ["a"]}, "queue.headers", "must be an object"),
        ({"headers": {"bad name": "v"}}, "queue.headers", "not a valid header name"),
        ({"headers": {"X": None}}, "queue.headers", "must be a string"),
        ({"backoff_jitter": 2}, "queue.backoff_jitter", "between 0 and 1"),
        ({"backoff_base_ms": 500, "backoff_max_ms": 100}, "queue.backoff_max_ms", "at least"),
        ({"non_retryable_statuses": [400, 700]}, "queue.non_retryable_statuses", "700"),
        ({"rate_limit_per_second": 0}, "queue.rate_limit_per_second", "above 0"),
        ({"rate_limit_burst": 5}, "queue.rate_limit_burst", "needs rate_limit_per_second"),
        ({"timeout_ms": 10_000_000}, "queue.timeout_ms", "at most"),
        ({"lease_grace_ms": -1}, "queue.lease_grace_ms", "at least 0"),
        ({"lease_grace_ms": 2**31}, "queue.lease_grace_ms", "at most 2147483647"),
        ({"lease_grace_ms": 1.5}, "queue.lease_grace_ms", "must be an integer"),
        ({"paused": "yes"}, "queue.paused", "true or false"),
        ({"retention_seconds": -1}, "queue.retention_seconds", "at least 0"),
        ({"discard_unfinished_on_delete": 1}, "queue.discard_unfinished_on_delete", "true or"),
        ({"speed": 3}, "queue.speed", "unknown key"),
    ],
)
def test_each_bad_value_is_named(changes: dict[str, Any], field: str, fragment: str) -> None:
    found = reasons(**changes)
    assert field in found, found
    assert fragment in found[field]


def test_required_fields() -> None:
    found = {p.field: p.reason for p in validate_queue({})}
    assert found == {"queue.name": "is required", "queue.edge_function_name": "is required"}


def test_unknown_values_are_not_judged_at_preview() -> None:
    assert validate_queue({**BASE, "headers": "<computed>"}, unknown={"headers"}) == []


def test_not_an_object() -> None:
    assert [str(p) for p in validate_queue(["x"])] == ["queue: must be an object, got list"]


@pytest.mark.parametrize("value", ["Bearer abc\r\nX-Injected: 1", "abc\n", "a\0b"])
def test_header_values_with_line_breaks_are_refused_without_showing_them(value: str) -> None:
    """fetch() refuses such a header, so every call of the queue would fail at run time."""
    found = validate_queue(
        {"name": "q", "edge_function_name": "fn", "headers": {"Authorization": value}}
    )
    assert [str(p) for p in found] == [
        "queue.headers: value of header 'Authorization' must not contain CR, LF or NUL characters"
    ]
    assert value not in str(found[0])


@pytest.mark.parametrize(
    "value",
    ["Bearer tok€n", "caf\u00e9", " tok1", "tok2\t", "tok\x01", "tok\x7f", "tok\u2028x"],
)
def test_header_values_http_cannot_carry_are_refused_without_showing_them(value: str) -> None:
    """Issue #14.1: such a value passed preview and `up`, then every dispatch was refused."""
    found = validate_queue({**BASE, "headers": {"X-Key": value}})
    assert len(found) == 1 and found[0].field == "queue.headers"
    assert "may hold only printable ASCII" in found[0].reason
    assert value.strip() not in str(found[0])


@pytest.mark.parametrize("name", ["X-Key\n", "X-Key\r\n", "\nX-Key", "X Key", "X-Kéy", ""])
def test_header_names_http_cannot_carry_are_refused(name: str) -> None:
    found = validate_queue({**BASE, "headers": {name: "v"}})
    assert [str(p) for p in found] == [f"queue.headers: {name!r} is not a valid header name"]


@pytest.mark.parametrize("value", ["", "v", "Bearer abc.def-ghi_jkl~", "a\tb  c", "!#$%&'*+^`|~"])
def test_ordinary_header_values_pass(value: str) -> None:
    assert validate_queue({**BASE, "headers": {"Authorization": value}}) == []


# Preview must refuse what `up` would fail on (issue #14, item 4): these passed before.
@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"backoff_base_ms": 2**31, "backoff_max_ms": 2**31}, "queue.backoff_base_ms", "at most"),
        ({"backoff_max_ms": 2**31}, "queue.backoff_max_ms", "at most 2147483647"),
        ({"rate_limit_per_second": 1, "rate_limit_burst": 2**31}, "queue.rate_limit_burst", "at"),
        ({"retention_seconds": 10**12}, "queue.retention_seconds", "at most 2147483647"),
        ({"name": "nlname\n"}, "queue.name", "not a valid slug"),
        ({"edge_function_name": "demo-target\n"}, "queue.edge_function_name", "not a valid slug"),
        ({"headers": {"X-Key\n": "v"}}, "queue.headers", "not a valid header name"),
        ({"rate_limit_per_second": 1e308}, "queue.rate_limit_per_second", "at most"),
        ({"rate_limit_per_second": float("inf")}, "queue.rate_limit_per_second", "at most"),
        ({"rate_limit_per_second": float("nan")}, "queue.rate_limit_per_second", "number"),
    ],
)
def test_what_up_would_fail_on_is_refused_at_preview(
    changes: dict[str, Any], field: str, fragment: str
) -> None:
    found = reasons(**changes)
    assert field in found, found
    assert fragment in found[field]


def _documented() -> dict[str, str]:
    """QueueArgs' attribute docstrings: the one place each setting is described."""
    import ast
    import inspect

    from supaqueue.providers.queue import resource

    tree = ast.parse(inspect.getsource(resource))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "QueueArgs")
    docs: dict[str, str] = {}
    for node, following in zip(cls.body, cls.body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            assert isinstance(following, ast.Expr), f"{node.target.id} has no docstring"
            docs[node.target.id] = " ".join(str(following.value.value).split())  # type: ignore[attr-defined]
    return docs


def test_queue_args_document_every_field_with_the_spec_defaults_and_limits() -> None:
    import re

    from supaqueue.providers.queue.spec import INT_LIMITS

    docs = _documented()
    assert set(docs) == set(FIELDS)
    for field, text in docs.items():
        default = re.search(r"\(default (-?[0-9.]+|true|false)\b", text)
        if default:
            expected = FIELDS[field].default
            shown = str(expected).lower() if isinstance(expected, bool) else str(expected)
            assert default.group(1) == shown, f"{field}: docs say {default.group(1)}"
        most = re.search(r"at most ([0-9]+)", text)
        if most and field in INT_LIMITS:
            assert int(most.group(1)) == INT_LIMITS[field].maximum, field
    assert "at most 390000" in docs["timeout_ms"]


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        (["a"], "must be a JSON Schema object"),
        ({"type": "strin"}, "is not a valid JSON Schema: at .type"),
        ({"properties": {"to": {"type": 5}}}, "at .properties.to.type"),
        ({"required": "to"}, "at .required"),
        ({"$schema": "http://json-schema.org/draft-04/schema#"}, "is not supported"),
        ({"description": "x" * 70_000}, "at most 65536"),
        ({"properties": {"a": {"$ref": "https://example.com/a.json"}}}, "outside the schema"),
        ({"properties": {"a": {"$ref": "#/$defs/gone"}}}, "#/$defs/gone' points to nothing"),
    ],
)
def test_a_bad_payload_schema_is_named(schema: Any, fragment: str) -> None:
    found = reasons(payload_schema=schema)
    assert fragment in found["queue.payload_schema"], found


def test_valid_payload_schemas_pass_and_pulumi_floats_come_back_whole() -> None:
    from supaqueue.providers.queue.spec import coerce_integers

    schema = {
        "type": "object",
        "properties": {"to": {"type": "string", "maxLength": 5.0}},
        "required": ["to"],
    }
    assert reasons(payload_schema=schema) == {}
    local = {"$defs": {"a": {"type": "string"}}, "properties": {"x": {"$ref": "#/$defs/a"}}}
    assert reasons(payload_schema=local) == {}
    assert reasons(payload_schema={"enum": [{"$ref": "https://not.a/schema"}]}) == {}  # a value
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "array"}
    assert reasons(payload_schema=draft7) == {}
    assert with_defaults(BASE)["payload_schema"] is None
    fixed = coerce_integers({**BASE, "payload_schema": schema})["payload_schema"]
    assert fixed["properties"]["to"]["maxLength"] == 5
    assert isinstance(fixed["properties"]["to"]["maxLength"], int)


def test_keep_finished_forever_is_the_null_retention_in_every_language() -> None:
    from supaqueue.providers.queue.spec import settled_retention

    base = {"name": "q", "edge_function_name": "f"}
    assert with_defaults(base)["retention_seconds"] == 604800
    assert with_defaults(base)["keep_finished_forever"] is False
    for forever in ({"keep_finished_forever": True}, {"retention_seconds": None}):
        filled = with_defaults({**base, **forever})
        assert (filled["retention_seconds"], filled["keep_finished_forever"]) == (None, True)
    problems = validate_queue({**base, "keep_finished_forever": True, "retention_seconds": 5})
    assert [p.field for p in problems] == ["queue.keep_finished_forever"]
    assert validate_queue({**base, "keep_finished_forever": "yes"})[0].reason.startswith(
        "must be true or false"
    )
    # A state from before the flag: a missing retention was the explicit null.
    assert settled_retention({"name": "q"})["keep_finished_forever"] is True
    assert settled_retention({"retention_seconds": 60})["keep_finished_forever"] is False
    assert settled_retention({"keep_finished_forever": False})["keep_finished_forever"] is False
