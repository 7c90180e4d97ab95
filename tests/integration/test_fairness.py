"""Fairness under abuse (issue 9): one connection's burst must not stall the others.

An abuser writes 60,000 publish frames to a topic with 10 subscribers as fast as one
socket takes them (rate limit off), while a bystander publishes to its own topic every
2.5 ms and times publish -> own delivery. The server bounds the frames it handles per
connection and loop iteration (`FRAMES_PER_TICK`) and the bytes it parses
(`PARSE_SLICE`), so the bystander waits for at most one slice of the burst, not for the
whole read.

The test can fail: with both bounds lifted (SERVER's arguments ``10**6 1<<30``) the
bystander's p99 was 537-594 ms in 3 of 3 runs against the 50 ms limit (as shipped:
10-12 ms; with only one bound lifted, either one still bounds the slice: 6-48 ms), by
``measure(10**6, 1 << 30)`` on the 2-core test box (2026-12-06).

The server runs in a subprocess (uvloop, as in production): in the test's own loop the
clients below (20 MB of fan-out to read, the burst to write) would compete with the
server for one thread, and the latency measured would be the test's, not the server's.
The clients here stay cheap: the subscribers count bytes (every delivery has the same
size) instead of parsing frames.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

from pubsocket.server import inbound
from tests.integration.spawn import ROOT

BURST = 60_000  # publish frames the abuser writes at once (long enough for MIN_SAMPLES)
SUBSCRIBERS = 10  # readers of the abuser's topic (the fan-out work of the burst)
INTERVAL = 0.0025  # seconds between two bystander publishes (~170 in a burst here)
MIN_SAMPLES = 100  # bystander samples that must fall inside the burst
P99_LIMIT = 0.050  # seconds, publish -> own delivery, 99th percentile

# App(make_settings(rate_limit=0)) + pubsub("/ws/chat") on a port of its own, in its own
# process. Optional arguments replace FRAMES_PER_TICK and PARSE_SLICE, the two bounds on
# a connection's work per loop iteration (experiments only: the test always runs the
# server as shipped).
SERVER = textwrap.dedent("""
    import sys
    from pubsocket import App, pubsub
    from pubsocket.server import inbound, runner
    from tests.conftest import make_settings

    if len(sys.argv) > 1:
        inbound.FRAMES_PER_TICK = int(sys.argv[1])
    if len(sys.argv) > 2:
        inbound.PARSE_SLICE = int(sys.argv[2])
    app = App(make_settings(rate_limit=0, publish_byte_rate=0))
    pubsub("/ws/chat", app=app)
    runner.run(lambda: app, "127.0.0.1", 0,
               ready=lambda server: print("port", server.port, flush=True))
