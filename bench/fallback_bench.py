"""The pubsocket.v1 HTTP fallback vs WebSocket (issue 19), same run (`make bench`).

    PYTHONPATH=src:. python bench/fallback_bench.py [--samples 40] [--rounds 3]
                                                   [--subscribers 1000] [--conns 1000]
                                                   [--only fanout]

* **time to fall back** (Chromium, /pubsocket.js): from ``connect("ws://...")`` to the
  ``connected`` state, through tests/ws_refusing_proxy.py answering the upgrade 403, and
  dropping it; beside it the same page connecting over WebSocket with nothing in the
  way, and a second client on a page that already fell back (the remembered transport).
  A fresh page per sample (the memory is per page); p50 / p99 in ms.
* **fan-out to N subscribers** (default 1000) on one topic: subscribers over
  ``POST /ws/chat?transport=http_stream`` (their subscribe in the opening body) vs
  ``pubsocket.v1`` WebSockets (picows), a WebSocket publisher sending M publications
  back to back; deliveries/s = N x M / (first publish -> last delivery counted).
  Interleaved rounds, a fresh server for each run; medians. Target: http_stream >= 0.5x
  WebSocket.
* **idle RSS per connection**: `--conns` subscribed, idle connections of each kind;
  the server's RSS growth over their count.

The server is ``pubsocket serve examples/chat`` in a subprocess (tests/attack/harness.py),
rate limits, pings and presence off. Writes bench/results/fallback.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import orjson  # noqa: E402
import psutil  # noqa: E402
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect  # noqa: E402
from run import RESULTS, meta, raise_nofile  # noqa: E402
from tests.attack.harness import Server, attack_server, token  # noqa: E402
from tests.ws_refusing_proxy import Mode, ws_refusing_proxy  # noqa: E402

ENV = {"PUBSOCKET_PING_INTERVAL": "0", "PUBSOCKET_RATE_LIMIT": "0",
       "PUBSOCKET_AUTH_FAILURE_LIMIT": "0", "PUBSOCKET_HTTP_RATE_LIMIT": "0",
       "PUBSOCKET_PRESENCE": "", "PUBSOCKET_HEARTBEAT": "0"}
PATH = "/ws/chat"
TOPIC = "bench:fan"
FANOUT_TARGET = 0.5  # http_stream / WebSocket deliveries/s, at least
PAYLOAD = {"text": "x" * 80}


# -- subscribers ------------------------------------------------------------------------

class Counter:
    """Deliveries counted by every subscriber of a run (one event loop)."""

    def __init__(self) -> None:
        self.total = 0
        self.target = 1 << 62
        self.done = asyncio.Event()

    def add(self, n: int) -> None:
        self.total += n
        if self.total >= self.target:
            self.done.set()


class StreamSub(asyncio.Protocol):
    """An http_stream subscriber: counts lines after its first two (the transport line
    and the subscribe ack)."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.head = b""
        self.body = False
        self.lines = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.body:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(ConnectionError(head.decode("latin-1")))
                return
            self.body = True
        n = data.count(b"\n")
        if self.lines >= 2:
            self.counter.add(n)
        else:
            self.lines += n
            if self.lines >= 2:
                if not self.ready.done():
                    self.ready.set_result(None)
                self.counter.add(self.lines - 2)
                self.lines = 2

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("stream closed"))


class WsSub(WSListener):
    """A pubsocket.v1 WebSocket subscriber: counts frames after the subscribe ack."""

    def __init__(self, counter: Counter) -> None:
        super().__init__()
        self.counter = counter
        self.acked = False
        self.ready = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, orjson.dumps(
            {"action": "subscribe", "topic": TOPIC, "id": 1}))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            return
        if self.acked:
            self.counter.add(1)
        else:
            self.acked = True
            self.ready.set_result(None)


