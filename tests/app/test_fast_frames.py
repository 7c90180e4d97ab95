"""The inbound fast path (server/fastframes.py, server/inbound.py) changes nothing a peer
or a handler can see: whole single-frame messages split by us, everything else parsed by
websockets, exactly as when websockets parsed it all.

Real server, raw sockets: random streams of frames (whole, fragmented, control, over
the size limit, unmasked, invalid UTF-8, RSV bits, bad opcodes), cut at random points,
are sent once with the fast path and once with it switched off; the messages the handler
received and the close code the client got must be the same. And a resting connection
that receives whole text frames stays resting, while the refusals (1009, 1007, 1002)
still close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from websockets.asyncio.client import connect

from pubsocket import App, ConnectionClosed, Websocket
from pubsocket.server import fastframes, inbound
from pubsocket.server.websocket import WSConnection
from tests.app.test_deflate import open_deflate
from tests.app.test_idle_rest import V1, ack, all_rest, conns
from tests.app.test_idle_rest import app as idle_app
from tests.centrifuge.test_frames import raw_upgrade
from tests.conftest import make_settings

LIMIT = 300  # max_message_size of the recording endpoint
STREAMS = 120  # random streams, each sent twice (fast path on and off)
Record = tuple[list[str | bytes], int]  # the messages a handler received, its close code


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
          mask: bool = True, wide: bool = False) -> bytes:
    """A client frame built by hand (so that it can be wrong in every way)."""
    n = len(payload)
    head = bytes(((0x80 if fin else 0) | rsv << 4 | opcode,))
    bit = 0x80 if mask else 0
    if n < 126 and not wide:
        head += bytes((bit | n,))
    elif n < 65536:
        head += bytes((bit | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((bit | 127,)) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def text(rng: random.Random, size: int) -> bytes:
    """Valid UTF-8 of 1-4-byte characters, `size` characters long."""
    return "".join(rng.choice("aé€😀 {}") for _ in range(size)).encode()


def good(rng: random.Random) -> bytes:
    """A frame or message that leaves the connection open."""
    kind = rng.randrange(8)
    if kind <= 2:  # the fast path's shape: whole text, sometimes with a 16-bit length
        return frame(0x1, text(rng, rng.randrange(0, 75)), wide=rng.random() < 0.2)
    if kind == 3:
        return frame(0x2, os.urandom(rng.randrange(0, LIMIT + 1)))
    if kind == 4:  # fragmented, a ping between fragments
        whole = text(rng, rng.randrange(2, 60))
        cut = rng.randrange(1, len(whole))
        return (frame(0x1, whole[:cut], fin=False) + frame(0x9, b"p")
                + frame(0x0, whole[cut:]))
    if kind == 5:
        return frame(0x9, os.urandom(rng.randrange(0, 10)))
    if kind == 6:
        return frame(0xA, os.urandom(rng.randrange(0, 10)))
    return frame(0x2, b"", wide=True)


def last(rng: random.Random) -> bytes:
    """What ends a stream: a close, or something the server refuses."""
    options: list[Callable[[], bytes]] = [
        lambda: frame(0x8, (1000).to_bytes(2, "big") + b"bye"),
        lambda: frame(0x1, b"x" * (LIMIT + 1)),  # over the limit: 1009 from the header
        lambda: frame(0x2, b"x" * 70000),  # 64-bit length, over the limit
        lambda: frame(0x1, b"ok \xff\xfe"),  # invalid UTF-8: 1007
        lambda: frame(0x1, b"unmasked", mask=False),  # 1002
        lambda: frame(0x1, b"rsv", rsv=rng.choice([1, 2, 4])),  # 1002 (no extension)
        lambda: frame(0x3, b"opcode"),  # reserved opcode: 1002
        lambda: frame(0x0, b"no start"),  # continuation of nothing: 1002
        lambda: frame(0x1, b"a" * 200, fin=False) + frame(0x0, b"b" * 200),  # 1009
        lambda: frame(0x1, b"\xe2\x82", fin=False) + frame(0x0, b"\x28"),  # 1007
        lambda: frame(0x9, b"p" * 126, wide=True),  # control frame too long: 1002
        lambda: frame(0xA, b"p" * 126, wide=True),  # a PONG too: websockets' 1002
        # partial: the client's close completes it as junk (binary: the one difference,
        # a text frame's UTF-8 error now wins over a later one in the same read, is
        # docs/design.md's "Cost model: one delivery")
        lambda: frame(0x2, b"half")[:-2],
    ]
    return rng.choice(options)()


CLOSE = frame(0x8, (1000).to_bytes(2, "big"))  # the same bytes in both runs


def recording_app(live: list[list[str | bytes]] | None = None
                  ) -> tuple[App, list[Record]]:
    """An endpoint that keeps what it receives: in `records` once closed, in `live`
    (when given) from the start."""
    app = App(make_settings(max_message_size=LIMIT, ping_interval=0))
    records: list[Record] = []

    @app.get("/ws/record")
    async def record(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        got: list[str | bytes] = []
        if live is not None:
            live.append(got)
        try:
            while True:
                got.append(await ws.receive())
        except ConnectionClosed as exc:
            records.append((got, exc.code))

    return app, records


def connection(srv: Any) -> WSConnection:
    (conn,) = srv.server.state.websockets
    assert isinstance(conn, WSConnection)
    return conn


def close_code(received: bytes | bytearray) -> int:
    """The code of the server's close frame in `received` (its frames are unmasked),
    1006 when there is none (TCP dropped without one)."""
    pos = 0
    while pos + 2 <= len(received):
        opcode, length = received[pos] & 0x0F, received[pos + 1] & 0x7F
        pos += 2
        if length >= 126:
            width = 2 if length == 126 else 8
            length, pos = int.from_bytes(received[pos:pos + width]), pos + width
        if opcode == 0x8 and length >= 2:
            return int.from_bytes(received[pos:pos + 2])
        pos += length
    return 1006


async def send_stream(srv: Any, records: list[Record], data: bytes, cuts: list[int],
                      rest: bool, deflate: bool = False) -> tuple[list[str | bytes], int, int]:
    """Send `data` in pieces cut at `cuts` (after resting the connection when `rest`),
    on a connection that negotiated permessage-deflate when `deflate`; what the handler
    received and the close codes on both sides."""
    if deflate:
        reader, writer, head = await open_deflate(srv.port, "/ws/record")
        assert b"permessage-deflate" in head
    else:
        reader, writer = await raw_upgrade(srv.port, "/ws/record")
    before = len(records)
    received = bytearray()

    async def read() -> None:  # all along: a write after the server's close may reset
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                received.extend(chunk)

    reading = asyncio.create_task(read())
    try:
        if rest:
            async with asyncio.timeout(3):
                while not srv.server.state.websockets:
                    await asyncio.sleep(0.005)
            conn = connection(srv)
            for _ in range(2):  # the first sweep clears `_busy`, the second parks
                conn.rest()
            assert conn.resting
        with contextlib.suppress(OSError):  # the server may have closed already
            for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
                if close_code(received) != 1006:
                    break  # the server's close came: nothing more is read
                writer.write(data[a:b])
                await writer.drain()
                await asyncio.sleep(0.002)  # a read of its own on the server
            if close_code(received) == 1006:
                writer.write(CLOSE)  # the client's close
                writer.write_eof()
        try:
            async with asyncio.timeout(3):
                await reading
        except TimeoutError:
            raise AssertionError((bytes(received), data, cuts, rest)) from None
    finally:
        reading.cancel()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    async with asyncio.timeout(3):
        while len(records) == before:
            await asyncio.sleep(0.005)
    got, handler_code = records[-1]
    return got, handler_code, close_code(bytes(received))


async def test_random_streams_are_seen_the_same_with_and_without_the_fast_path(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app, records = recording_app()
    srv = await serve(app)
    rng = random.Random(20)
    split = fastframes.split_frames
    taken: list[int] = []

    def counting(*args: Any) -> tuple[int, list[tuple[bytes, int]]]:
        end, messages = split(*args)
        taken.append(len(messages))
        return end, messages

    monkeypatch.setattr(inbound, "split_frames", counting)
    carried = 0
    for n in range(STREAMS):
        parts = [good(rng) for _ in range(rng.randrange(0, 12))]
        if rng.random() < 0.8:
            parts.append(last(rng))
        data = b"".join(parts)
        cuts = sorted(rng.sample(range(1, len(data)), max(0, min(len(data) - 1, rng.randrange(8)))))
        rest = n % 3 == 0
        with monkeypatch.context() as patch:
            patch.setattr(inbound, "fast_limit", lambda live, parked: -1)
            slow = await send_stream(srv, records, data, cuts, rest)
        fast = await send_stream(srv, records, data, cuts, rest)
        assert fast == slow, (n, data, cuts)
        carried += bool(slow[0])
    assert carried > STREAMS // 2  # most streams carried messages
    assert sum(taken) > STREAMS  # ... and most of those went through the fast path


async def resting(srv: Any) -> WSConnection:
    """The one connection, once the server's own rest sweep released its protocol."""
    async with asyncio.timeout(3):
        while not (srv.server.state.websockets and connection(srv).resting):
            await asyncio.sleep(0.01)
    return connection(srv)


