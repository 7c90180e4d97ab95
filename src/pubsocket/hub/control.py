"""Server-side control of connections on every node, through the broker.

`disconnect_user` and `unsubscribe_user` publish a small JSON command on the reserved
topic `CONTROL_TOPIC` (a ``$`` never appears in a client topic, so no client can
subscribe or publish to it); every node's hub receives it and acts on its own sessions
of that user. The registry maps users to their local sessions.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ..brokers.base import NO_HISTORY, Position, Publication
from ..config import Settings
from ..errors import BrokerError, CloseCode
from ..presence.base import Presence
from ..presence.memory import MemoryPresence
from ..protocol import SubscribeOptions

if TYPE_CHECKING:
    from ..brokers import Broker

log = logging.getLogger("pubsocket.hub")

CONTROL_TOPIC = "$control"
PRESENCE_PREFIX = "$p:"  # "$p:<topic>": join/leave events of <topic>, between nodes


class Controlled(Protocol):
    """A session the server can act on."""

    def kick(self, code: int, reason: str) -> None: ...

    def drop(self, topic: str, reason: str) -> None: ...

    def adopt(self, topic: str, since: Position | None = None,
              options: SubscribeOptions | None = None) -> None: ...

    @property
    def client_id(self) -> str: ...


class Registry:
    """Local sessions by user (only sessions whose principal has a user)."""

    __slots__ = ("_users",)

    def __init__(self) -> None:
        self._users: dict[str, set[Controlled]] = {}

    def add(self, user: str, session: Controlled) -> None:
        self._users.setdefault(user, set()).add(session)

    def discard(self, user: str, session: Controlled) -> None:
        sessions = self._users.get(user)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._users[user]

    def apply(self, payload: bytes) -> None:
        """Carry out one control command on this node's sessions."""
        command = decode(payload)
        if command is not None:
            self.run(command)

    def run(self, command: dict[str, Any]) -> None:
        """Carry out one decoded control command (`decode`) on this node's sessions."""
        op, user = command["op"], command.get("user")
        if not isinstance(user, str):
            log.warning("ignored a malformed control message")
            return
        client = command.get("client")  # only that connection of the user, when given
        options = decode_options(command.get("options")) if op == "subscribe" else None
        for session in list(self._users.get(user, ())):
            if client and session.client_id != client:
                continue
            if op == "disconnect":
                session.kick(int(command.get("code", 4003)), str(command.get("reason", "")))
            elif op == "unsubscribe":
                session.drop(str(command.get("topic", "")), "unsubscribed by the server")
            elif op == "subscribe":
                session.adopt(str(command.get("topic", "")), _since(command.get("since")),
                              options)

    @property
    def users(self) -> int:
        """Distinct users with a session on this node."""
        return len(self._users)

    def __len__(self) -> int:
        return sum(len(s) for s in self._users.values())


def decode(payload: bytes) -> dict[str, Any] | None:
    """A control message as a JSON object with a string ``op``, else None (logged)."""
    try:
        command: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        command = None
    if not isinstance(command, dict) or not isinstance(command.get("op"), str):
        log.warning("ignored a malformed control message")
        return None
    return command


def _since(raw: Any) -> Position | None:
    """A control command's recovery position (``[offset, epoch]``), else None."""
    if (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], int)
            and not isinstance(raw[0], bool) and raw[0] >= 0 and isinstance(raw[1], str)):
        return Position(raw[0], raw[1])
    return None


_FLAGS = ("presence", "join_leave", "push_join_leave")


def decode_options(raw: Any) -> SubscribeOptions | None:
    """A subscribe command's options (`encode_options`), else None: a malformed part
    is dropped (logged), as a malformed ``since`` is."""
    if not isinstance(raw, dict):
        return None
    data = raw.get("data")
    flags = [raw.get(key) for key in _FLAGS]
    if (data is not None and not isinstance(data, str)) or any(
            f is not None and not isinstance(f, bool) for f in flags):
        log.warning("ignored malformed options of a control subscribe")
        return None
    return SubscribeOptions(raw.get("info"), None if data is None else data.encode(),
                            *flags)


