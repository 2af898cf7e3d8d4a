"""Fixtures of the SQL engine tests: a fresh database per test with supaqueue installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.engine import Engine, install


@pytest.fixture
def engine_dsn(pg_dsn: str) -> str:
    """A fresh database with every migration applied and supaqueue configured."""
    install(pg_dsn)
    return pg_dsn


@pytest.fixture
def engine(engine_dsn: str) -> Iterator[Engine]:
    e = Engine(engine_dsn)
    try:
        yield e
    finally:
        e.close()
