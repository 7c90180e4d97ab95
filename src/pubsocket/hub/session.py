"""`Session`: one connection's pub/sub state machine over the wire protocol.

It takes commands from its peer, applies the per-connection rules (subscription cap,
inbound rate limit, protocol-error budget, text frames only, token expiry) and talks to
the hub. Replies are queued with the peer's non-blocking `deliver`, so a session never
waits on its own socket.

Two ways to drive it, one logic: *push* (`peer.attach(session)`: the transport calls
`on_message` / `on_close`, and no task or coroutine lives per idle connection) and
*pull* (`await session.run()` iterates the peer). Commands complete inline when the hub
and broker can do them without I/O (the memory broker, an already-subscribed topic);
otherwise the session finishes them in a task and queues later commands behind them,
so replies keep their order. Cleanup on disconnect costs O(this connection's topics).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol

from ..config import Settings
from ..errors import BrokerError, CloseCode, ProtocolViolation
from ..protocol import Command, encode_ack, encode_error, parse_command, text_frame
from .core import Hub

log = logging.getLogger("pubsocket.hub")

MAX_QUEUED = 64  # commands waiting behind an unfinished one before reading pauses


class Peer(Protocol):
    """The connection side a session needs (a `pubsocket.web.Connection` fits)."""

    def deliver(self, frame: bytes) -> None: ...

    def close_nowait(self, code: int, reason: str = "") -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


class TokenBucket:
    """`rate` tokens per second up to `burst`; ``rate == 0`` never limits."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._last = time.monotonic()

    def take(self) -> bool:
        """Spend one token; False when none is left."""
        if not self._rate:
            return True
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Session:
    """Runs the pub/sub protocol for one peer until it leaves or breaks a rule."""

    __slots__ = ("_bucket", "_closed", "_expiry", "_queue", "_task", "envelope", "errors",
                 "expires_at", "hub", "peer", "settings", "topics")

    def __init__(
        self,
        hub: Hub,
        peer: Peer,
        settings: Settings,
        *,
        envelope: bool = False,
        expires_at: float | None = None,
    ) -> None:
        self.hub = hub
        self.peer = peer
        self.settings = settings
        self.envelope = envelope
        self.expires_at = expires_at
        self.topics: set[str] = set()
        self.errors = 0
        self._bucket = TokenBucket(settings.rate_limit, settings.rate_burst)
        self._closed = False
        self._queue: list[str | bytes] | None = None  # set while a command is unfinished
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        if expires_at is not None:
            delay = max(0.0, expires_at - time.time())
            self._expiry = asyncio.get_running_loop().call_later(
                delay, self._close, CloseCode.AUTH_EXPIRED, "token expired")

    # -- push mode (the transport calls these) ----------------------------------------
    def on_message(self, message: str | bytes) -> None:
        """Handle one inbound message now, or queue it behind an unfinished command."""
        if self._closed:
            return
        if self._queue is not None:
            self._queue.append(message)
            if len(self._queue) == MAX_QUEUED:
                self.peer.pause_reading()
            return
        pending = self._step(message)
        if pending is not None:
            self._queue = []
            self._task = asyncio.get_running_loop().create_task(self._drain(*pending))

    def on_close(self) -> None:
        """The peer left: stop, and leave every topic."""
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for topic in self.topics:
            self.hub.unsubscribe_nowait(self.peer, topic)
        self.topics = set()

    # -- pull mode -----------------------------------------------------------------------
    async def run(self) -> None:
        """Serve commands from `async for` over the peer until it leaves or is closed."""
        try:
            async for message in self.peer:
                self.on_message(message)
                if self._task is not None:
                    await asyncio.shield(self._task)
                if self._closed:
                    return
        finally:
            self.on_close()

    # -- the protocol ------------------------------------------------------------------
    def _step(self, message: str | bytes) -> tuple[Command, Awaitable[None]] | None:
        """Apply one message; return its unfinished hub call, if any."""
        if isinstance(message, bytes):
            self._close(CloseCode.UNSUPPORTED_DATA, "text frames only")
            return None
        if not self._bucket.take():
            self._close(CloseCode.RATE_LIMITED, "rate limit exceeded")
            return None
        try:
            cmd = parse_command(message)
        except ProtocolViolation as exc:
            self.error(exc.code, exc.message, exc.cmd_id)
            return None
        hub = self.hub
        if cmd.action == "subscribe":
            if cmd.topic in self.topics:
                pending = None
            else:
                cap = self.settings.max_subscriptions
                if cap and len(self.topics) >= cap:
                    self.error("subscription_limit",
                               f"at most {cap} subscriptions per connection", cmd.id)
                    return None
                self.topics.add(cmd.topic)
                pending = hub.subscribe_nowait(self.peer, cmd.topic, self.envelope)
        elif cmd.action == "unsubscribe":
            pending = None
            if cmd.topic in self.topics:
                self.topics.discard(cmd.topic)
                hub.unsubscribe_nowait(self.peer, cmd.topic)
        else:
            assert cmd.payload is not None
            pending = hub.publish_payload_nowait(cmd.topic, cmd.payload)
        if pending is not None:
            return cmd, pending
        self._ack(cmd)
        return None

    async def _drain(self, cmd: Command, pending: Awaitable[None]) -> None:
        """Finish `pending`, then every queued message, in order."""
        while True:
            try:
                await pending
            except BrokerError:
                if cmd.action == "subscribe":
                    self.topics.discard(cmd.topic)
                self.error("broker_unavailable", "the message broker is unavailable, "
                           "retry later", cmd.id, counts=False)
            else:
                self._ack(cmd)
            next_pending = None
            queue = self._queue or []
            while queue and next_pending is None and not self._closed:
                if len(queue) == MAX_QUEUED:
                    self.peer.resume_reading()
                next_pending = self._step(queue.pop(0))
            if next_pending is None:
                self._queue = None
                self._task = None
                return
            cmd, pending = next_pending

    def _ack(self, cmd: Command) -> None:
        if self.envelope and cmd.id is not None:
            self.peer.deliver(text_frame(encode_ack(cmd.id)))

    def error(self, code: str, message: str, cmd_id: str | int | None = None,
              counts: bool = True) -> None:
        """Queue an error reply; the Nth protocol error closes the connection with 1008."""
        self.peer.deliver(text_frame(encode_error(code, message, cmd_id)))
        if not counts:
            return
        self.errors += 1
        cap = self.settings.max_protocol_errors
        if cap and self.errors >= cap:
            self._close(CloseCode.POLICY_VIOLATION, "too many protocol errors")

    def _close(self, code: CloseCode, reason: str) -> None:
        self._closed = True
        self.peer.close_nowait(code, reason)
