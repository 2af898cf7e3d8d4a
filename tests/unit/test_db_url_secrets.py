"""A malformed `dbUrl` (password not URL-encoded) never shows any part of the password.

libpq misreads such a URL (a '/' in the password ends the host part, a second '@' moves part of
the password into the host name), and its messages then echo those pieces. Every door a URL
enters by (stack config, the providers' check, the connection itself) must refuse it with a
message saying to URL-encode the password, and no fragment of it.
"""

from __future__ import annotations

import re

import pytest

from harness.toolchain import REPO
from supaqueue.clients.postgres import check_url, connect, describe
from supaqueue.config import parse_stack_config
from supaqueue.errors import DatabaseError, SupaqueueError
from supaqueue.providers.migrations import MigrationsProvider
from supaqueue.providers.queue import QueueProvider

# Each password's pieces are distinctive, so any of them in a message is a leak.
MALFORMED = {
    "Sup3rQx/pwZk9": "postgresql://postgres:Sup3rQx/pwZk9@127.0.0.1:5432/postgres",
    "Sup3rQx@pwZk9": "postgresql://postgres:Sup3rQx@pwZk9@127.0.0.1:5432/postgres",
    "Sup3rQx/pwZk9@Vv7": "postgres://postgres:Sup3rQx/pwZk9@Vv7@127.0.0.1/postgres",
    "Sup3rQx:pwZk9/Yy": "postgresql://postgres:Sup3rQx:pwZk9/Yy@localhost/db",
    "Sup3rQx@pwZk9:77": "postgresql://postgres:Sup3rQx@pwZk9:77@db.example.test:6543/postgres",
}


def pieces(password: str) -> list[str]:
    """The password and every piece of it between the characters libpq splits on."""
    return [password, *(p for p in re.split(r"[/@:]", password) if p)]


def assert_no_piece(text: str, password: str) -> None:
    for piece in pieces(password):
        assert piece not in text, f"{piece!r} of the password leaked: {text}"


def assert_says_what_to_do(text: str) -> None:
    assert "could not be parsed" in text and "URL-encode" in text, text


@pytest.mark.parametrize("password", MALFORMED)
def test_check_url_refuses_without_showing_the_password(password: str) -> None:
    why = check_url(MALFORMED[password])
    assert why is not None
    assert_says_what_to_do(why)
    assert_no_piece(why, password)
    assert_no_piece(describe(MALFORMED[password]), password)


@pytest.mark.parametrize("password", MALFORMED)
def test_connect_never_shows_the_password(password: str) -> None:
    with pytest.raises(DatabaseError) as caught, connect(MALFORMED[password]):
        pass
    assert_says_what_to_do(str(caught.value))
    assert_no_piece(str(caught.value), password)


@pytest.mark.parametrize("password", MALFORMED)
def test_stack_config_refuses_without_showing_the_password(password: str) -> None:
    values = {
        "target": "supabase",
        "projectRef": "qwertyuiopasdfghjklz",
        "accessToken": "sbp_" + "b" * 40,
        "dbUrl": MALFORMED[password],
    }
    with pytest.raises(SupaqueueError) as caught:
        parse_stack_config(values, {})
    assert "supaqueue:dbUrl" in str(caught.value)
    assert_says_what_to_do(str(caught.value))
    assert_no_piece(str(caught.value), password)


@pytest.mark.parametrize("password", MALFORMED)
def test_provider_checks_refuse_without_showing_the_password(password: str) -> None:
    url = MALFORMED[password]
    queue = QueueProvider().check({}, {"name": "q", "edge_function_name": "f", "db_url": url})
    migrations = MigrationsProvider().check(
        {}, {"db_url": url, "migrations_dir": str(REPO / "supaqueue" / "sql"), "migrations": []}
    )
    for result in (queue, migrations):
        texts = [f"{f.property}: {f.reason}" for f in result.failures or []]
        [text] = [t for t in texts if t.startswith("db_url")]
        assert_says_what_to_do(text)
        assert_no_piece(text, password)


def test_a_well_formed_url_still_passes() -> None:
    encoded = "postgresql://postgres:Sup3rQx%2FpwZk9%40x@127.0.0.1:5432/postgres?sslmode=disable"
    assert check_url(encoded) is None
    assert check_url("postgresql://postgres:ab:cd@[::1]:5432,h2:5433/db") is None
    assert check_url("postgresql:///postgres?host=/tmp") is None
    assert describe(encoded) == "postgres@127.0.0.1:5432/postgres"


def test_a_failed_connection_never_shows_the_password() -> None:
    """Even a well-formed URL: the connection error names user, host and port, nothing more."""
    password = "Wq8zSecretPart"
    with (
        pytest.raises(DatabaseError) as caught,
        connect(f"postgresql://postgres:{password}@127.0.0.1:1/postgres"),
    ):
        pass
    assert "cannot connect to the database postgres@127.0.0.1:1/postgres" in str(caught.value)
    assert password not in str(caught.value)


def test_migrations_cli_never_shows_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    from supaqueue import migrations

    password = "Sup3rQx/pwZk9"
    assert migrations.main(["status", "--dsn", MALFORMED[password]]) == 1
    err = capsys.readouterr().err
    assert_says_what_to_do(err)
    assert_no_piece(err, password)
