"""Attack: deflate bombs and half-sent compressed messages (issue 16, permessage-deflate).

A permessage-deflate frame of ~64 KiB inflates to 64 MiB of zeros. The server inflates
with ``decompress(data, max_length)`` bounded by what the message size limit leaves
(1 MiB after connect, 16 KiB before a Centrifuge connect), so each bomb costs at most
the limit in memory and a millisecond of CPU before the close (1009; Centrifuge's
3501). And a compressed message left unfinished holds one decompressor (~40 KiB) until
it ends or the connection does, never more.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import zlib
from collections import Counter

from websockets.frames import Frame, Opcode

from tests.app.test_deflate import deflated
from tests.attack.harness import MiB, Server, attack_server, measure, token
from tests.centrifuge.test_frames import close_code_of

BOMB = deflated(b"\0" * 64 * MiB)  # ~64 KiB on the wire
SOCKETS = 200  # connections each holding a half-sent compressed message


def _half_sent() -> tuple[bytes, bytes]:
    """The first fragment of a compressed text message (4 KiB of hex: its decompressor
    stays live) and the last one, a bomb of 8 MiB of zeros. Made at import: compressing
    8 MiB in the test's loop would stall the bystander, which shares it."""
    c = zlib.compressobj(wbits=-15)
    text = os.urandom(4 * 1024).hex().encode()
    first = Frame(Opcode.TEXT, c.compress(text) + c.flush(zlib.Z_SYNC_FLUSH),
                  fin=False).serialize(mask=True, extensions=[])
    first = bytes([first[0] | 0x40]) + first[1:]  # RSV1: compressed
    last = Frame(Opcode.CONT, (c.compress(b"\0" * 8 * MiB) + c.flush())[:-4]).serialize(
        mask=True, extensions=[])
    return first, last


HALF_SENT = _half_sent()


async def open_deflate(server: Server, path: str) -> tuple[asyncio.StreamReader,
                                                             asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate"
                  f"\r\nAuthorization: Bearer {token()}\r\n\r\n").encode())
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head, head
    return reader, writer


async def bombs(server: Server, stop: asyncio.Event) -> str:
    """Four sockets sending bombs as fast as the closes come back, reconnecting after
    each: two on /ws/chat (authenticated), two on /connection/websocket (no connect)."""
    closes: Counter[int] = Counter()

    async def one(path: str) -> None:
        for _ in range(2000):  # bombs, bounded
            if stop.is_set():
                return
            try:
                reader, writer = await open_deflate(server, path)
                try:
                    writer.write(BOMB)
                    closes[await close_code_of(reader, within=5)] += 1
                finally:
                    writer.close()
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                closes[-1] += 1

    await asyncio.gather(*(one(p) for p in ["/ws/chat", "/connection/websocket"] * 2))
    return f"{sum(closes.values())} bombs; closes by code {dict(closes)}"


async def half_sent(server: Server, stop: asyncio.Event) -> str:
    """`SOCKETS` connections each send the first fragment of a compressed message (its
    decompressor is live) and wait; then they finish it with a bomb fragment."""
    first, last = HALF_SENT
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    closes: Counter[int] = Counter()
    try:
        for _ in range(SOCKETS):
            reader, writer = await open_deflate(server, "/ws/chat")
            writer.write(first)
            conns.append((reader, writer))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 3)
        for _, writer in conns:
            writer.write(last)
        for reader, _ in conns:
            with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
                closes[await close_code_of(reader, within=5)] += 1
    finally:
        for _, writer in conns:
            writer.close()
    return f"{len(conns)} half-sent messages; closes by code {dict(closes)}"


async def test_deflate_bombs_close_1009_within_bounded_memory() -> None:
    async with attack_server() as server:
        report = await measure(server, bombs, name="deflate bombs", seconds=8)
    report.check()
    note = report.notes[0]
    assert "1009" in note and "3501" in note, note  # /ws/chat, Centrifuge pre-connect
    assert "-1" not in note, note  # every bomb was answered with a close


async def test_half_sent_compressed_messages_hold_bounded_memory() -> None:
    async with attack_server() as server:
        report = await measure(server, half_sent, name="half-sent deflate", seconds=8)
    report.check()
    assert f"closes by code {{1009: {SOCKETS}}}" in report.notes[0], report.notes
