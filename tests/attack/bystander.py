"""The attack harness's bystander, in a process of its own (`tests.attack.harness`).

``python -m tests.attack.bystander WS_URL TOKEN TOPIC INTERVAL``: connect to ``/ws/chat``
as ``pubsocket.v1`` with TOKEN, subscribe to TOPIC, publish until a delivery comes back,
then print ``ready``. On a ``go`` line on stdin, publish a sequence number to TOPIC
every INTERVAL seconds and time publish -> own delivery; on ``stop`` (or EOF), wait at
most 5 s for the last deliveries and print one JSON line ``{"sent": n, "latencies":
[seconds, ...]}`` (a publish without a delivery is lost), then exit.

Why a process: in the test's own event loop the bystander's times also counted the
attack's client-side work (hundreds of sockets opened, megabytes framed and masked in
that same loop), so on a loaded 2-core CI box its p99 crossed 50 ms with the server
doing nothing wrong. Here only the server's delay, and the box's, is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

LIMIT = 20_000  # samples, at most
READY_WITHIN = 10.0  # seconds: connected, subscribed and delivering
FINISH_WITHIN = 5.0  # seconds for the last deliveries after `stop`
RUN_AT_MOST = 600.0  # seconds between `go` and `stop`


class Timer:
    """Publishes to one topic and records when each sequence number came back."""

    def __init__(self, ws: ClientConnection, topic: str) -> None:
        self.ws = ws
        self.topic = topic
        self.sent: dict[int, float] = {}
        self.received: dict[int, float] = {}

    async def publish(self, seq: int) -> None:
        self.sent[seq] = time.perf_counter()
        await self.ws.send(json.dumps({"action": "publish", "topic": self.topic,
                                       "data": {"seq": seq}}))

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                msg = json.loads(raw)
                data = msg.get("data") if isinstance(msg, dict) else None
                if (isinstance(msg, dict) and msg.get("topic") == self.topic
                        and isinstance(data, dict) and "seq" in data):
                    self.received.setdefault(int(data["seq"]), time.perf_counter())

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Publish every `interval` seconds until `stop` (at most `LIMIT` samples)."""
        seq, next_at = 0, time.perf_counter()
        while not stop.is_set() and seq < LIMIT:
            seq += 1
            await self.publish(seq)
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.perf_counter()))

    async def finish(self) -> dict[str, object]:
        deadline = time.perf_counter() + FINISH_WITHIN
        while not set(self.sent) <= set(self.received) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        return {"sent": len(self.sent),
                "latencies": [self.received[s] - t for s, t in self.sent.items()
                              if s in self.received]}


async def line() -> str:
    """The next stdin line ("" at EOF), read off the loop so publishing goes on."""
    read: str = await asyncio.to_thread(sys.stdin.readline)
    return read.strip()


async def main(url: str, token: str, topic: str, interval: float) -> None:
    async with connect(url, subprotocols=[Subprotocol("pubsocket.v1")],
                       additional_headers={"Authorization": f"Bearer {token}"},
                       max_queue=None, open_timeout=READY_WITHIN) as ws:
        timer = Timer(ws, topic)
        reader = asyncio.create_task(timer.read())
        await ws.send(json.dumps({"action": "subscribe", "topic": topic, "id": 1}))
        async with asyncio.timeout(READY_WITHIN):  # own subscription in and delivering
            while 0 not in timer.received:
                await timer.publish(0)
                await asyncio.sleep(0.02)
        timer.sent.clear()
        timer.received.clear()
        print("ready", flush=True)
        if await line() != "go":
            return
        stop = asyncio.Event()
        running = asyncio.create_task(timer.run(stop, interval))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(line(), RUN_AT_MOST)  # "stop", or EOF
        stop.set()
        await running
        print(json.dumps(await timer.finish()), flush=True)
        reader.cancel()
        await asyncio.wait([reader])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
