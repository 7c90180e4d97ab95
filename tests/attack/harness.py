"""The attack suite's measuring stick (issue 15): a real server, a bystander, the RSS.

Every attack test runs the same way:

1. `attack_server(...)` starts ``pubsocket serve examples/chat`` (what ``make run``
   serves: ``/ws/chat`` secured, ``/connection/websocket``, the demo token route, the
   HTTP API) in a subprocess on a free port, with the memory broker or a real Redis.
2. `measure(server, attack, seconds=...)` takes the server's baseline RSS, starts a
   **bystander** (a ``pubsocket.v1`` client, in a process of its own
   (`tests.attack.bystander`), on its own topic, that publishes every
   `INTERVAL` seconds and times publish -> its own delivery) and an **RSS sampler**,
   runs the attack coroutine for at most `seconds`, then stops everything and returns a
   `Report`: the bystander's latencies and losses, and the server's RSS growth.
3. `report.check()` asserts the bounds the issue sets: bystander p99 under
   `P99_LIMIT`, nothing lost, RSS growth under `RSS_LIMIT`.

Everything is bounded in count and time; traffic goes to 127.0.0.1 only. The server
and the bystander are separate processes, so the latency measured is the server's,
not the test loop's (where the attack's client side runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

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
    """A well-behaved ``pubsocket.v1`` client in a process of its own
    (`tests.attack.bystander`): publishes a sequence number to its own topic every
    `INTERVAL` seconds and records publish -> delivery times. Its own process, so the
    attack's client-side work in the test's loop is not counted as the server's delay."""

    def __init__(self, server: Server, topic: str = "room:bystander") -> None:
        self.server = server
        self.topic = topic
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Connected, subscribed and delivering (bounded), not yet publishing."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.attack.bystander", f"{self.server.ws}/ws/chat",
            token("bystander"), self.topic, str(INTERVAL), cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        try:
            assert await self._line(15) == "ready"
        except BaseException:
            await self.close()
            raise

    async def _line(self, within: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(within):
            return (await self.proc.stdout.readline()).decode().strip()

    def _say(self, word: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{word}\n".encode())

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop`."""
        self._say("go")
        await stop.wait()
        self._say("stop")

    async def finish(self, report: Report) -> None:
        """The samples, once the last deliveries came (5 s at most: a missing one is
        lost)."""
        result = json.loads(await self._line(15))
        report.sent = int(result["sent"])
        report.latencies = [float(x) for x in result["latencies"]]
        report.lost = report.sent - len(report.latencies)
        await self.close()

    async def close(self) -> None:
        """End the process (bounded) and release its pipes."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


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
    try:
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
    finally:
        await bystander.close()  # also when the attack or the bystander failed
    await asyncio.sleep(settle)
    report.rss_after = server.rss()
    return report


def env_for_redis(url: str, prefix: str | None = None) -> dict[str, str]:
    """Environment for an attack server on a real Redis (a unique key prefix)."""
    pre = prefix or f"atk{os.getpid()}x{time.monotonic_ns() % 1_000_000}:"
    sep = "&" if "?" in url else "?"
    return {"PUBSOCKET_BROKER": f"{url}{sep}prefix={pre}"}