async def open_stream(server: Server, tok: str, counter: Counter) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    transport, sub = await loop.create_connection(lambda: StreamSub(counter),
                                                  "127.0.0.1", server.port)
    body = orjson.dumps([{"action": "subscribe", "topic": TOPIC, "id": 1}])
    transport.write(
        f"POST {PATH}?transport=http_stream HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {tok}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await asyncio.wait_for(sub.ready, 30)
    return transport.close


async def open_ws(server: Server, tok: str, counter: Counter) -> Callable[[], None]:
    transport, sub = await ws_connect(
        lambda: WsSub(counter), server.ws + PATH, websocket_handshake_timeout=30,
        extra_headers={"Authorization": f"Bearer {tok}",
                       "Sec-WebSocket-Protocol": "pubsocket.v1"})
    assert isinstance(sub, WsSub)
    await asyncio.wait_for(sub.ready, 30)
    return transport.disconnect


Opener = Callable[[Server, str, Counter], Awaitable[Callable[[], None]]]
OPENERS: dict[str, Opener] = {"websocket": open_ws, "http_stream": open_stream}


async def open_many(opener: Opener, server: Server, tok: str, counter: Counter,
                    n: int) -> list[Callable[[], None]]:
    closers: list[Callable[[], None]] = []
    for first in range(0, n, 50):  # 50 handshakes in flight at most
        closers += await asyncio.gather(*(opener(server, tok, counter)
                                          for _ in range(first, min(n, first + 50))))
    return closers


# -- fan-out and idle memory ------------------------------------------------------------

def cpu_seconds(server: Server) -> float:
    times = psutil.Process(server.proc.pid).cpu_times()
    return float(times.user + times.system)


def chat_server() -> AbstractAsyncContextManager[Server]:
    """The server of a fan-out run: examples/chat with `ENV`."""
    return attack_server(**ENV)


async def fanout(mode: str, subscribers: int, messages: int,
                 start: Callable[[], AbstractAsyncContextManager[Server]] = chat_server,
                 ) -> tuple[float, float]:
    """(deliveries/s, server CPU µs per delivery) of `messages` publications to
    `subscribers` subscribers."""
    async with start() as server:
        tok = token("bench")
        counter = Counter()
        closers = await open_many(OPENERS[mode], server, tok, counter, subscribers)
        from websockets.asyncio.client import connect
        from websockets.typing import Subprotocol
        async with connect(server.ws + PATH, subprotocols=[Subprotocol("pubsocket.v1")],
                           additional_headers={"Authorization": f"Bearer {tok}"}) as pub:
            async def burst(count: int) -> float:
                counter.done.clear()
                counter.target = counter.total + count * subscribers
                start = time.perf_counter()
                for i in range(count):
                    await pub.send(orjson.dumps({"action": "publish", "topic": TOPIC,
                                                 "id": i + 1, "data": PAYLOAD}).decode())
                await asyncio.wait_for(counter.done.wait(), 120)
                return time.perf_counter() - start

            await burst(5)  # warm-up
            cpu = cpu_seconds(server)
            elapsed = await burst(messages)
            cpu = cpu_seconds(server) - cpu
        for close in closers:
            close()
    deliveries = subscribers * messages
    return deliveries / elapsed, 1e6 * cpu / deliveries


async def idle_rss(mode: str, conns: int) -> float:
    """Server RSS growth per idle subscribed connection, bytes."""
    async with attack_server(**ENV) as server:
        tok = token("bench")
        await asyncio.sleep(0.5)
        before = server.rss()
        closers = await open_many(OPENERS[mode], server, tok, Counter(), conns)
        await asyncio.sleep(2.0)
        after = server.rss()
        for close in closers:
            close()
    return (after - before) / conns


# -- time to fall back (Chromium) -------------------------------------------------------

CONNECT_TIME = """async ({url, token, twice}) => {
  const ps = await import("/pubsocket.js");
  const timed = async () => {
    const start = performance.now();
    const client = ps.connect(url, {token});
    for (let i = 0; i < 500 && client.state !== "connected"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const ms = performance.now() - start;
    const transport = client.transport;
    client.close();
    return [ms, transport];
  };
  const first = await timed();
  return twice ? await timed() : first;
}"""


async def fallback_times(samples: int) -> dict[str, list[float]]:
    """ms from connect() to connected, per case (module docstring)."""
    from playwright.async_api import async_playwright
    from tests.browser.conftest import CHROMIUM_ARGS

    out: dict[str, list[float]] = {"websocket": [], "after 403": [], "after drop": [],
                                   "remembered": []}
    async with attack_server(**ENV) as server, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium",
                                           args=CHROMIUM_ARGS)
        tok = token("bench")
        modes: list[tuple[str, str, Mode | None, bool]] = [
            ("websocket", "websocket", None, False), ("after 403", "http_stream", "403", False),
            ("after drop", "http_stream", "drop", False),
            ("remembered", "http_stream", "403", True)]
        for case, expected, mode, twice in modes:
            for _ in range(samples):
                async with _origin(server, mode) as port:
                    page = await browser.new_page()
                    await page.goto(f"http://127.0.0.1:{port}/")
                    ms, transport = await page.evaluate(CONNECT_TIME, {
                        "url": f"ws://127.0.0.1:{port}{PATH}", "token": tok, "twice": twice})
                    await page.close()
                if transport != expected:
                    raise RuntimeError(f"{case}: connected over {transport}")
                out[case].append(ms)
        await browser.close()
    return out


