"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pubsocket import Hub, Settings
from pubsocket.brokers import MemoryBroker


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    """A started hub with the default settings on a memory broker (a test file that needs
    other settings defines its own `hub`)."""
    h = Hub(Settings(), MemoryBroker())
    await h.start()
    yield h
    await h.close()
