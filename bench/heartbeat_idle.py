"""Idle memory per pubsocket.v1 connection with and without the heartbeat (issue 19).

A fresh ``pubsocket serve examples/chat`` subprocess per mode (tests/attack/harness.py),
`--conns` raw websockets clients that each subscribe to one topic and then sit idle;
in mode ``asked`` each also sends ``{"action":"heartbeat"}`` (what the Python client
and pubsocket.js do), in ``off`` the server runs with ``PUBSOCKET_HEARTBEAT=0``.
Prints the server's RSS growth per connection for each mode, and the pings counted on
one connection over `--watch` seconds with a 1 s interval.

    PYTHONPATH=src python -m bench.heartbeat_idle --conns 2000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json

from tests.attack.harness import attack_server, token
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

V1 = [Subprotocol("pubsocket.v1")]


async def _open(url: str, tok: str, i: int, ask: bool) -> ClientConnection:
    ws = await connect(url, subprotocols=V1, open_timeout=30,
                       additional_headers={"Authorization": f"Bearer {tok}"})
    if ask:
        await ws.send('{"action":"heartbeat","id":0}')
    await ws.send(json.dumps({"action": "subscribe", "topic": f"chat:idle-{i % 200}",
                              "id": 1}))
    return ws


async def measure(mode: str, conns: int) -> float:
    env = {"PUBSOCKET_HEARTBEAT": "0" if mode == "off" else "25",
           "PUBSOCKET_PING_INTERVAL": "0", "PUBSOCKET_RATE_LIMIT": "0",
           "PUBSOCKET_AUTH_FAILURE_LIMIT": "0"}
    async with attack_server(**env) as server:
        url = server.ws + "/ws/chat"
        tok = token("idle", topics={"subscribe": ["chat:*"]})
        await asyncio.sleep(0.5)
        before = server.rss()
        sockets: list[ClientConnection] = []
        for first in range(0, conns, 100):  # 100 handshakes at a time
            sockets += await asyncio.gather(*(
                _open(url, tok, i, mode == "asked")
                for i in range(first, min(conns, first + 100))))
        await asyncio.sleep(2.0)
        gc.collect()
        after = server.rss()
        await asyncio.gather(*(ws.close() for ws in sockets))
    return (after - before) / conns


async def count_pings(seconds: float) -> tuple[int, int]:
    async with attack_server(PUBSOCKET_HEARTBEAT="1") as server:
        tok = token("idle")
        async with connect(server.ws + "/ws/chat", subprotocols=V1,
                           additional_headers={"Authorization": f"Bearer {tok}"}) as ws:
            for i in range(50):  # asking 50 times must not make more pings
                await ws.send(json.dumps({"action": "heartbeat", "id": i}))
            pings = acks = 0
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while (left := end - loop.time()) > 0:
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), left))
                except TimeoutError:
                    break
                pings += frame.get("type") == "ping"
                acks += frame.get("type") == "ack"
            return pings, acks


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--watch", type=float, default=5.0)
    args = ap.parse_args()
    for mode in ("off", "unasked", "asked"):
        per = await measure(mode, args.conns)
        print(f"{mode:8s} {args.conns} idle v1 connections: {per:8.0f} B RSS per connection")
    pings, acks = await count_pings(args.watch)
    print(f"interval 1 s, asked 50 times: {pings} pings in {args.watch:.0f} s ({acks} acks)")


if __name__ == "__main__":
    asyncio.run(main())