class _origin:
    """The port a page is loaded from and connects to: the server's, or a refusing
    proxy's in front of it."""

    def __init__(self, server: Server, mode: Mode | None) -> None:
        self.server = server
        self.mode = mode
        self.proxy: Any = None

    async def __aenter__(self) -> int:
        if self.mode is None:
            return self.server.port
        self.proxy = ws_refusing_proxy(self.server.port, self.mode)
        port: int = (await self.proxy.__aenter__()).port
        return port

    async def __aexit__(self, *exc: object) -> None:
        if self.proxy is not None:
            await self.proxy.__aexit__(None, None, None)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=40, help="connects per fallback case")
    ap.add_argument("--rounds", type=int, default=3, help="fan-out rounds per transport")
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=300, help="publications per fan-out")
    ap.add_argument("--conns", type=int, default=1000, help="idle connections per kind")
    ap.add_argument("--only", choices=["all", "fanout"], default="all",
                    help="fanout: the fan-out rounds alone (no Chromium, no idle RSS)")
    ap.add_argument("--out", default=str(RESULTS / "fallback.json"))
    return ap.parse_args()


async def main(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Run every measurement, print the tables; (the JSON report, the exit code)."""
    t0 = time.perf_counter()

    if args.only == "fanout":
        args.samples = args.conns = 0
    times = await fallback_times(args.samples) if args.samples else {}
    if times:
        print(f"\n{'time to connected, ms':<28} {'p50':>8} {'p99':>8}")
    for case, values in times.items():
        print(f"{case:<28} {pct(values, 0.5):>8.1f} {pct(values, 0.99):>8.1f}")

    fan: dict[str, list[float]] = {"websocket": [], "http_stream": []}
    cost: dict[str, list[float]] = {"websocket": [], "http_stream": []}
    for rnd in range(1, args.rounds + 1):
        for mode in fan:
            rate, us = await fanout(mode, args.subscribers, args.messages)
            fan[mode].append(rate)
            cost[mode].append(us)
            print(f"[fanout r{rnd}/{args.rounds}] {mode:<11} {rate:,.0f} deliveries/s, "
                  f"server CPU {us:.2f} µs/delivery", file=sys.stderr, flush=True)
    rss = {mode: await idle_rss(mode, args.conns) if args.conns else float("nan")
           for mode in ("websocket", "http_stream")}
    fan_med = {mode: statistics.median(v) for mode, v in fan.items()}
    cost_med = {mode: statistics.median(v) for mode, v in cost.items()}
    ratio = fan_med["http_stream"] / fan_med["websocket"]
    rss_ratio = rss["http_stream"] / rss["websocket"] if args.conns else float("nan")
    print(f"\n{'metric':<36} {'websocket':>12} {'http_stream':>12} {'ratio':>7} {'target':>8}")
    print(f"{f'fanout{args.subscribers} deliveries/s':<36} {fan_med['websocket']:>12,.0f} "
          f"{fan_med['http_stream']:>12,.0f} {ratio:>7.2f} {'>= 0.5x':>8}  "
          f"{'yes' if ratio >= FANOUT_TARGET else 'NO'}")
    print(f"{'server CPU ns/delivery':<36} {1e3 * cost_med['websocket']:>12,.0f} "
          f"{1e3 * cost_med['http_stream']:>12,.0f} "
          f"{cost_med['http_stream'] / cost_med['websocket']:>7.2f} {'-':>8}")
    if args.conns:
        print(f"{f'idle RSS/conn ({args.conns} conns), B':<36} {rss['websocket']:>12,.0f} "
              f"{rss['http_stream']:>12,.0f} {rss_ratio:>7.2f} {'-':>8}")
    report = {
        "meta": meta(),
        "config": vars(args),
        "fallback_ms": {case: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "samples": v}
                        for case, v in times.items()},
        "fanout": {"runs": fan, "median": fan_med, "ratio": ratio,
                   "server_us_per_delivery": cost, "server_us_median": cost_med,
                   "target": FANOUT_TARGET, "met": ratio >= FANOUT_TARGET},
        "idle_rss_per_conn": rss,
        "elapsed_s": time.perf_counter() - t0,
    }
    return report, 0 if ratio >= FANOUT_TARGET else 1


def cli() -> int:
    args = parse_args()
    raise_nofile()
    report, code = asyncio.run(main(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(cli())