""")

DATA = "x" * 50  # every burst delivery is the same 54-byte frame: json(DATA), unmasked
DELIVERY = len(json.dumps(DATA)) + 2


def client_frame(message: object) -> bytes:
    """One masked text frame carrying json(message) (payload < 126 bytes)."""
    payload = json.dumps(message, separators=(",", ":")).encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frame(message: object) -> bytes:
    """The unmasked frame the server sends for a plain delivery of `message`."""
    payload = json.dumps(message).encode()
    return bytes([0x81, len(payload)]) + payload


@dataclass
class Result:
    """What one run measured (times from `time.perf_counter`)."""

    latencies: list[float] = field(default_factory=list)  # samples inside the burst
    lost: int = 0  # bystander publishes inside the burst never delivered back
    burst_start: float = 0.0  # the abuser began writing
    first_delivery: float = 0.0  # a subscriber had the burst's first delivery
    first_done: float = 0.0  # a subscriber had the whole burst (all still read till then)
    last_done: float = 0.0
    samples_total: int = 0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def describe(self) -> str:
        lat = self.latencies
        ms = 1000
        return (f"{len(lat)} samples inside the burst (of {self.samples_total}), lost "
                f"{self.lost}; publish->deliver ms: p50 {self.quantile(0.5) * ms:.1f} "
                f"p90 {self.quantile(0.9) * ms:.1f} p99 {self.quantile(0.99) * ms:.1f} "
                f"max {max(lat, default=0) * ms:.1f} mean "
                f"{(statistics.fmean(lat) if lat else 0) * ms:.1f}; burst: first delivery "
                f"after {(self.first_delivery - self.burst_start) * ms:.0f} ms, all in "
                f"{(self.first_done - self.burst_start) * ms:.0f}-"
                f"{(self.last_done - self.burst_start) * ms:.0f} ms")


@contextlib.asynccontextmanager
async def server(frames_per_tick: int | None = None,
                 parse_slice: int | None = None) -> AsyncIterator[int]:
    """The server subprocess (`frames_per_tick`, `parse_slice`: see SERVER); yields its
    port. SIGTERM (then SIGKILL) when done."""
    args = [] if frames_per_tick is None else [str(frames_per_tick)]
    if parse_slice is not None:
        args = [str(frames_per_tick or inbound.FRAMES_PER_TICK), str(parse_slice)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    output: list[bytes] = []
    reading: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(15):
            while not (line := await proc.stdout.readline()).startswith(b"port "):
                if not line:
                    raise RuntimeError(f"server exited: {b''.join(output).decode()}")
                output.append(line)
        port = int(line.split()[1])

        async def keep_reading(stream: asyncio.StreamReader) -> None:
            while line := await stream.readline():  # never let a full pipe block it
                output.append(line)

        reading = asyncio.create_task(keep_reading(proc.stdout))
        yield port
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if reading is not None:
            await asyncio.wait_for(reading, 5)


async def raw_ws(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket on /ws/chat over a bare stream (handshake done, nothing else)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def subscriber(reader: asyncio.StreamReader, synced: asyncio.Event,
                     go: bytes) -> tuple[float, float]:
    """Skip everything up to the `go` delivery, then read the whole burst (counting
    bytes); return when its first and its last byte arrived."""
    buffer = b""
    while go not in buffer:
        chunk = await reader.read(65536)
        assert chunk, "closed before the burst"
        buffer += chunk
        if b'"probe"' in buffer:
            synced.set()
    count = len(buffer) - buffer.index(go) - len(go)
    first = time.perf_counter() if count else 0.0
    while count < BURST * DELIVERY:
        chunk = await reader.read(1 << 18)
        assert chunk, f"closed after {count // DELIVERY} of {BURST} deliveries"
        first = first or time.perf_counter()
        count += len(chunk)
    assert count == BURST * DELIVERY, "unexpected frames on the burst topic"
    return first, time.perf_counter()


async def measure(frames_per_tick: int | None = None,
                  parse_slice: int | None = None) -> Result:
    """One run: server, 10 subscribers, abuser, bystander; what the bystander saw."""
    result = Result()
    async with server(frames_per_tick, parse_slice) as port, \
            connect(f"ws://127.0.0.1:{port}/ws/chat", max_queue=None) as bystander:
        subs = [await raw_ws(port) for _ in range(SUBSCRIBERS)]
        abuser_reader, abuser = await raw_ws(port)
        subscribe = client_frame({"action": "subscribe", "topic": "burst"})
        for _, writer in subs:
            writer.write(subscribe)
        synced = [asyncio.Event() for _ in subs]
        go = server_frame("go")
        readers = [asyncio.create_task(subscriber(reader, event, go))
                   for (reader, _), event in zip(subs, synced, strict=True)]

        # Every subscriber is in once each has seen a probe; then "go" marks the start.
        probe = client_frame({"action": "publish", "topic": "burst", "data": "probe"})
        async with asyncio.timeout(10):
            while not all(event.is_set() for event in synced):
                abuser.write(probe)
                await asyncio.sleep(0.02)
        abuser.write(client_frame({"action": "publish", "topic": "burst", "data": "go"}))

        await bystander.send(json.dumps({"action": "subscribe", "topic": "bystander"}))
        sent: dict[int, float] = {}
        received: dict[int, float] = {}

        async def receive() -> None:
            async for message in bystander:
                received[int(message)] = time.perf_counter()

        receiving = asyncio.create_task(receive())
        async with asyncio.timeout(10):  # the bystander's own subscription is in
            while 0 not in received:
                await bystander.send(json.dumps(
                    {"action": "publish", "topic": "bystander", "data": 0}))
                await asyncio.sleep(0.02)
        stop = asyncio.Event()

        async def sample() -> None:
            seq = 0
            next_at = time.perf_counter()
            while not stop.is_set() and seq < 20_000:  # bounded: 50 s at 2.5 ms
                seq += 1
                sent[seq] = time.perf_counter()
                await bystander.send(json.dumps(
                    {"action": "publish", "topic": "bystander", "data": seq}))
                next_at += INTERVAL
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

        sampling = asyncio.create_task(sample())
        await asyncio.sleep(0.05)  # a few samples before, as a baseline

        frames = client_frame({"action": "publish", "topic": "burst", "data": DATA}) * BURST
        result.burst_start = time.perf_counter()
        abuser.write(frames)  # all at once: the transport sends as fast as the peer reads
        async with asyncio.timeout(20):
            await abuser.drain()
            times = await asyncio.gather(*readers)
        result.first_delivery = min(first for first, _ in times)
        result.first_done = min(done for _, done in times)
        result.last_done = max(done for _, done in times)
        stop.set()
        await sampling
        deadline = time.perf_counter() + 5  # the last replies (a missing one is "lost")
        while not set(sent) <= set(received) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        receiving.cancel()
        await asyncio.wait([receiving])

        result.samples_total = len(sent)
        # Inside the burst: sent once its deliveries flowed and before any subscriber
        # had them all (every subscriber was still receiving).
        inside = [seq for seq, at in sent.items()
                  if result.first_delivery <= at <= result.first_done]
        result.latencies = [received[seq] - sent[seq] for seq in inside if seq in received]
        result.lost = len(inside) - len(result.latencies)
        for _, writer in [*subs, (abuser_reader, abuser)]:
            writer.close()
    return result


async def test_a_burst_of_publishes_does_not_stall_a_bystander() -> None:
    result = await measure()
    summary = result.describe()
    print(summary)
    assert len(result.latencies) >= MIN_SAMPLES, f"the burst was too short: {summary}"
    assert result.lost == 0, summary
    # Unfair, the bystander waits out the whole burst (p99 = 0.93-0.99 of it, above);
    # a loaded box that pauses the server stretches the burst and every sample alike
    # (a 1.27 s burst gave a 0.18 s p99: 0.14 of it), so the bound is the larger of
    # the limit and a quarter of the burst.
    burst = result.first_done - result.first_delivery
    assert result.quantile(0.99) < max(P99_LIMIT, burst / 4), summary
