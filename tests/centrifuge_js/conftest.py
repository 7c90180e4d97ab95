"""The server every centrifuge-js test talks to: the seed protocol on /ws/chat and the
Centrifuge protocol on /connection/websocket (secured, presence everywhere), one app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pubsocket import App, pubsub
from pubsocket.auth import Authenticator
from tests.conftest import API_KEY, SECRET, Running, make_settings

AUTH = Authenticator(API_KEY, SECRET)
CF_PATH = "/connection/websocket"
StartCf = Callable[..., Awaitable[Running]]


def token(sub: str = "alice", ttl: float | None = 3600, **claims: Any) -> str:
    return AUTH.issue(sub, ttl, claims)


def cf_app(**settings: Any) -> App:
    app = App(make_settings(**settings))
    pubsub("/ws/chat", app=app, presence=["*"])
    pubsub(CF_PATH, app=app, protocol="centrifuge", secured=True,
           presence=["*"])
    return app


def cf_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}{CF_PATH}"


@pytest.fixture
async def start_cf(serve: Callable[[App], Awaitable[Running]]) -> StartCf:
    """``running = await start_cf(**settings)``: a real server with both protocols."""

    async def start(**settings: Any) -> Running:
        return await serve(cf_app(**settings))

    return start
