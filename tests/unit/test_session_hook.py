"""The session's protocol seams (`hub.hook`, `Codec.binary`): a protocol plugs in a
hook and a codec, and the generic session calls them without knowing the protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Mapping
from typing import Any

from pubsocket import CloseCode, Hub, Settings
from pubsocket.codecs import V1, Codec
from pubsocket.codecs.v1 import V1Codec
from pubsocket.errors import ProtocolViolation
from pubsocket.hub import handlers
from pubsocket.hub.session import Session
from pubsocket.protocol import Command, Subscribe
from tests.unit.test_session import MemoryPeer, pub, sub, unsub


class BinaryV1(V1Codec):
    """pubsocket.v1 commands carried in binary messages (a stand-in for a binary
    protocol such as Centrifuge's Protobuf one)."""

    name = "v1-binary"
    binary = True


async def test_a_binary_codec_takes_binary_messages(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(b'{"action": "subscribe", "topic": "t", "id": 1}',
              b'{"action": "publish", "topic": "t", "data": 7}')
    peer.hang_up()
    session = Session(hub, peer, Settings(), codec=BinaryV1())
    await asyncio.wait_for(session.run(), 3)
    assert peer.close_code is None
    assert [m["type"] for m in peer.received] == ["ack", "message"]
    assert peer.received[1]["data"] == 7


async def test_a_text_codec_still_refuses_binary_messages(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(b'{"action": "subscribe", "topic": "t", "id": 1}')
    session = Session(hub, peer, Settings(), codec=V1)
    await asyncio.wait_for(session.run(), 3)
    assert (peer.close_code, peer.close_reason) == (CloseCode.UNSUPPORTED_DATA,
                                                    "text frames only")
    assert peer.frames == []


class Hook:
    """A toy protocol: nothing but a subscribe to ``hello`` runs until one has; then
    commands go to the shared handlers. Records every call the session makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.greeted = False

    @property
    def ready(self) -> bool:
        return self.greeted

    def run(self, session: Session, cmd: Command) -> Awaitable[None] | None:
        self.calls.append(("run", type(cmd).__name__))
        if not self.greeted:
            if isinstance(cmd, Subscribe) and cmd.topic == "hello":
                self.greeted = True
            else:
                session.close(4400, "say hello first")
                return None
        return handlers.run(session, cmd)

    def idle(self, session: Session) -> None:
        self.calls.append(("idle", None))

    def violation(self, session: Session, exc: ProtocolViolation) -> None:
        self.calls.append(("violation", exc.code))

    def released(self, topic: str) -> None:
        self.calls.append(("released", topic))

    def held(self) -> Collection[str]:
        return ()

    def closed(self, session: Session) -> None:
        self.calls.append(("closed", None))


class Dialect:
    close_codes: Mapping[int, tuple[int, str]] | None = None

    def __init__(self) -> None:
        self.hooks: list[Hook] = []

    @property
    def codec(self) -> Codec:
        return V1

    def open(self, session: Session) -> Hook:
        self.hooks.append(Hook())
        return self.hooks[-1]


async def test_a_dialect_gates_commands_through_its_hook(hub: Hub) -> None:
    dialect = Dialect()
    peer = MemoryPeer()
    peer.send(sub("hello", id=1), pub("hello", 1, id=2), "{", unsub("hello", id=3))
    peer.hang_up()
    session = Session(hub, peer, Settings(), dialect=dialect)
    assert session.codec is V1 and session.hook is dialect.hooks[0]
    await asyncio.wait_for(session.run(), 3)
    # Ready after the hello: the publish took the session's own (pipelined) path, the
    # malformed command went to the hook, the unsubscribe released the topic.
    assert dialect.hooks[0].calls == [
        ("run", "Subscribe"), ("violation", "bad_json"), ("run", "Unsubscribe"),
        ("released", "hello"), ("closed", None)]
    assert [m.get("type") for m in peer.received] == ["ack", "message", "ack", "ack"]
    assert peer.close_code is None


async def test_a_dialect_refuses_before_its_handshake(hub: Hub) -> None:
    dialect = Dialect()
    peer = MemoryPeer()
    peer.send(pub("t", 1, id=1), sub("hello", id=2))
    session = Session(hub, peer, Settings(), dialect=dialect)
    await asyncio.wait_for(session.run(), 3)
    # Not ready: the publish is the hook's to run, and it refused it.
    assert dialect.hooks[0].calls == [("run", "Publish"), ("closed", None)]
    assert (peer.close_code, peer.frames) == (4400, [])