class Client(NamedTuple):
    """A raw client of the recording endpoint (`recording_app`) on its own server."""

    srv: Any
    live: list[list[str | bytes]]
    records: list[Record]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: WSConnection  # resting when `resting_client` returns


async def resting_client(serve: Any) -> Client:
    """A new server's recording endpoint and a raw client of it, once its connection
    rests (the server's own sweep released its protocol)."""
    live: list[list[str | bytes]] = []
    app, records = recording_app(live)
    srv = await serve(app)
    reader, writer = await raw_upgrade(srv.port, "/ws/record")
    return Client(srv, live, records, reader, writer, await resting(srv))


async def test_a_resting_connection_takes_whole_frames_without_waking(serve: Any) -> None:
    srv, live, _, reader, writer, conn = await resting_client(serve)
    writer.write(frame(0x1, b"one") + frame(0x2, b"\x00two") + frame(0x1, "€".encode()))
    writer.write(frame(0x1, b"x" * LIMIT, wide=True))  # at the limit: taken
    async with asyncio.timeout(3):
        while len(live[0]) < 4:
            await asyncio.sleep(0.01)
    assert live[0] == ["one", b"\x00two", "€", "x" * LIMIT]
    assert conn.resting and conn not in srv.server.state.awake  # never rebuilt
    assert srv.server.state.stats.messages_in == 4
    writer.write(frame(0x9, b"ping"))  # a control frame: websockets' (the pong comes)
    async with asyncio.timeout(3):
        assert await reader.readexactly(6) == b"\x8a\x04ping"
    assert not conn.resting  # rebuilt for it, and rests again later
    conn = await resting(srv)
    writer.write(frame(0x1, b"after"))
    async with asyncio.timeout(3):
        while len(live[0]) < 5:
            await asyncio.sleep(0.01)
    assert live[0][4] == "after" and conn.resting
    writer.close()


