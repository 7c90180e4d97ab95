"""The inbound fast path on permessage-deflate connections (server/fastframes.py
`inflate`, server/inbound.py): compressed whole messages are inflated through the
connection's websockets extension without websockets' parser, and nothing a peer or a
handler can see changes.

Real server on port 0: raw sockets that negotiate deflate send random streams of
compressed, plain, fragmented and control frames, and every way of getting deflate
wrong (bombs, corrupt streams, RSV bits, a context the client may not keep), once with
the fast path and once without; what the handler received and the close codes must be
the same. websockets' client (which offers deflate by default) checks order and
integrity, bursts in one read, control frames in between, bombs next to a bystander.
"""

from __future__ import annotations

import asyncio
import json
import random
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.extensions import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Opcode

from pubsocket.server import fastframes, inbound
from pubsocket.server.deflate import InflateBudget
from tests.app.test_deflate import open_deflate, read_frame
from tests.app.test_fast_frames import (
    LIMIT,
    connection,
    frame,
    good,
    recording_app,
    resting,
    send_stream,
    text,
)
from tests.app.test_idle_rest import V1, ack, all_rest, conns
from tests.app.test_idle_rest import app as idle_app
from tests.app.test_limits import echo_app
from tests.centrifuge.test_frames import close_code_of

STREAMS = 100  # random streams, each sent twice (fast path on and off)
RSV1 = 4  # `frame`'s rsv argument: RSV1, permessage-deflate's "compressed" bit
KiB = 1024


def squeeze(payload: bytes, compressor: Any = None) -> bytes:
    """`payload` deflated as a permessage-deflate message: a fresh compressor unless
    one is given (client_no_context_takeover, which the server always negotiates)."""
    c = compressor if compressor is not None else zlib.compressobj(wbits=-15)
    return bytes((c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH))[:-4])


def zgood(rng: random.Random) -> bytes:
    """A frame or message that leaves a deflate connection open."""
    kind = rng.randrange(8)
    if kind <= 2:  # the fast path's new shape: compressed whole text
        return frame(0x1, squeeze(text(rng, rng.randrange(0, 75))), rsv=RSV1,
                     wide=rng.random() < 0.2)
    if kind == 3:  # random bytes deflate to a little more than themselves
        return frame(0x2, squeeze(rng.randbytes(rng.randrange(0, 200))), rsv=RSV1)
    if kind == 4:  # a compressed fragmented message, a ping between fragments
        whole = squeeze(text(rng, rng.randrange(2, 60)))
        cut = rng.randrange(1, len(whole))
        return (frame(0x1, whole[:cut], fin=False, rsv=RSV1) + frame(0x9, b"p")
                + frame(0x0, whole[cut:]))
    if kind == 5:  # a message inflating to the size limit exactly
        return frame(0x1, squeeze(b"a" * LIMIT), rsv=RSV1)
    return good(rng)  # plain frames (RSV1 clear: uncompressed, RFC 7692 §6) and control


def zlast(rng: random.Random) -> bytes:
    """What ends a stream: a close, or something the server refuses."""
    words = b"the same words again and again " * 5
    shared = zlib.compressobj(wbits=-15)
    options: list[Callable[[], bytes]] = [
        lambda: frame(0x8, (1000).to_bytes(2, "big") + b"bye"),
        lambda: frame(0x1, squeeze(b"x" * (LIMIT + 1)), rsv=RSV1),  # inflates over: 1009
        lambda: frame(0x2, squeeze(b"\0" * 100_000), rsv=RSV1),  # a bomb: 1009
        lambda: frame(0x1, squeeze(rng.randbytes(LIMIT)), rsv=RSV1),  # over on the wire
        lambda: frame(0x1, squeeze(b"ok \xff\xfe"), rsv=RSV1),  # invalid UTF-8 inflated: 1007
        lambda: frame(0x1, b"\xff\xfe\xfd not deflate", rsv=RSV1),  # corrupt: 1002
        lambda: frame(0x1, squeeze(b"rsv"), rsv=rng.choice([1, 2, 5, 6])),  # RSV2/3: 1002
        lambda: frame(0x9, b"p", rsv=RSV1),  # a compressed control frame: 1002
        lambda: frame(0x1, b"plain", fin=False) + frame(0x0, squeeze(b"c"), rsv=RSV1),
        lambda: (frame(0x1, squeeze(b"z" * 20), fin=False, rsv=RSV1)
                 + frame(0x0, squeeze(b"z" * 20), rsv=RSV1)),  # RSV1 on a continuation
        lambda: (frame(0x1, squeeze(b"\0" * 200), fin=False, rsv=RSV1)
                 + frame(0x0, squeeze(b"\0" * 200))),  # fragments over the limit: 1009
        # The client keeps its context although it may not: the second message refers
        # to the first, which the server's fresh decompressor does not have (1002).
        lambda: (frame(0x1, squeeze(words, shared), rsv=RSV1)
                 + frame(0x1, squeeze(words, shared), rsv=RSV1)),
        lambda: frame(0x1, squeeze(b"unmasked"), rsv=RSV1, mask=False),  # 1002
        lambda: frame(0x2, squeeze(b"half a frame"), rsv=RSV1)[:-2],  # completed by junk
    ]
    return rng.choice(options)()


