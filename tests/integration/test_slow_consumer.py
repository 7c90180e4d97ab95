"""A subscriber that never reads must not slow anyone down or grow server memory."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time

import psutil
from websockets.asyncio.client import connect

from tests.app.test_limits import read_close
from tests.integration.spawn import ROOT, spawn

APP = ROOT / "tests/integration/apps/hub"
MESSAGES = 50_000


async def raw_subscriber(port: int, topic: str) -> tuple[asyncio.StreamReader,
                                                         asyncio.StreamWriter]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up fast
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await reader.readuntil(b"\r\n\r\n")
    payload = json.dumps({"action": "subscribe", "topic": topic}).encode()
    mask = os.urandom(4)
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask
                 + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    await writer.drain()
    return reader, writer


async def good_subscriber(url: str, latencies: list[float], ready: asyncio.Event,
                          name: str, seqs: list[int]) -> list[int]:
    async with connect(url, max_queue=None) as ws:
        await ws.send(json.dumps({"action": "subscribe", "topic": "firehose"}))
        await ws.send(json.dumps({"action": "subscribe", "topic": name}))
        await ws.send(json.dumps({"action": "publish", "topic": name, "data": 0}))
        assert await asyncio.wait_for(ws.recv(), 5) == "0"
        ready.set()
        async with asyncio.timeout(60):
            while len(seqs) < MESSAGES:
                msg = json.loads(await ws.recv())
                seqs.append(msg["s"])
                latencies.append(time.time() - msg["t"])
    return seqs


async def test_never_reading_subscriber_is_closed_4008_and_harms_nobody() -> None:
    with spawn(APP, PUBSOCKET_RATE_LIMIT="0", PUBSOCKET_PUBLISH_BYTE_RATE="0") as proc:
        url = f"ws://127.0.0.1:{proc.port}/ws/chat"
        server = psutil.Process(proc.pid)
        slow_reader, slow_writer = await raw_subscriber(proc.port, "firehose")
        goods: list[asyncio.Task[list[int]]] = []
        # try/finally: a failure must not leave the raw socket and the readers open (an
        # unclosed transport then failed whichever later test collected it).
        try:
            latencies: list[float] = []
            events = [asyncio.Event() for _ in range(3)]
            received: list[list[int]] = [[] for _ in events]
            goods += [asyncio.create_task(good_subscriber(url, latencies, e, f"ping{i}",
                                                          received[i]))
                      for i, e in enumerate(events)]
            for event in events:
                await asyncio.wait_for(event.wait(), 10)
            rss_before = server.memory_info().rss
            peak = rss_before
            async with connect(url) as pub:
                pad = "x" * 60
                for seq in range(MESSAGES):
                    await pub.send(json.dumps({"action": "publish", "topic": "firehose",
                                               "data": {"s": seq, "t": time.time(), "p": pad}}))
                    if seq % 500 == 0:
                        # A window of 1000 in flight: latency then measures the server,
                        # not this test process's own backlog.
                        async with asyncio.timeout(30):
                            while seq - min(len(r) for r in received) > 1000:
                                await asyncio.sleep(0.001)
                    if seq % 5000 == 0:
                        peak = max(peak, server.memory_info().rss)
                results = await asyncio.gather(*goods)
            peak = max(peak, server.memory_info().rss)
            for seqs in results:
                assert seqs == list(range(MESSAGES))  # every message, in order
            latencies.sort()
            p99 = latencies[int(len(latencies) * 0.99)]
            assert p99 < 1.0, f"p99 latency {p99:.3f}s"
            assert peak - rss_before < 40 * 1024 * 1024, f"server grew {peak - rss_before} bytes"
            assert await read_close(slow_reader, within=30) == 4008
        finally:
            slow_writer.close()
            for task in goods:
                task.cancel()
            if goods:
                await asyncio.wait(goods, timeout=5)