@pytest.mark.parametrize(("data", "code"), [
    (frame(0x1, b"x" * (LIMIT + 1)), 1009),  # refused from its header, by websockets
    (frame(0x1, b"ok") + frame(0x1, b"\xc3\x28"), 1007),  # invalid UTF-8, after a good one
    (frame(0x1, b"ok") + frame(0x1, b"unmasked", mask=False), 1002),
])
async def test_a_resting_connection_still_refuses(serve: Any, data: bytes, code: int) -> None:
    _, _, records, reader, writer, _ = await resting_client(serve)
    writer.write(data)
    async with asyncio.timeout(3):
        received = await reader.read()  # until the server drops TCP after its close
        while not records:
            await asyncio.sleep(0.01)
    assert close_code(received) == code
    assert records == [(["ok"] if code != 1009 else [], code)]
    writer.close()


async def test_a_burst_is_sliced_by_the_fairness_limits_and_stays_in_order(
        serve: Any) -> None:
    # 3 x FRAMES_PER_TICK frames and more than PARSE_SLICE bytes in one write, to a
    # resting connection: taken over several loop iterations, in order, never rebuilt;
    # then a frame cut in two (its beginning is kept for the fast path, still resting),
    # and a ping cut in two (websockets' parser gets it from its first byte).
    _, live, _, reader, writer, conn = await resting_client(serve)
    count = 3 * inbound.FRAMES_PER_TICK
    sizes = [5 + (n * 37) % 250 for n in range(count)]
    burst = [f"{n:04}".encode() + b"y" * (size - 4) for n, size in enumerate(sizes)]
    assert sum(sizes) > inbound.PARSE_SLICE
    cut = frame(0x1, b"cut in two")
    writer.write(b"".join(frame(0x1, m) for m in burst) + cut[:4])
    async with asyncio.timeout(5):
        while len(live[0]) < count:
            await asyncio.sleep(0.01)
    assert live[0] == [m.decode() for m in burst]
    assert conn.resting
    kept = conn._unparsed  # the frame begun, in a buffer of its own (not the burst's)
    assert bytes(kept or b"") == cut[:4] and sys.getsizeof(kept) < 1024
    await asyncio.sleep(0.05)
    writer.write(cut[4:])
    async with asyncio.timeout(3):
        while len(live[0]) < count + 1:
            await asyncio.sleep(0.01)
    assert live[0][-1] == "cut in two" and conn.resting
    ping = frame(0x9, b"ping")
    writer.write(ping[:3])  # not the fast path's shape: websockets gets it, and the rest
    await asyncio.sleep(0.05)
    writer.write(ping[3:])
    async with asyncio.timeout(3):
        assert await reader.readexactly(6) == b"\x8a\x04ping"
    assert not conn.resting
    writer.close()


