"""Attack: hostile Centrifuge Protobuf frames on ``make run``'s server (issue 16).

The binary twin of test_frames.py's batch-frame attack: sockets that ask for Protobuf
send ~1 MB binary frames of empty commands (each one byte, so a million commands),
frames of nested ``FilterNode`` messages (the decoder's recursion), and garbage, for as
long as the attack runs, reconnecting when closed. Counting walks at most 1024 length
prefixes, so each frame is refused (3501) for the cost of that walk; the bystander's
p99 and losses stay within the harness's bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from pubsocket.protocols.centrifuge.protobuf_parse import varint
from tests.attack.harness import Server, attack_server, measure, token

from pubsocket.protocols.centrifuge._pb import pubsocket_centrifuge_pb2 as pb  # isort: skip

PATH = "/connection/websocket"
EMPTIES = b"\x00" * 1_000_000  # a million empty commands, under the 1 MiB frame limit


def _framed(cmd: pb.Command) -> bytes:
    body = cmd.SerializeToString()
    return varint(len(body)) + body


def _field(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + varint(len(body)) + body


def _nested(depth: int) -> bytes:
    """A subscribe whose filter nests `depth` FilterNodes, built by hand (the library
    refuses to build what its decoder would refuse)."""
    node = b""
    for _ in range(depth):
        node = _field(0x32, node)  # FilterNode.nodes (field 6)
    request = _field(0x0A, b"c") + _field(0x6A, node)  # channel (1), tf (13)
    body = b"\x08\x02" + _field(0x2A, request)  # id (1) = 2, subscribe (5)
    return varint(len(body)) + body


FRAMES = [EMPTIES, _nested(500), b"\xff" * 64 + b"garbage" * 1000]


async def _stopped(stop: asyncio.Event, within: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), within)
    return stop.is_set()


async def hostile_binary(server: Server, stop: asyncio.Event) -> str:
    closes: Counter[int | None] = Counter()
    frames = 0
    connect_cmd = _framed(pb.Command(id=1, connect=pb.ConnectRequest(token=token())))

    async def one(n: int) -> None:
        nonlocal frames
        for i in range(1000):  # connections, bounded
            if stop.is_set():
                return
            try:
                async with connect(server.ws + PATH, subprotocols=["centrifuge-protobuf"],
                                   max_size=None, open_timeout=5, close_timeout=1) as ws:
                    await ws.send(connect_cmd)
                    await asyncio.wait_for(ws.recv(), 5)
                    await ws.send(FRAMES[(n + i) % len(FRAMES)])
                    frames += 1
                    await asyncio.wait_for(ws.recv(), 5)  # until the close
            except ConnectionClosed as exc:
                closes[exc.rcvd.code if exc.rcvd else None] += 1
            except (OSError, InvalidHandshake, TimeoutError):
                closes[-1] += 1
            if await _stopped(stop, 0.02):
                return

    await asyncio.gather(*(one(n) for n in range(4)))
    return f"{frames} hostile binary frames sent; closes by code {dict(closes)}"


async def test_hostile_protobuf_frames_are_refused_cheaply() -> None:
    async with attack_server() as server:
        report = await measure(server, hostile_binary, name="protobuf: hostile frames",
                               seconds=6)
    report.check()
    note = report.notes[0]
    assert "3501" in note and "-1" not in note, note  # every one refused with 3501