def encode_options(options: SubscribeOptions) -> dict[str, Any]:
    """`options` as a control command's JSON: `data` as its JSON text (exact bytes),
    `info` as the JSON value it is, each override only when set."""
    out: dict[str, Any] = {key: getattr(options, key) for key in _FLAGS
                           if getattr(options, key) is not None}
    if options.info is not None:
        out["info"] = options.info
    if options.data is not None:
        out["data"] = options.data.decode()  # JSON: UTF-8 text
    return out


def encode(op: str, user: str, **fields: Any) -> bytes:
    return orjson.dumps({"op": op, "user": user, **fields})


class Control:
    """The hub's side of control and internal channels (mixed into `Hub`)."""

    settings: Settings

    @property
    def broker(self) -> Broker:
        raise NotImplementedError

    async def disconnect_user(self, user: str, reason: str = "disconnected by the server",
                              *, client: str | None = None,
                              code: int = CloseCode.DISCONNECTED) -> None:
        """Close every connection of `user` (only `client`, when given) on every node
        (`code`, default 4003), e.g. on logout or ban. Raises `BrokerUnavailable` when
        the command could not be sent."""
        await self.publish_internal(CONTROL_TOPIC, encode(
            "disconnect", user, code=int(code), reason=reason, client=client))

    async def unsubscribe_user(self, user: str, topic: str, *, client: str | None = None
                               ) -> None:
        """End `user`'s subscriptions to `topic` on every node; each of its v1 connections
        hears ``{"type": "unsubscribed", ...}``."""
        await self.publish_internal(CONTROL_TOPIC, encode("unsubscribe", user, topic=topic,
                                                          client=client))

    async def subscribe_user(self, user: str, topic: str, *, client: str | None = None,
                             since: Position | None = None,
                             options: SubscribeOptions | None = None) -> None:
        """Subscribe `user`'s live connections (only `client`, when given) to `topic` on
        every node, without permission checks (the server decided): each hears the
        subscribe reply its protocol has for it (a Centrifuge ``subscribe`` push, with
        the `options`' data), with what was published after `since` when given (all of
        it, or ``recovered: false``); its presence follows the `options`. Connections
        opened later are not subscribed. The command carries the options whole: the
        caller bounds their size (`Operations.subscribe_user`)."""
        extra: dict[str, Any] = {} if since is None else {
            "since": [since.offset, since.epoch]}
        if options is not None:
            extra["options"] = encode_options(options)
        await self.publish_internal(CONTROL_TOPIC, encode("subscribe", user, topic=topic,
                                                          client=client, **extra))

    async def publish_internal(self, channel: str, payload: bytes) -> None:
        """Send on a ``$`` channel (control, presence events): no history, no checks."""
        result = self.broker.publish_nowait(channel, payload, NO_HISTORY)
        if result is None:
            await self.broker.publish(channel, payload, NO_HISTORY)
        elif not isinstance(result, Publication):
            await result

    async def _subscribe_control(self) -> None:
        for delay in itertools.chain((0.0, 0.1, 0.5, 1.0), itertools.repeat(2.0)):
            await asyncio.sleep(delay)
            try:
                await self.broker.subscribe(CONTROL_TOPIC)
                return
            except (BrokerError, OSError):
                log.warning("control channel not subscribed yet; retrying")

    def _presence_store(self) -> Presence:
        broker: Any = self.broker
        if broker.shared:
            from ..presence.redis import MAX_CONNECTIONS, RedisPresence

            # One connection manager per Redis: presence borrows a client of the
            # broker's (brokers/redis/connections.py), which the broker closes.
            connections = getattr(broker, "connections", None)
            client = (None if connections is None
                      else connections.client("presence", MAX_CONNECTIONS))
            return RedisPresence(broker.redis_url, prefix=broker.prefix + "presence:",
                                 ttl=self.settings.presence_ttl, client=client)
        return MemoryPresence()