async def test_the_rest_of_a_kept_frame_is_never_taken_for_a_pong(serve: Any) -> None:
    # A resting connection keeps the first 6 bytes of a binary frame; the next read,
    # its payload, is exactly what a lone masked PONG looks like (frames.lone_pong).
    _, live, _, _, writer, conn = await resting_client(serve)
    key = b"\x01\x02\x03\x04"
    wire = b"\x8a\x80abcd"  # a masked empty PONG, as bytes on the wire
    writer.write(b"\x82\x86" + key)
    await asyncio.sleep(0.05)
    writer.write(wire)
    async with asyncio.timeout(3):
        while not live[0]:
            await asyncio.sleep(0.01)
    assert live[0] == [bytes(b ^ key[i % 4] for i, b in enumerate(wire))]
    assert conn.resting
    writer.close()


async def test_publishes_and_centrifuge_pings_leave_a_connection_resting(serve: Any) -> None:
    # Without permessage-deflate (a client that does not offer it, or compression off):
    # a publish and its ack, and Centrifuge's application-level ping ({} each way), need
    # no frame protocol (with deflate too: tests/app/test_fast_deflate.py).
    srv = await serve(idle_app(compression="off"))
    async with connect(srv.ws + "/ws/chat", subprotocols=V1) as pub, \
            connect(srv.ws + "/connection/websocket") as cf:
        await cf.send(json.dumps({"id": 1, "connect": {}}))
        assert "connect" in json.loads(await asyncio.wait_for(cf.recv(), 3))
        await all_rest(srv)
        await pub.send(json.dumps({"action": "publish", "topic": "t", "data": 1, "id": 2}))
        await ack(pub, 2)
        await cf.send("{}")
        await asyncio.sleep(0.05)
        assert all(c.resting for c in conns(srv)) and not srv.server.state.awake
