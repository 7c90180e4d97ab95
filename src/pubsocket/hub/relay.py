"""`CommandRelay`: commands POSTed for an emulated session reach it on whichever node holds it.

A browser on an HTTP stream (Centrifugo's bidirectional emulation, the pubsocket.v1
HTTP fallback) receives on one long response and sends each command as its own POST,
naming the session and the node that holds it. Behind a load balancer without sticky
sessions the POST may land on any node. The relay of that node either feeds the
command to the local session (`RouteResult.LOCAL_FED`) or publishes it on the owning
node's reserved topic ``$n:<node>`` (`SENT`); the owner's relay receives it there and
feeds it. A publish that no node received (the owner is gone, or its own broker link
is down) is `UNKNOWN_SESSION` instead, so the client reconnects at once. A ``$``
never appears in a client topic, so no client can subscribe or publish to it, the
same as ``$control`` (`hub.control`).

Contracts:

* **Feeding.** ``feed(data)`` is the session's own inbound path (the transport wires it
  to `Session.on_message`): rate limit, command cap, parse, hook, exactly like a
  WebSocket message, so a routed command is charged and authorized like a socket one.
  `feed` must not block or await; it runs in `route` (local) or in the broker's
  delivery (routed). An exception from it is logged and swallowed here, never raised
  into the broker's reader.
* **Order.** Commands routed by one node to another are fed in the order that node
  called `route`: each is queued on the broker before `route` first awaits, and the
  broker keeps one publisher's order (Redis pipelines them, counted or not, on one
  connection). Commands a client sends as concurrent POSTs that land on different
  nodes have no order the server could keep; the SDKs serialize what needs it.
* **Cost.** One publish without history (Redis: one ``PUBLISH``, no key, no script)
  per routed command and one broker subscription per node (its ``$n:<node>`` channel
  on the connection that already SUBSCRIBEs the node's topics), nothing per session.
  ``route`` returns once the broker took the message (Redis: its reply), so a broken
  broker is reported (`UNAVAILABLE`, the HTTP layer's 503) instead of a silent loss.
  No round trip to the owning node (Centrifugo's survey waits for one).
* **Nobody received it.** The publish is `Broker.publish_counted_nowait`: the same
  pipelined PUBLISH, whose reply (which ``route`` awaits anyway) is the number of
  subscribers Redis handed it to. 0 means no node holds ``$n:<node>`` now: the owner
  no longer runs (killed, or restarted under a new id), or its own Redis link is down
  (Redis drops a closed connection's subscriptions at once) or not yet re-subscribed
  after a reconnect. The command went nowhere, so ``route`` answers `UNKNOWN_SESSION`
  (the HTTP layer's 404, `stats.unreachable`): both SDKs close the stream and
  reconnect, instead of a 204 and a loss noticed at the command timeout. The count
  cannot see a half-open link (Redis still counts a subscriber it has not found dead
  yet: the command waits in Redis's output buffer for it, or is lost with the link)
  nor tell a node from a foreign pattern subscriber (a monitoring ``PSUBSCRIBE *``
  counts: such commands are `SENT`, as before). A broker that cannot count (the
  default, None) gives `SENT` as before. Ordinary publishes are not counted.
* **Bounds.** `data` is at most `max_bytes` (the emulation POST's cap: the WebSocket
  message size), else `TOO_LARGE` without I/O; at most `max_pending` routed commands
  wait for the broker at once, else `UNAVAILABLE`. A session id is short printable
  ASCII (`MAX_ID`) and a node id 16 hex digits, else `UNKNOWN_SESSION` without I/O
  (nothing can hold them; nor can a client name any other broker channel). The
  receiving side keeps no queue: each routed command is fed when the broker delivers
  it, so what waits for a node is bounded by the broker (Redis's pubsub output buffer
  for the node's subscriber connection) and each session by its rate limit.
* **Unknown session.** Named node is this node and no such session: `UNKNOWN_SESSION`
  (the client's stream is gone; it reconnects). Named node is another one that
  received the command but no longer holds the session (it ended meanwhile): `SENT`,
  and the command is dropped there (a debug log line and `stats.dropped`); the
  session's stream ended with it, so its client reconnects anyway. Named node is not
  running or not listening: `UNKNOWN_SESSION` ("Nobody received it").
* **Single process.** Without a shared broker (memory) no other node exists: a node id
  that is not this one's is `UNKNOWN_SESSION`, without a publish. Node ids are random
  per relay (so per hub and per process) and stable for its lifetime.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import re
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..brokers.base import NO_HISTORY, Publication
from ..errors import BrokerError

if TYPE_CHECKING:
    from ..brokers import Broker

log = logging.getLogger("pubsocket.hub")

NODE_PREFIX = "$n:"  # "$n:<node>": commands routed to <node>
MAX_ID = 128  # characters of a session or node id
MAX_PENDING = 1024  # routed commands waiting for the broker at once, per node
_ID = re.compile(rf"[!-~]{{1,{MAX_ID}}}")  # printable ASCII, no space: "\n" separates
_NODE = re.compile(r"[0-9a-f]{16}")  # what `secrets.token_hex(8)` makes
_SEP = b"\n"

Feed = Callable[[bytes], None]


class RouteResult(enum.Enum):
    """What became of one routed command (the HTTP layer maps each to a status)."""

    LOCAL_FED = "local_fed"  # fed to the session here, synchronously (204)
    SENT = "sent"  # handed to the broker for the named node (204)
    UNKNOWN_SESSION = "unknown_session"  # no such session where it could be, or no
    # node received the routed command (404)
    UNAVAILABLE = "unavailable"  # the broker could not take it, or too many wait (503)
    TOO_LARGE = "too_large"  # data over the relay's max_bytes (413)


class RelayStats:
    """Counters since start (for /metrics and the tests)."""

    __slots__ = ("dropped", "fed_local", "fed_routed", "sent", "unavailable", "unreachable")

    def __init__(self) -> None:
        self.fed_local = 0  # commands fed to a local session by `route`
        self.sent = 0  # commands the broker took for another node
        self.fed_routed = 0  # commands other nodes routed here, fed to their session
        self.dropped = 0  # commands routed here for a session this node does not hold
        self.unavailable = 0  # routes refused: broker down or `max_pending` reached
        self.unreachable = 0  # routed commands no node received (answered unknown)


class CommandRelay:
    """Hands commands POSTed for an emulated session to the node and session holding it."""

    __slots__ = ("_broker", "_closed", "_pending", "_sessions", "_task", "max_bytes",
                 "max_pending", "node", "ready", "stats", "topic")

    def __init__(self, broker: Callable[[], Broker], *, max_bytes: int,
                 max_pending: int = MAX_PENDING, node: str | None = None) -> None:
        """`broker` returns the hub's broker (made on first use). `max_bytes` caps a
        command's data (0: no cap); `node` is for tests only (default: random, 16 hex
        digits)."""
        self._broker = broker
        self.node = node or secrets.token_hex(8)
        if not _NODE.fullmatch(self.node):
            raise ValueError("a node id is 16 lowercase hex digits")
        self.topic = NODE_PREFIX + self.node
        self.max_bytes = max_bytes
        self.max_pending = max_pending
        self.stats = RelayStats()
        self.ready = False  # True once the broker confirmed this node's topic
        self._sessions: dict[str, Feed] = {}
        self._pending = 0
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle (the hub calls these) ------------------------------------------------
    async def start(self) -> None:
        """Receive this node's topic, when other nodes can reach it (a shared broker).
        The subscription runs in the background and retries: starting never waits on,
        or fails for, an absent broker (`ready` says when it is confirmed)."""
        self._closed = False
        broker = self._broker()
        if not broker.shared:
            self.ready = True  # nothing is ever routed here from elsewhere
        elif broker.subscribe_nowait(self.topic):
            self.ready = True
        else:
            self._task = asyncio.get_running_loop().create_task(
                self._subscribe(broker), name="pubsocket-relay-subscribe")

    async def close(self) -> None:
        """Refuse further routes (`UNAVAILABLE`) and stop subscribing. The broker, which
        the hub closes, drops the subscription itself."""
        self._closed, self.ready = True, False
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=1.0)

    async def _subscribe(self, broker: Broker) -> None:
        for delay in itertools.chain((0.0, 0.1, 0.5, 1.0), itertools.repeat(2.0)):
            await asyncio.sleep(delay)
            try:
                await broker.subscribe(self.topic)
            except (BrokerError, OSError):
                log.warning("relay channel not subscribed yet; retrying")
                continue
            self.ready = True
            return

    # -- sessions -------------------------------------------------------------------------
    def register(self, session_id: str, feed: Feed) -> None:
        """Make `session_id` reachable: commands routed to it go to `feed`. Raises
        ValueError for an id the relay cannot carry, or one already registered."""
        if not _ID.fullmatch(session_id):
            raise ValueError("a session id is 1-128 printable ASCII characters, no space")
        if session_id in self._sessions:
            raise ValueError("session id already registered")
        self._sessions[session_id] = feed

    def unregister(self, session_id: str) -> None:
        """Forget `session_id` (idempotent): commands for it are then unknown here."""
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    # -- routing --------------------------------------------------------------------------
    async def route(self, node: str, session_id: str, data: bytes) -> RouteResult:
        """Feed `data` to `session_id` held by `node`: here, or through the broker.

        See the module docstring for each result; nothing here raises for bad input."""
        if self.max_bytes and len(data) > self.max_bytes:
            return RouteResult.TOO_LARGE
        if node == self.node:
            feed = self._sessions.get(session_id)
            if feed is None:
                return RouteResult.UNKNOWN_SESSION
            self.stats.fed_local += 1
            _feed(feed, data)
            return RouteResult.LOCAL_FED
        broker = self._broker()
        if not broker.shared or not _NODE.fullmatch(node) or not _ID.fullmatch(session_id):
            return RouteResult.UNKNOWN_SESSION  # no other node, or not one of ours
        if self._closed or self._pending >= self.max_pending or not broker.healthy:
            self.stats.unavailable += 1
            return RouteResult.UNAVAILABLE
        self._pending += 1
        try:
            receivers = await publish_counted(broker, NODE_PREFIX + node,
                                       session_id.encode() + _SEP + data)
        except BrokerError:
            self.stats.unavailable += 1
            return RouteResult.UNAVAILABLE
        finally:
            self._pending -= 1
        if receivers == 0:  # the owner is gone or deaf: the command went nowhere
            self.stats.unreachable += 1
            return RouteResult.UNKNOWN_SESSION
        self.stats.sent += 1
        return RouteResult.SENT

    def receive(self, message: bytes) -> None:
        """A command another node routed here (the hub's delivery of `topic`): feed it
        to its session, or drop it when this node does not hold that session."""
        session_id, sep, data = message.partition(_SEP)
        feed = self._sessions.get(session_id.decode("ascii", "replace")) if sep else None
        if feed is None:
            self.stats.dropped += 1
            log.debug("routed command for a session not on this node dropped")
            return
        self.stats.fed_routed += 1
        _feed(feed, data)


async def publish_counted(broker: Broker, topic: str, message: bytes) -> int | None:
    """Publish `message` without history; how many received it (None: not known).
    Queued on the broker before the first await, so routes keep their call order."""
    counted = broker.publish_counted_nowait(topic, message)
    if counted is not None:
        return counted if isinstance(counted, int) else await counted
    result = broker.publish_nowait(topic, message, NO_HISTORY)
    if result is None:
        await broker.publish(topic, message, NO_HISTORY)
    elif not isinstance(result, Publication):
        await result
    return None


def _feed(feed: Feed, data: bytes) -> None:
    try:
        feed(data)
    except Exception:  # a transport bug must not break the caller (or the broker reader)
        log.exception("feeding a relayed command raised")


__all__ = ["MAX_ID", "MAX_PENDING", "NODE_PREFIX", "CommandRelay", "Feed", "RelayStats",
           "RouteResult", "publish_counted"]
