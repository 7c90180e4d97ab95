"""Helpers for the Centrifuge tests: an app with both endpoints, event recorders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from centrifuge import ClientEventHandler, SubscriptionEventHandler
from pubsocket import App, pubsub
from pubsocket.auth import Authenticator
from pubsocket.brokers.base import HistoryPolicy
from pubsocket.protocols.centrifuge import RpcHook
from tests.conftest import API_KEY, SECRET, make_settings

AUTH = Authenticator(API_KEY, SECRET)
PATH = "/connection/websocket"


def token(sub: str, ttl: float = 60, **claims: Any) -> str:
    return AUTH.issue(sub, ttl, claims)


def cf_app(*, secured: bool = True, rpc: RpcHook | None = None,
           history: dict[str, HistoryPolicy | None] | None = None, **settings: Any) -> App:
    """Centrifuge at /connection/websocket and plain at /ws/chat on one hub."""
    app = App(make_settings(**settings))
    pubsub("/ws/chat", app=app, presence=["room:*"], history=history)
    pubsub(PATH, app=app, protocol="centrifuge", secured=secured, rpc=rpc)
    return app


class Events:
    """Every event of a client or subscription, in order, as (name, context)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.seen: list[tuple[str, Any]] = []

    def record(self, name: str, ctx: Any) -> None:
        self.seen.append((name, ctx))
        self.queue.put_nowait((name, ctx))

    async def next(self, name: str, within: float = 5.0,
                   where: Callable[[Any], bool] = lambda ctx: True) -> Any:
        """The next `name` event satisfying `where` (others are skipped), bounded."""
        async with asyncio.timeout(within):
            while True:
                got, ctx = await self.queue.get()
                if got == name and where(ctx):
                    return ctx


def _recorder(base: type, names: tuple[str, ...]) -> Callable[[Events], Any]:
    def make(events: Events) -> Any:
        def handler(name: str) -> Callable[[Any, Any], Awaitable[None]]:
            async def on(self: Any, ctx: Any) -> None:
                events.record(name, ctx)
            return on
        cls = type("Recorder", (base,), {f"on_{n}": handler(n) for n in names})
        return cls()
    return make


client_events = _recorder(ClientEventHandler, (
    "connecting", "connected", "disconnected", "error", "publication", "join", "leave"))
sub_events = _recorder(SubscriptionEventHandler, (
    "subscribing", "subscribed", "unsubscribed", "publication", "join", "leave", "error"))
