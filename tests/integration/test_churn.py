"""5 000 connect-subscribe-abrupt-disconnect cycles leave nothing behind."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import socket
import struct
from typing import Any

import psutil

from pubsocket import App, pubsub
from tests.conftest import make_settings

CYCLES = 5_000
BATCH = 250


def _frame(action: str, topic: str) -> bytes:
    payload = json.dumps({"action": action, "topic": topic, "data": 1}).encode()
    mask = os.urandom(4)
    return (bytes([0x81, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


async def _cycle(port: int, topic: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode()
                 + _frame("subscribe", topic) + _frame("publish", topic))
    await reader.readuntil(b"\r\n\r\n")
    assert await reader.readexactly(3) == b"\x81\x011"  # subscribed: its own publish came back
    sock = writer.get_extra_info("socket")
    # SO_LINGER 0: close() sends a TCP reset, no close frame, no FIN handshake.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_abrupt_disconnects_release_everything(serve: Any) -> None:
    app = App(make_settings(rate_limit=0, publish_byte_rate=0))
    pubsub("/ws/chat", app=app)
    srv = await serve(app)
    me = psutil.Process()
    state = srv.server.state
    assert state is not None

    async def settle() -> None:
        async with asyncio.timeout(20):
            while state.websockets or app.hub.topic_count or len(state.tasks) > 0:
                await asyncio.sleep(0.02)

    # warm up allocator pools and caches before taking the baseline
    await asyncio.gather(*(_cycle(srv.port, f"t{i % 50}") for i in range(BATCH)))
    await settle()
    gc.collect()
    fds, rss = me.num_fds(), me.memory_info().rss
    for start in range(0, CYCLES, BATCH):
        await asyncio.gather(*(_cycle(srv.port, f"t{(start + i) % 50}") for i in range(BATCH)))
    await settle()
    gc.collect()
    assert app.hub.topic_count == 0 and app.hub.subscription_count == 0
    assert not state.websockets
    assert state.stats.ws_opened == state.stats.ws_closed == CYCLES + BATCH
    assert me.num_fds() <= fds + 5
    assert me.memory_info().rss - rss < 20 * 1024 * 1024
