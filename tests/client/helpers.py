"""Shared pieces of the client tests: the app, tokens, a recording backoff, drops."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from pubsocket import App, pubsub
from pubsocket.auth import Authenticator
from pubsocket.brokers import HistoryPolicy
from pubsocket.client import Event, Message, Subscription
from tests.conftest import API_KEY, SECRET, Running, make_settings

AUTH = Authenticator(API_KEY, SECRET)


def chat_app(**changes: Any) -> App:
    """Secured, presence everywhere; topics ``small*`` keep only 5 publications,
    ``nohist*`` none (no offsets, no recovery)."""
    app = App(make_settings(**changes))
    pubsub("/ws/chat", app=app, secured=True, presence=["*"],
           history={"small*": HistoryPolicy(5, 60), "nohist*": None})
    return app


def url(srv: Running) -> str:
    return f"{srv.ws}/ws/chat"


def token(sub: str = "alice", ttl: float | None = 3600, **claims: Any) -> str:
    return AUTH.issue(sub, ttl, claims)


def exp_token(sub: str, seconds: float) -> str:
    """A token with at least `seconds` (less than `seconds + 1`) left (exp is whole)."""
    return AUTH.issue(sub, None, {"exp": math.ceil(time.time() + seconds)})


def drop_all(srv: Running) -> int:
    """Cut every WebSocket of the server at the TCP level (the client sees 1006)."""
    state = srv.server.state  # type: ignore[attr-defined]
    conns = list(state.websockets)
    for conn in conns:
        conn.abort()
    return len(conns)


class RecordingBackoff:
    """A `Backoff` that returns fixed delays and records when it was asked what."""

    def __init__(self, delay: float = 0.01) -> None:
        self.value = delay
        self.asked: list[tuple[int, float, float]] = []  # (attempt, delay, monotonic time)

    def delay(self, attempt: int) -> float:
        self.asked.append((attempt, self.value, time.monotonic()))
        return self.value

    @property
    def attempts(self) -> list[int]:
        return [a for a, _, _ in self.asked]


async def take(sub: Subscription, n: int, timeout: float = 5.0) -> list[Event]:
    """The next `n` events of `sub` (bounded in time)."""
    got: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in sub:
            got.append(event)
            if len(got) == n:
                break
    return got


def messages(events: list[Event]) -> list[Message]:
    """`events`, every one of which must be a `Message` (gaps, joins and leaves fail)."""
    others = [e for e in events if not isinstance(e, Message)]
    assert not others, others
    return [e for e in events if isinstance(e, Message)]


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll `predicate()` every 10 ms until true (bounded)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
