"""Pulumi's mocks run the program on the current event loop; other suites (asyncio.run) may have
closed or unset it, so each unit test gets a fresh one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def event_loop_for_pulumi() -> Iterator[None]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()
