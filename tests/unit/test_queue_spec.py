"""Queue declaration rules shared by stack config and the queue provider's check."""

from __future__ import annotations

from typing import Any

import pytest

from components.queue_spec import FIELDS, validate_queue, with_defaults

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