def counting_inflate(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the fast path's inflates (one entry per call: 1 done, 0 raised)."""
    calls: list[int] = []
    real = fastframes.inflate

    def counted(extensions: Sequence[Extension], payload: bytes, opcode: int,
                max_size: int | None) -> bytes:
        calls.append(0)
        out = real(extensions, payload, opcode, max_size)
        calls[-1] = 1
        return out

    monkeypatch.setattr(inbound, "inflate", counted)
    return calls


async def test_random_deflate_streams_are_seen_the_same_with_and_without_the_fast_path(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app, records = recording_app()
    srv = await serve(app)
    rng = random.Random(7692)
    inflated = counting_inflate(monkeypatch)
    carried = 0
    for n in range(STREAMS):
        parts = [zgood(rng) for _ in range(rng.randrange(0, 12))]
        if rng.random() < 0.85:
            parts.append(zlast(rng))
        data = b"".join(parts)
        cuts = sorted(rng.sample(range(1, len(data)),
                                 max(0, min(len(data) - 1, rng.randrange(8)))))
        rest = n % 3 == 0
        with monkeypatch.context() as patch:
            patch.setattr(inbound, "fast_limit", lambda live, parked: -1)
            before = len(inflated)
            slow = await send_stream(srv, records, data, cuts, rest, deflate=True)
            assert len(inflated) == before  # (the fast path was off)
        fast = await send_stream(srv, records, data, cuts, rest, deflate=True)
        assert fast == slow, (n, data, cuts)
        carried += bool(slow[0])
    assert carried > STREAMS // 2  # most streams carried messages
    assert sum(inflated) > STREAMS  # ... most of them compressed, on the fast path
    assert inflated.count(0) > 5  # and refusals were raised there too


async def test_compressed_messages_from_websockets_client_arrive_in_order_and_intact(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    inflated = counting_inflate(monkeypatch)
    srv = await serve(echo_app(max_message_size=256 * KiB))
    rng = random.Random(1)
    sent: list[str | bytes] = []
    for n in range(200):
        size = rng.choice([0, 1, 20, 300, 5000])
        if n % 3:
            sent.append(f"{n:04} " + text(rng, size // 4).decode())
        else:
            sent.append(n.to_bytes(2, "big") + rng.randbytes(size))
    # Over PARSE_SLICE compressed: websockets' parser's (and what shares its reads),
    # then messages that deflate would shrink to nothing with context takeover (each is
    # compressed on its own: client_no_context_takeover)
    sent += [rng.randbytes(70_000) for _ in range(3)] + ["same message, again"] * 20
    async with connect(srv.ws + "/ws/echo", max_size=None) as ws:
        (ext,) = ws.protocol.extensions  # websockets' client offers deflate by default
        assert isinstance(ext, PerMessageDeflate) and ext.local_no_context_takeover
        (server_ext,) = connection(srv)._frames().extensions
        assert isinstance(server_ext, PerMessageDeflate)
        assert server_ext.remote_no_context_takeover  # client_no_context_takeover

        async def send_all() -> None:
            for message in sent:
                await ws.send(message)  # no wait for the echo: reads carry several

        sending = asyncio.create_task(send_all())
        async with asyncio.timeout(20):
            got = [await ws.recv() for _ in sent]
        await sending
    assert got == sent
    assert sum(inflated) >= 200  # the fast path's (a frame TCP cut is kept for it)


async def test_a_burst_in_one_read_and_control_frames_in_between(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    split = fastframes.split_frames
    runs: list[int] = []

    def counting(*args: Any) -> tuple[int, list[tuple[bytes, int]]]:
        end, messages = split(*args)
        runs.append(len(messages))
        return end, messages

    monkeypatch.setattr(inbound, "split_frames", counting)
    live: list[list[str | bytes]] = []
    app, _ = recording_app(live)
    srv = await serve(app)
    reader, writer, _ = await open_deflate(srv.port, "/ws/record")
    conn = await resting(srv)
    burst = [f"message {n:03} ".encode() * (1 + n % 9) for n in range(40)]
    writer.write(b"".join(frame(0x1, squeeze(m), rsv=RSV1) for m in burst))
    async with asyncio.timeout(3):
        while len(live[0]) < len(burst):
            await asyncio.sleep(0.01)
    assert live[0] == [m.decode() for m in burst]
    assert max(runs) > 10  # many compressed messages split from one read
    assert conn.resting  # inflated without rebuilding websockets' protocol
    ext = conn._parked.extensions[0] if conn._parked is not None else None
    assert isinstance(ext, PerMessageDeflate) and not hasattr(ext, "decoder")  # freed
    # A ping and a pong between compressed and plain messages, in one read
    writer.write(frame(0x1, squeeze(b"before ping"), rsv=RSV1) + frame(0x9, b"hey")
                 + frame(0x2, squeeze(b"\x00after"), rsv=RSV1) + frame(0xA, b"pong")
                 + frame(0x1, b"plain") + frame(0x1, squeeze("é€😀".encode()), rsv=RSV1))
    assert await read_frame(reader) == (Opcode.PONG, False, b"hey")
    async with asyncio.timeout(3):
        while len(live[0]) < len(burst) + 4:
            await asyncio.sleep(0.01)
    assert live[0][len(burst):] == ["before ping", b"\x00after", "plain", "é€😀"]
    writer.close()


async def test_a_10_mb_bomb_closes_1009_and_a_bystander_carries_on(
        serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    charged: list[int] = []
    charge = InflateBudget.charge

    def recording(self: InflateBudget, size: int) -> None:
        charged.append(size)
        charge(self, size)

    monkeypatch.setattr(InflateBudget, "charge", recording)
    inflated = counting_inflate(monkeypatch)
    srv = await serve(echo_app(max_message_size=64 * KiB))
    bomb = frame(0x2, squeeze(b"\0" * 10 * 1024 * KiB), rsv=RSV1)
    assert len(bomb) < min(inbound.PARSE_SLICE, 64 * KiB)  # the fast path's, whole
    async with connect(srv.ws + "/ws/echo") as bystander:
        await bystander.send("before")
        assert await asyncio.wait_for(bystander.recv(), 3) == "before"
        reader, writer, _ = await open_deflate(srv.port, "/ws/echo")
        writer.write(frame(0x1, squeeze(b"fine"), rsv=RSV1))
        assert await read_frame(reader) == (Opcode.TEXT, False, b"fine")
        charged.clear()
        writer.write(bomb)
        assert await close_code_of(reader, within=5) == 1009
        writer.close()
        assert inflated[-2:] == [1, 0]  # "fine", then the bomb: refused on the fast path
        assert 64 * KiB in charged  # charged up to the limit, as websockets' path does
        for n in range(5):
            await bystander.send(f"after {n}")
            assert await asyncio.wait_for(bystander.recv(), 3) == f"after {n}"


async def test_invalid_utf8_once_inflated_closes_1007(serve: Any) -> None:
    live: list[list[str | bytes]] = []
    app, records = recording_app(live)
    srv = await serve(app)
    reader, writer, _ = await open_deflate(srv.port, "/ws/record")
    await resting(srv)
    writer.write(frame(0x1, squeeze(b"ok"), rsv=RSV1)
                 + frame(0x1, squeeze(b"\xc3\x28 broken"), rsv=RSV1))
    assert await close_code_of(reader, within=5) == 1007
    async with asyncio.timeout(3):
        while not records:
            await asyncio.sleep(0.01)
    assert records == [(["ok"], 1007)]
    writer.close()


async def test_compressed_publishes_leave_a_connection_resting(serve: Any) -> None:
    # Browsers and websockets' client offer deflate: their publishes and Centrifuge's
    # application-level pings ({} each way) need no frame protocol either.
    srv = await serve(idle_app(compression="deflate"))
    async with connect(srv.ws + "/ws/chat", subprotocols=V1) as pub, \
            connect(srv.ws + "/connection/websocket") as cf:
        assert pub.protocol.extensions and cf.protocol.extensions
        await cf.send(json.dumps({"id": 1, "connect": {}}))
        assert "connect" in json.loads(await asyncio.wait_for(cf.recv(), 3))
        await all_rest(srv)
        for n in range(3):
            await pub.send(json.dumps({"action": "publish", "topic": "t", "data": "x" * 300,
                                       "id": 2 + n}))
            await ack(pub, 2 + n)
        await cf.send("{}")
        await asyncio.sleep(0.05)
        assert all(c.resting for c in conns(srv)) and not srv.server.state.awake
