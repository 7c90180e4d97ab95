"""`Session`: one connection's pub/sub state, and the order its commands run and reply in.

This module owns ordering and flow control; what each command does is in `hub.handlers`,
the wire format in the connection's `Codec`, and a protocol's own rules around the
commands (a handshake first, say) in its `SessionHook` (`hub.hook`). Rules per
connection: subscription cap, inbound rate limit, protocol-error budget, frames of the
codec's kind (text unless `Codec.binary`), token expiry (the token's timers and what
else follows from who is connected are in its base, `hub.identity`). Replies are queued
with the peer's non-blocking `deliver`, so a session never waits on its own socket.

Ordering: replies leave in command order. Publishes the broker queues in order (Redis
pipelines them) are *in flight together*: the next command starts without waiting for
the previous publish's round trip, and acks are released in order as they complete.
Every other command is a barrier: it starts once the publishes before it are done, and
the commands after it wait until it is done (a subscribe must be confirmed before a
later publish, or the client could miss its own message). Reading pauses past
`MAX_QUEUED` waiting commands or `MAX_INFLIGHT` publishes in flight.

Two ways to drive it, one logic: *push* (`peer.attach(session)`: the transport calls
`on_message` / `on_close`; no task lives per idle connection) and *pull*
(`await session.run()`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from ..auth import Authenticator, Principal, expiry_of
from ..brokers.base import Position, Publication
from ..codecs import PLAIN, Codec, Parsed
from ..config import Settings
from ..errors import (
    BrokerError,
    CloseCode,
    ErrorCode,
    OpError,
    ProtocolViolation,
    Unavailable,
    lookup,
)
from ..log import refusals
from ..protocol import CmdId, Publish, SubscribeOptions
from . import handlers
from .core import Hub
from .hook import Dialect, SessionHook
from .identity import Identity
from .operations import SOCKET
from .peer import Peer, TokenBucket, take_tokens
from .wire import RAW, Wire

log = logging.getLogger("pubsocket.hub")

__all__ = ["MAX_INFLIGHT", "MAX_QUEUED", "Peer", "Session", "TokenBucket"]

MAX_QUEUED = 64  # commands waiting behind a barrier before reading pauses
MAX_INFLIGHT = 1024  # pipelined publishes in flight before reading pauses


_InFlight = tuple[Publish, "asyncio.Future[Publication]"] | bytes


class Session(Identity):
    """Runs the pub/sub protocol for one peer until it leaves or breaks a rule."""

    # Slotted, and what an idle subscriber does not use is made on first use (the
    # publish queue, the rarely used state in `Rare`): docs/design.md "What an idle
    # subscribed connection holds".
    __slots__ = ("_closed", "_inflight", "_rate_at", "_task", "_waiting", "authenticator",
                 "hook", "hub", "peer", "principal", "settings", "wire")

    def __init__(self, hub: Hub, peer: Peer, settings: Settings, *, codec: Codec = PLAIN,
                 principal: Principal | None = None,
                 authenticator: Authenticator | None = None,
                 expires_at: float | None = None,
                 dialect: Dialect | None = None, address: object = None,
                 wires: Callable[[Codec], Wire] = RAW) -> None:
        """`principal` is who is connected (anonymous by default); `authenticator`
        verifies refreshed tokens; the token's expiry comes from the principal's claims
        unless `expires_at` (Unix time) is given. With a `dialect` (a protocol package,
        e.g. `pubsocket.protocols.centrifuge`) the codec is the dialect's and the
        session's `hook` (`hub.hook`) runs the protocol's own rules, a connect gate for
        instance. `address` is the peer's, for refusal log lines only. `wires` is the
        transport's `WireSet`: the session's wire (its codec x the transport's framer)
        comes from it, and every reply and delivery is framed by that wire (default:
        unframed)."""
        self.hub = hub
        self.peer = peer
        self.settings = settings
        self.hook: SessionHook | None = None
        if dialect is not None:
            codec = dialect.codec
        self.wire = wires(codec)  # its codec is the session's (`codec`)
        self.principal = principal or Principal.anonymous()
        self.authenticator = authenticator
        self._topics = None  # the topics, compact: see `hub.subscribed`
        self._rate_at = 0.0  # the rate limit's state (`peer.take_tokens`)
        self._closed = False
        # Publishes in flight, and replies behind them; made by the first one in flight
        # (an empty deque holds a 64-slot block: 760 bytes per idle connection).
        self._inflight: deque[_InFlight] | None = None
        self._waiting: deque[Parsed] | None = None  # set while a barrier holds commands
        self._task: asyncio.Task[None] | None = None  # the barrier command finishing
        self._rare = None  # the seldom used state (`hub.subscribed.Rare`)
        if address is not None and not hasattr(type(peer), "peer_address"):
            self.rare.address = address  # the peer cannot tell it later: kept
        expiry = expires_at if expires_at is not None else expiry_of(self.principal.claims)
        if expiry is not None:
            self.clock.reschedule(expiry)
        if self.principal.user is not None:
            hub.registry.add(self.principal.user, self)
        if dialect is not None:
            self.hook = dialect.open(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def codec(self) -> Codec:
        """The wire format of this session's commands and replies (its wire's)."""
        return self.wire.codec

    @property
    def publish_bytes(self) -> TokenBucket:
        """Payload bytes published per second (handlers.publish charges it before the
        broker keeps anything); a burst below the message limit would refuse the largest
        messages forever, so it is never smaller. Made on first use."""
        rare = self.rare
        bucket = rare.publish_bytes
        if bucket is None:
            settings = self.settings
            bucket = rare.publish_bytes = TokenBucket(settings.publish_byte_rate, max(
                settings.publish_byte_burst, settings.max_message_size))
        return bucket

    def login(self, principal: Principal) -> None:
        """Become `principal` (an in-band connect): registry and token clock follow."""
        registry = self.hub.registry
        if self.principal.user is not None:
            registry.discard(self.principal.user, self)
        self.principal = principal
        if principal.user is not None:
            registry.add(principal.user, self)
        expiry = expiry_of(principal.claims)
        if expiry is not None or (self._rare is not None and self._rare.clock is not None):
            self.clock.reschedule(expiry)

    # -- server-side control (hub.control.Controlled) ---------------------------------
    def kick(self, code: int, reason: str) -> None:
        """Close this connection on the server's behalf (disconnect_user)."""
        if not self._closed:
            self.close(CloseCode(code) if code in CloseCode._value2member_map_
                       else CloseCode.DISCONNECTED, reason)

    def drop(self, topic: str, reason: str) -> None:
        """End the subscription to `topic` and tell the client why."""
        if self._closed or not self.subscribed(topic):
            return
        handlers.leave(self, topic)
        self.reply(self.codec.unsubscribed(topic, reason))

    def adopt(self, topic: str, since: Position | None = None,
              options: SubscribeOptions | None = None) -> None:
        """A server-side subscribe (`Hub.subscribe_user`, `handlers.adopt`), once the
        session is connected; `since`: recover what was published after it; `options`:
        its data, channel info and presence overrides."""
        if self.hook is not None and not self.hook.ready:
            return
        pending = handlers.adopt(self, topic, since, options)
        if pending is not None:  # beside the command queue, which it must not reorder
            task = asyncio.ensure_future(pending)
            rare = self.rare
            adopting = rare.adopting = rare.adopting or set()
            adopting.add(task)
            task.add_done_callback(adopting.discard)

    # -- push mode (the transport calls these) ----------------------------------------
    def on_message(self, message: str | bytes) -> None:
        """Take one inbound message: run its commands now or queue them in order."""
        if self._closed:
            return
        if isinstance(message, bytes) is not self.codec.binary:
            # One kind of message per protocol: text, or binary (Centrifuge Protobuf).
            self.close(CloseCode.UNSUPPORTED_DATA,
                       "binary frames only" if self.codec.binary else "text frames only")
            return
        # Charged before parsed: the commands are counted with one cheap scan, a frame
        # over the cap is refused, and one token is spent per command (a pong line
        # too), so a batching protocol (Centrifuge) cannot multiply the rate limit by
        # the batch size, nor make the server parse what it would then refuse.
        count = self.codec.count(message)
        cap = self.settings.max_frame_commands
        if cap and count > cap:
            refusals.warn("frame_commands", self.address)
            self.close(CloseCode.MESSAGE_TOO_BIG, "too many commands in one frame")
            return
        rate = self.settings.rate_limit
        if rate:
            at = take_tokens(self._rate_at, count, rate, self.settings.rate_burst)
            if at is None:
                refusals.warn("rate_limit", self.address)
                self.close(CloseCode.RATE_LIMITED, "rate limit exceeded")
                return
            self._rate_at = at
        items = self.codec.parse(message)
        if not items and self.hook is not None:
            self.hook.idle(self)  # e.g. before its handshake, a frame must carry it
        for item in items:
            if self._closed:
                return
            if self._waiting is not None:
                self._waiting.append(item)
            else:
                self._start(item)
        if (self._waiting is not None or self._inflight is not None
                or (self._rare is not None and self._rare.paused)):
            self._flow()  # else nothing waits and reading is not paused: nothing to do

    def on_close(self) -> None:
        """The peer left: stop, and leave every topic."""
        self._closed = True
        if self._rare is not None and self._rare.clock is not None:
            self._rare.clock.cancel()
        self.hub.heartbeat.discard(self)
        if self.hook is not None:
            self.hook.closed(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for topic in self.topics:
            handlers.leave(self, topic)
        if self.principal.user is not None:
            self.hub.registry.discard(self.principal.user, self)

    # -- pull mode -----------------------------------------------------------------------
    async def run(self) -> None:
        """Serve commands from `async for` over the peer until it leaves or is closed."""
        try:
            async for message in self.peer:
                self.on_message(message)
                while not self._closed and (self._task is not None or self._inflight):
                    if self._task is not None:
                        await asyncio.shield(self._task)
                    elif self._inflight and isinstance(tail := self._inflight[-1], tuple):
                        await asyncio.wait([tail[1]])
                    else:
                        await asyncio.sleep(0)  # a reply behind a publish that just ended
                if self._closed:
                    return
        finally:
            self.on_close()

    # -- ordering ----------------------------------------------------------------------
    def _start(self, item: Parsed) -> None:
        """Start one command now (nothing is waiting ahead of it)."""
        hook = self.hook
        if isinstance(item, Publish) and (hook is None or hook.ready):  # the common one
            result = handlers.publish(self, item)
            if result is None:  # refused, already answered
                return
            if isinstance(result, Publication):
                self.reply(self.codec.published(item, result))
            elif isinstance(result, asyncio.Future):
                if self._inflight is None:
                    self._inflight = deque()
                self._inflight.append((item, result))
                result.add_done_callback(self._release)
            else:  # a broker that cannot pipeline: a barrier like any other command
                self._barrier(handlers.finish_publish(self, item, result))
        elif isinstance(item, ProtocolViolation):
            if hook is not None:
                hook.violation(self, item)
            else:
                self.error(item.code, item.message, item.cmd_id)
        elif self._inflight:
            self._waiting = deque([item])  # starts when the publishes ahead are done
        else:
            pending = handlers.run(self, item) if hook is None else hook.run(self, item)
            if pending is not None:
                self._barrier(pending)

    def _barrier(self, pending: Awaitable[None]) -> None:
        self._waiting = deque()
        self._task = asyncio.get_running_loop().create_task(self._finish(pending))

    async def _finish(self, pending: Awaitable[None]) -> None:
        await pending
        self._task = None
        self._resume()

    def _resume(self) -> None:
        """Start the waiting commands in order until one holds the rest again."""
        waiting, self._waiting = self._waiting or deque(), None
        while waiting and self._waiting is None and not self._closed:
            self._start(waiting.popleft())
        if waiting and self._waiting is not None:
            self._waiting.extend(waiting)
        self._flow()

    def _release(self, _: object = None) -> None:
        """Send the replies of completed publishes at the head, in order."""
        inflight = self._inflight
        while inflight:
            head = inflight[0]
            if isinstance(head, bytes):
                inflight.popleft()
                self.peer.deliver(self.wire.frame(head))
                continue
            cmd, future = head
            if not future.done():
                break
            inflight.popleft()
            error = None if future.cancelled() else future.exception()
            if self._closed or future.cancelled():
                continue
            if error is None:
                reply = self.codec.published(cmd, future.result())
                if reply is not None:
                    self.peer.deliver(self.wire.frame(reply))
            else:
                self._publish_failed(cmd, error)
        if not inflight:
            self._inflight = None  # an idle session holds no queue
        if not inflight and self._waiting is not None and self._task is None:
            self._resume()
        else:
            self._flow()

    def _publish_failed(self, cmd: Publish, error: BaseException) -> None:
        if not isinstance(error, BrokerError):
            log.error("publish failed", exc_info=error)
        exc = Unavailable()
        self.peer.deliver(self.wire.frame(self.codec.error(lookup(SOCKET, exc), exc.message,
                                                           cmd.id)))

    def _flow(self) -> None:
        """Pause reading while too much waits; resume once half of it drained."""
        waiting = len(self._waiting) if self._waiting is not None else 0
        inflight = len(self._inflight) if self._inflight is not None else 0
        paused = self._rare is not None and self._rare.paused
        if not paused and (waiting >= MAX_QUEUED or inflight >= MAX_INFLIGHT):
            self.rare.paused = True
            self.peer.pause_reading()
        elif paused and waiting < MAX_QUEUED // 2 and inflight < MAX_INFLIGHT // 2:
            self.rare.paused = False
            self.peer.resume_reading()

    # -- replies ---------------------------------------------------------------------
    def reply(self, payload: bytes | None) -> None:
        """Queue a reply (None: the codec has nothing to say) in command order."""
        if payload is None or self._closed:
            return
        if self._inflight:  # None or empty: nothing in flight
            self._inflight.append(payload)
        else:
            self.peer.deliver(self.wire.frame(payload))

    def error(self, code: ErrorCode, message: str, cmd_id: CmdId | None = None) -> None:
        """Queue an error reply; the Nth counted protocol error closes with 1008."""
        self.reply(self.codec.error(code, message, cmd_id))
        if not code.counts:
            return
        rare = self.rare
        rare.errors += 1
        cap = self.settings.max_protocol_errors
        if cap and rare.errors >= cap:
            self.close(CloseCode.POLICY_VIOLATION, "too many protocol errors")

    def fail(self, exc: OpError, cmd_id: CmdId | None = None) -> None:
        """Answer an operation's refusal: its type's socket `ErrorCode`
        (`hub.operations.SOCKET`, the one table) and its fixed message."""
        self.error(lookup(SOCKET, exc), exc.message, cmd_id)

    def close(self, code: int, reason: str) -> None:
        """Close the connection with a documented code (a `CloseCode`, or the protocol's
        own, e.g. a Centrifuge disconnect); nothing more is handled."""
        self._closed = True
        self.peer.close_nowait(code, reason)
