"""The Vault entry: created through vault.create_secret, rotated in place (same uuid), read
back decrypted for drift, adopted when left by an interrupted run, deleted."""

from __future__ import annotations

from typing import Any

import psycopg

from supaqueue.providers.vault_secret import VaultSecretProvider
from tests.providers.conftest import sql_value

NAME = "supaqueue_secret_test"


def decrypted(db_url: str) -> Any:
    return sql_value(
        db_url, "select decrypted_secret from vault.decrypted_secrets where name = %s", NAME
    )


def cleanup(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("delete from vault.secrets where name = %s", (NAME,))


def test_vault_secret_lifecycle(db_url: str) -> None:
    cleanup(db_url)
    provider = VaultSecretProvider()
    props = provider.check({}, {"db_url": db_url, "name": NAME, "secret": "s" * 40})
    assert props.failures == []
    created = provider.create(props.inputs)
    outs = created.outs or {}
    assert created.id == NAME
    assert decrypted(db_url) == "s" * 40
    # Encrypted at rest: the table never holds the plain value.
    stored = sql_value(db_url, "select secret from vault.secrets where name = %s", NAME)
    assert "s" * 40 not in stored

    rotated = {**props.inputs, "secret": "t" * 40}
    diff = provider.diff(NAME, outs, rotated)
    assert diff.changes is True and diff.replaces == []
    new_outs = provider.update(NAME, outs, rotated).outs or {}
    assert new_outs["secret_id"] == outs["secret_id"]  # updated in place
    assert decrypted(db_url) == "t" * 40

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "select vault.update_secret(id, 'changed-behind-our-back-0000') from vault.secrets"
            " where name = %s",
            (NAME,),
        )
    refreshed = provider.read(NAME, new_outs).outs or {}
    assert refreshed["secret"] == "changed-behind-our-back-0000"
    assert provider.diff(NAME, refreshed, rotated).changes is True

    provider.delete(NAME, new_outs)
    assert decrypted(db_url) is None
    assert provider.read(NAME, new_outs).id == ""


def test_create_adopts_an_existing_entry(db_url: str) -> None:
    cleanup(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("select vault.create_secret('old-value-from-a-crash', %s)", (NAME,))
    provider = VaultSecretProvider()
    created = provider.create({"db_url": db_url, "name": NAME, "secret": "u" * 40})
    assert decrypted(db_url) == "u" * 40
    assert sql_value(db_url, "select count(*) from vault.secrets where name = %s", NAME) == 1
    provider.delete(NAME, created.outs or {})


def test_short_secret_fails_check(db_url: str) -> None:
    failures = VaultSecretProvider().check({}, {"db_url": db_url, "name": NAME, "secret": "x"})
    assert [f.property for f in failures.failures] == ["secret"]
