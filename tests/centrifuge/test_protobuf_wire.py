"""The Centrifuge Protobuf wire by hand: how a client asks for it, the binary ping, one
encode per codec on a shared channel, and what hostile binary frames cost (a close with
a documented code, never a traceback, the server still serving)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from pubsocket.protocols.centrifuge import CentrifugeCodec
from pubsocket.protocols.centrifuge.protobuf_codec import CentrifugeProtobufCodec
from pubsocket.protocols.centrifuge.protobuf_parse import (
    COUNT_WALK,
    count_commands,
    parse_commands,
    read_varint,
    varint,
)
from tests.centrifuge.conftest import PATH, cf_app, token
from tests.centrifuge.test_wire import closed_with, frame, replies

from pubsocket.protocols.centrifuge._pb import pubsocket_centrifuge_pb2 as pb  # isort: skip

SUB = "centrifuge-protobuf"


def commands(*cmds: Any) -> bytes:
    """Commands as a Protobuf client frames them: each prefixed with its length."""
    out = b""
    for cmd in cmds:
        body = cmd.SerializeToString()
        out += varint(len(body)) + body
    return out


def decode(message: bytes) -> list[Any]:
    out, pos = [], 0
    while pos < len(message):
        length, pos = read_varint(message, pos)
        out.append(pb.Reply.FromString(message[pos:pos + length]))
        pos += length
    return out


async def pb_replies(ws: ClientConnection, count: int) -> list[Any]:
    out: list[Any] = []
    async with asyncio.timeout(5):
        while len(out) < count:
            message = await ws.recv()
            assert isinstance(message, bytes)
            out += decode(message)
    return out


def connect_cmd(user: str = "alice") -> Any:
    return pb.Command(id=1, connect=pb.ConnectRequest(token=token(user)))


@pytest.mark.parametrize("query", ["?cf_protocol=protobuf", "?format=protobuf", ""])
async def test_protobuf_is_asked_for_by_subprotocol_or_query(serve: Any,
                                                             query: str) -> None:
    srv = await serve(cf_app(centrifuge_ping=0.2))
    offer = None if query else [SUB]
    async with connect(srv.ws + PATH + query, subprotocols=offer) as ws:
        assert ws.subprotocol == (SUB if offer else None)
        await ws.send(commands(connect_cmd()))
        (reply,) = await pb_replies(ws, 1)
        assert reply.id == 1 and reply.connect.client and reply.connect.pong
        async with asyncio.timeout(3):
            assert await ws.recv() == b"\x00"  # the ping: an empty Reply


async def test_each_publication_is_encoded_once_per_codec(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    encodes = {"json": 0, "protobuf": 0}
    for cls, key in ((CentrifugeCodec, "json"), (CentrifugeProtobufCodec, "protobuf")):
        def counted(self: Any, topic: str, pub: Any, _key: str = key,
                    _orig: Any = cls.publication) -> bytes:
            encodes[_key] += 1
            return _orig(self, topic, pub)
        monkeypatch.setattr(cls, "publication", counted)
    app = cf_app()
    srv = await serve(app)
    pbs = [await connect(srv.ws + PATH, subprotocols=[SUB]) for _ in range(3)]
    jsons = [await connect(srv.ws + PATH) for _ in range(3)]
    try:
        for ws in pbs:
            await ws.send(commands(connect_cmd(), pb.Command(
                id=2, subscribe=pb.SubscribeRequest(channel="chat:e"))))
            await pb_replies(ws, 2)
        for ws in jsons:
            await ws.send(frame({"id": 1, "connect": {"token": token("j")}},
                                {"id": 2, "subscribe": {"channel": "chat:e"}}))
            await replies(ws, 2)
        await app.hub.publish("chat:e", {"n": 1})
        for ws in pbs:
            (push,) = await pb_replies(ws, 1)
            assert (push.push.channel, json.loads(push.push.pub.data)) == ("chat:e", {"n": 1})
        for ws in jsons:
            assert (await replies(ws, 1))[0]["push"]["pub"]["data"] == {"n": 1}
        assert encodes == {"json": 1, "protobuf": 1}
    finally:
        for ws in pbs + jsons:
            await ws.close()


async def _closed_by(srv: Any, message: bytes | str, *, connected: bool = True
                     ) -> tuple[int | None, str | None]:
    async with connect(srv.ws + PATH, subprotocols=[SUB]) as ws:
        if connected:
            await ws.send(commands(connect_cmd()))
            await pb_replies(ws, 1)
        await ws.send(message)
        return await closed_with(ws)


@pytest.mark.parametrize(("message", "why"), [
    (b"\x05\xff\xff\xff\xff\xff", "garbage protobuf"),
    (b"\xff" * 12, "a varint longer than any length"),
    (b"\x80\x80\x80\x80\x01", "a length beyond the frame"),
    (b"\x00" * 300, "more commands than max_frame_commands"),
    ("{}", "a text frame"),
])
async def test_hostile_binary_frames_close_with_3501(serve: Any, message: bytes | str,
                                                    why: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    srv = await serve(cf_app())
    assert await _closed_by(srv, message) == (3501, "bad request"), why
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback
    async with connect(srv.ws + PATH, subprotocols=[SUB]) as ws:
        await ws.send(commands(connect_cmd()))  # and the server serves the next one
        assert (await pb_replies(ws, 1))[0].connect.client


async def test_before_connect_binary_frames_are_small_and_must_connect(serve: Any) -> None:
    srv = await serve(cf_app(connect_message_size=1024))
    big = commands(pb.Command(id=1, connect=pb.ConnectRequest(token="x" * 2000)))
    assert await _closed_by(srv, big, connected=False) == (3501, "bad request")
    publish = commands(pb.Command(id=1, publish=pb.PublishRequest(channel="c", data=b"1")))
    assert await _closed_by(srv, publish, connected=False) == (3501, "bad request")


async def test_every_command_of_a_binary_frame_costs_a_token(serve: Any) -> None:
    srv = await serve(cf_app(rate_limit=10, rate_burst=20))
    pubs = [pb.Command(id=i, publish=pb.PublishRequest(channel="chat:r", data=b"1"))
            for i in range(2, 32)]
    assert await _closed_by(srv, commands(*pubs)) == (3013, "too many requests")


def test_counting_is_bounded_and_an_upper_bound() -> None:
    one = commands(connect_cmd())
    assert count_commands(one * 3) == 3 == len(parse_commands(one * 3))
    many = b"\x00" * (COUNT_WALK + 500)  # past the walk: every byte could be a command
    assert count_commands(many) == len(many)
    assert count_commands(b"\xff" * 12) == 1  # a bad prefix: parsing stops there too
    assert parse_commands(b"\x00\x00") == []  # pongs


def test_the_json_path_never_imports_protobuf() -> None:
    code = ("import sys, pubsocket, pubsocket.web.pubsub, pubsocket.protocols.centrifuge, "
            "pubsocket.server.websocket, pubsocket.server.asgi\n"
            "print(sorted(m for m in sys.modules if m.startswith('google') "
            "or 'protobuf' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


async def test_without_the_protobuf_package_the_upgrade_is_refused_with_400(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a missing `protobuf` looks like to the lazy import: it raises ImportError.
    monkeypatch.setitem(sys.modules, "pubsocket.protocols.centrifuge.protobuf_codec", None)
    srv = await serve(cf_app())
    with pytest.raises(InvalidStatus) as refused:
        await connect(srv.ws + PATH, subprotocols=[SUB])
    assert refused.value.response.status_code == 400
    assert b"protobuf_unavailable" in refused.value.response.body
    with pytest.raises(InvalidStatus):  # again: refused at once, logged only the once
        await connect(srv.ws + PATH + "?format=protobuf")
    async with connect(srv.ws + PATH) as ws:  # JSON clients are unaffected
        await ws.send(frame({"id": 1, "connect": {"token": token("alice")}}))
        assert (await replies(ws, 1))[0]["connect"]["client"]
