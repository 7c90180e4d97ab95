"""`Session`: one connection's pub/sub state machine over the wire protocol.

It reads commands from its peer, applies the per-connection rules (subscription cap,
inbound rate limit, protocol-error budget, text frames only, token expiry) and talks to
the hub. Replies are queued with the peer's non-blocking `deliver`, so a session never
waits on its own socket. Cleanup on disconnect costs O(this connection's subscriptions).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Protocol

from ..config import Settings
from ..errors import BrokerError, CloseCode, ProtocolViolation
from ..protocol import encode_ack, encode_error, parse_command, text_frame
from .core import Hub


class Peer(Protocol):
    """The connection side a session needs (a `pubsocket.web.Connection` fits)."""

    def deliver(self, frame: bytes) -> None: ...

    def close_nowait(self, code: int, reason: str = "") -> None: ...

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

    async def run(self) -> None:
        """Serve commands until the peer leaves; always releases every subscription."""
        expiry = self._arm_expiry()
        try:
            async for message in self.peer:
                if isinstance(message, bytes):
                    self._close(CloseCode.UNSUPPORTED_DATA, "text frames only")
                    return
                if not self._bucket.take():
                    self._close(CloseCode.RATE_LIMITED, "rate limit exceeded")
                    return
                await self.handle(message)
                if self._closed:
                    return
        finally:
            if expiry is not None:
                expiry.cancel()
            await self.release()

    async def handle(self, text: str) -> None:
        """Apply one command and queue its reply (ack or error)."""
        try:
            cmd = parse_command(text)
        except ProtocolViolation as exc:
            self.error(exc.code, exc.message, exc.cmd_id)
            return
        try:
            if cmd.action == "subscribe":
                if cmd.topic not in self.topics:
                    cap = self.settings.max_subscriptions
                    if cap and len(self.topics) >= cap:
                        self.error("subscription_limit", f"at most {cap} subscriptions "
                                   "per connection", cmd.id)
                        return
                    await self.hub.subscribe(self.peer, cmd.topic, self.envelope)
                    self.topics.add(cmd.topic)
            elif cmd.action == "unsubscribe":
                if cmd.topic in self.topics:
                    self.topics.discard(cmd.topic)
                    await self.hub.unsubscribe(self.peer, cmd.topic)
            else:
                assert cmd.payload is not None
                await self.hub.publish_payload(cmd.topic, cmd.payload)
        except BrokerError:
            self.error("broker_unavailable", "the message broker is unavailable, retry later",
                       cmd.id, counts=False)
            return
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

    async def release(self) -> None:
        """Leave every topic (idempotent)."""
        topics, self.topics = self.topics, set()
        for topic in topics:
            await self.hub.unsubscribe(self.peer, topic)

    def _close(self, code: CloseCode, reason: str) -> None:
        self._closed = True
        self.peer.close_nowait(code, reason)

    def _arm_expiry(self) -> asyncio.TimerHandle | None:
        if self.expires_at is None:
            return None
        delay = max(0.0, self.expires_at - time.time())
        return asyncio.get_running_loop().call_later(
            delay, self._close, CloseCode.AUTH_EXPIRED, "token expired"
        )
