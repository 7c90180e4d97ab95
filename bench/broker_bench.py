"""Broker-level benchmarks: no server, no WebSocket, just the broker and a deliver callback.

    python bench/broker_bench.py [--redis redis://127.0.0.1:6379/0] [--n 20000] [--only redis]

Measures, per broker (memory, redis):
* ``acked_seq``: one caller awaiting every publish before the next (latency bound);
* ``acked_win``: one caller keeping up to `--window` publishes outstanding (the hub's
  case: every WebSocket read hands it several publishes), each acknowledged; with the
  CPU time per publish of this process and of the Redis server (INFO cpu), which stay
  meaningful on a noisy machine where the rates do not;
* ``deliver``: publishes into a subscribed topic until `--n` deliveries reached the
  callback: deliveries/s and deliveries per loop tick (what the server's Flusher can
  coalesce into one write per subscriber);
* memory only: the cost of one publish with history on and off (µs).

Every loop is bounded in count; Redis keys use a fresh prefix and are deleted at the end.
``--legacy`` drives the pre-history interface (``publish(topic, payload)``) for a baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pubsocket.brokers import MemoryBroker, broker_from_url

POLICY: Any = None
LEGACY = False


class Counter:
    """A deliver callback that counts deliveries and the loop ticks they arrived in."""

    def __init__(self) -> None:
        self.count = 0
        self.ticks = 0
        self._marked = False
        self._loop = asyncio.get_running_loop()

    def deliver(self, topic: str, pub: object) -> None:
        self.count += 1
        if not self._marked:  # the Flusher's pattern: one callback per tick with work
            self._marked = True
            self.ticks += 1
            self._loop.call_soon(self._reset)

    def _reset(self) -> None:
        self._marked = False


def publish(broker: Any, topic: str, payload: bytes) -> Awaitable[Any] | None:
    """Start one publish; an awaitable, or None when it completed inline."""
    if LEGACY:
        return None if broker.publish_nowait(topic, payload) is True else broker.publish(
            topic, payload
        )
    res = broker.publish_nowait(topic, payload, POLICY)
    if res is None:
        return broker.publish(topic, payload, POLICY)  # type: ignore[no-any-return]
    return res if isinstance(res, asyncio.Future) else None


async def acked_seq(broker: Any, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        if LEGACY:
            await broker.publish("seq", b'{"i":%d}' % i)
        else:
            await broker.publish("seq", b'{"i":%d}' % i, POLICY)
    return n / (time.perf_counter() - started)


async def acked_win(broker: Any, n: int, window: int) -> float:
    started = time.perf_counter()
    outstanding: set[asyncio.Future[Any]] = set()
    for i in range(n):
        aw = publish(broker, "win", b'{"i":%d}' % i)
        if aw is not None:
            outstanding.add(asyncio.ensure_future(aw))
        if len(outstanding) >= window:
            done, outstanding = await asyncio.wait(outstanding, return_when="FIRST_COMPLETED")
            for fut in done:
                fut.result()
    if outstanding:
        for fut in await asyncio.gather(*outstanding, return_exceptions=True):
            if isinstance(fut, BaseException):
                raise fut
    return n / (time.perf_counter() - started)


async def deliver_rate(make: Callable[[], Any], n: int, window: int) -> tuple[float, float]:
    broker = make()
    counter = Counter()
    await broker.start(counter.deliver)
    try:
        await broker.subscribe("fan")
        started = time.perf_counter()
        outstanding: set[asyncio.Future[Any]] = set()
        for i in range(n):
            aw = publish(broker, "fan", b'{"i":%d,"text":"hello world"}' % i)
            if aw is not None:
                outstanding.add(asyncio.ensure_future(aw))
            if len(outstanding) >= window:
                _, outstanding = await asyncio.wait(outstanding, return_when="FIRST_COMPLETED")
        await asyncio.gather(*outstanding)
        async with asyncio.timeout(30):
            while counter.count < n:
                await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        return n / elapsed, counter.count / max(counter.ticks, 1)
    finally:
        await broker.close()


def memory_cost(n: int) -> dict[str, float]:
    """µs per publish_nowait on a subscribed topic with a no-op deliver."""
    from pubsocket.brokers.base import NO_HISTORY, HistoryPolicy

    out: dict[str, float] = {}
    for name, policy in (("history_off", NO_HISTORY), ("history_on", HistoryPolicy(100, 120))):
        broker = MemoryBroker()

        async def setup(b: MemoryBroker = broker) -> None:
            await b.start(lambda topic, pub: None)
            await b.subscribe("t")

        asyncio.run(setup())
        payload = b'{"text":"hello world"}'
        nowait = broker.publish_nowait
        started = time.perf_counter()
        for _ in range(n):
            nowait("t", payload, policy)
        out[name] = (time.perf_counter() - started) / n * 1e6
    return out


async def redis_cpu(url: str | None) -> float:
    """Seconds of CPU the Redis server used so far (INFO cpu), 0 for no Redis."""
    if url is None:
        return 0.0
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run_broker(
    name: str, make: Callable[[], Any], args: argparse.Namespace, url: str | None = None
) -> None:
    broker = make()
    await broker.start(lambda topic, pub: None)
    try:
        seq = await acked_seq(broker, min(args.n, 20_000))
        cpu0, srv0 = time.process_time(), await redis_cpu(url)
        win = await acked_win(broker, args.n, args.window)
        cpu = (time.process_time() - cpu0) / args.n * 1e6
        srv = (await redis_cpu(url) - srv0) / args.n * 1e6
    finally:
        await broker.close()
    rate, per_tick = await deliver_rate(make, args.n, args.window)
    print(f"{name:<7} acked_seq {seq:>9,.0f}/s  acked_win({args.window}) {win:>9,.0f}/s "
          f"(CPU/publish: us {cpu:.1f} µs, redis {srv:.1f} µs)  "
          f"deliver {rate:>9,.0f}/s  deliveries/tick {per_tick:6.1f}", flush=True)


async def cleanup(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
    finally:
        await client.aclose()


def main() -> int:
    global POLICY, LEGACY
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--only", choices=["memory", "redis"], default=None)
    ap.add_argument("--no-history", action="store_true", help="publish with NO_HISTORY")
    ap.add_argument("--legacy", action="store_true", help="the pre-history broker interface")
    args = ap.parse_args()
    LEGACY = args.legacy
    if not LEGACY:
        from pubsocket.brokers.base import NO_HISTORY, HistoryPolicy

        POLICY = NO_HISTORY if args.no_history else HistoryPolicy(size=100, ttl=60)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    prefix = f"bbench-{uuid.uuid4().hex[:8]}:"
    url = f"{args.redis}?prefix={prefix}"
    if not LEGACY and args.only != "redis":
        cost = memory_cost(200_000)
        print(f"memory  publish_nowait µs: history off {cost['history_off']:.2f}, "
              f"history on {cost['history_on']:.2f}")
    try:
        if args.only != "redis":
            asyncio.run(run_broker("memory", MemoryBroker, args))
        if args.only != "memory":
            asyncio.run(run_broker("redis", lambda: broker_from_url(url), args, args.redis))
    finally:
        if args.only != "memory":
            asyncio.run(cleanup(args.redis, prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
