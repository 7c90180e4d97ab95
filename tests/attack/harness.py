"""The attack suite's measuring stick (issue 15): a real server, a bystander, the RSS.

Every attack test runs the same way:

1. `attack_server(...)` starts ``pubsocket serve examples/chat`` (what ``make run``
   serves: ``/ws/chat`` secured, ``/connection/websocket``, the demo token route, the
   HTTP API) in a subprocess on a free port, with the memory broker or a real Redis.
2. `measure(server, attack, seconds=...)` takes the server's baseline RSS, starts a
   **bystander** (a ``pubsocket.v1`` client on its own topic that publishes every
   `INTERVAL` seconds and times publish -> its own delivery) and an **RSS sampler**,
   runs the attack coroutine for at most `seconds`, then stops everything and returns a
   `Report`: the bystander's latencies and losses, and the server's RSS growth.
3. `report.check()` asserts the bounds the issue sets: bystander p99 under
   `P99_LIMIT`, nothing lost, RSS growth under `RSS_LIMIT`.

Everything is bounded in count and time; traffic goes to 127.0.0.1 only. The server
is a separate process so the latency measured is the server's, not the test loop's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from websockets.asyncio.client import ClientConnection, connect

from pubsocket.auth import Authenticator
from tests.conftest import API_KEY, SECRET
from tests.integration.spawn import ROOT, Proc, spawn

MiB = 1024 * 1024
P99_LIMIT = 0.050  # seconds: a bystander's publish -> own delivery, 99th percentile
RSS_LIMIT = 100 * MiB  # server RSS growth while an attack runs
INTERVAL = 0.02  # seconds between two bystander publishes (50/s: under the rate limit)
CHAT = ROOT / "examples" / "chat"


def token(sub: str = "attacker", ttl: int = 3600, **claims: object) -> str:
    """A valid token for the test servers' SECRET (an ordinary user's, by default the
    demo's ``room:*`` limits are not applied: pass ``topics=...`` for those)."""
    auth = Authenticator(API_KEY, SECRET)
    return auth.issue(sub=sub, ttl=ttl, claims=dict(claims) or None)


@dataclass
class Server:
    """A running attack target: its port and process."""

    proc: Proc

    @property
    def port(self) -> int:
        return self.proc.port

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)


@contextlib.asynccontextmanager
async def attack_server(app_dir: str | Path = CHAT, **env: str) -> AsyncIterator[Server]:
    """``pubsocket serve app_dir`` in a subprocess (extra settings as environment
    variables, e.g. ``PUBSOCKET_BROKER=redis://...``)."""
    with spawn(app_dir, **env) as proc:
        yield Server(proc)


@dataclass
class Report:
    """What one attack run measured."""

    name: str
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    lost: int = 0
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    notes: list[str] = field(default_factory=list)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    @property
    def growth(self) -> int:
        return self.rss_peak - self.rss_before

    def describe(self) -> str:
        ms = 1000
        lat = self.latencies
        return (f"[{self.name}] bystander: {len(lat)}/{self.sent} delivered, lost "
                f"{self.lost}; ms p50 {self.quantile(0.5) * ms:.1f} p99 "
                f"{self.quantile(0.99) * ms:.1f} max {max(lat, default=0) * ms:.1f} mean "
                f"{(statistics.fmean(lat) if lat else 0) * ms:.1f}; server RSS "
                f"{self.rss_before / MiB:.0f} MiB -> peak {self.rss_peak / MiB:.0f} MiB "
                f"(+{self.growth / MiB:.1f}), after {self.rss_after / MiB:.0f} MiB"
                + (f"; {'; '.join(self.notes)}" if self.notes else ""))

    def check(self, p99: float = P99_LIMIT, rss: int = RSS_LIMIT,
              min_samples: int = 50) -> None:
        """Assert the issue's bounds (and that the bystander really ran)."""
        summary = self.describe()
        print(summary)
        assert len(self.latencies) >= min_samples, f"too few samples: {summary}"
        assert self.lost == 0, f"the bystander lost messages: {summary}"
        assert self.quantile(0.99) < p99, f"bystander p99 over {p99 * 1000:.0f} ms: {summary}"
        assert self.growth < rss, f"server RSS grew {self.growth / MiB:.0f} MiB: {summary}"


class Bystander:
    """A well-behaved ``pubsocket.v1`` client: publishes a sequence number to its own
    topic every `INTERVAL` seconds and records publish -> delivery times."""

    def __init__(self, server: Server, topic: str = "room:bystander") -> None:
        self.server = server
        self.topic = topic
        self.sent: dict[int, float] = {}
        self.received: dict[int, float] = {}
        self.ws: ClientConnection | None = None

    async def start(self) -> None:
        self.ws = await connect(
            f"{self.server.ws}/ws/chat", subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {token('bystander')}"},
            max_queue=None, open_timeout=10)
        await self.ws.send(json.dumps({"action": "subscribe", "topic": self.topic, "id": 1}))
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(10):  # own subscription in and delivering
            while 0 not in self.received:
                await self._publish(0)
                await asyncio.sleep(0.02)
        self.sent.clear()
        self.received.clear()

    async def _publish(self, seq: int) -> None:
        assert self.ws is not None
        self.sent[seq] = time.perf_counter()
        await self.ws.send(json.dumps({"action": "publish", "topic": self.topic,
                                       "data": {"seq": seq}}))

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                msg = json.loads(raw)
                data = msg.get("data") if isinstance(msg, dict) else None
                if (isinstance(msg, dict) and msg.get("topic") == self.topic
                        and isinstance(data, dict) and "seq" in data):
                    self.received.setdefault(int(data["seq"]), time.perf_counter())

    async def run(self, stop: asyncio.Event, limit: int = 20_000) -> None:
        """Publish until `stop` (at most `limit` samples)."""
        seq, next_at = 0, time.perf_counter()
        while not stop.is_set() and seq < limit:
            seq += 1
            await self._publish(seq)
            next_at += INTERVAL
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    async def finish(self, report: Report) -> None:
        deadline = time.perf_counter() + 5  # the last deliveries (a missing one is lost)
        while not set(self.sent) <= set(self.received) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        report.sent = len(self.sent)
        report.latencies = [self.received[s] - t for s, t in self.sent.items()
                            if s in self.received]
        report.lost = report.sent - len(report.latencies)
        self._reader.cancel()
        await asyncio.wait([self._reader])
        if self.ws is not None:
            await self.ws.close()


async def _sample_rss(server: Server, report: Report, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(psutil.Error):
            report.rss_peak = max(report.rss_peak, server.rss())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


Attack = Callable[[Server, asyncio.Event], Awaitable[object]]


async def measure(server: Server, attack: Attack, *, name: str, seconds: float = 10.0,
                  settle: float = 0.5) -> Report:
    """Run `attack(server, stop)` for at most `seconds` (it should return when `stop` is
    set; it is cancelled 5 s later if it has not) while a bystander publishes and the
    server's RSS is sampled. The attack may append notes to ``report.notes`` through
    its return value (a string)."""
    report = Report(name)
    bystander = Bystander(server)
    await bystander.start()
    await asyncio.sleep(settle)
    report.rss_before = report.rss_peak = server.rss()
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(server, report, stop))
    sampling = asyncio.create_task(bystander.run(stop))
    attacking = asyncio.ensure_future(attack(server, stop))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(attacking), seconds)
    finally:
        stop.set()
        try:
            note = await asyncio.wait_for(attacking, 5)
            if isinstance(note, str):
                report.notes.append(note)
        except TimeoutError:
            report.notes.append("attack cancelled after its deadline")
        await sampling
        await bystander.finish(report)
        await sampler
    await asyncio.sleep(settle)
    report.rss_after = server.rss()
    return report


def env_for_redis(url: str, prefix: str | None = None) -> dict[str, str]:
    """Environment for an attack server on a real Redis (a unique key prefix)."""
    pre = prefix or f"atk{os.getpid()}x{time.monotonic_ns() % 1_000_000}:"
    sep = "&" if "?" in url else "?"
    return {"PUBSOCKET_BROKER": f"{url}{sep}prefix={pre}"}
