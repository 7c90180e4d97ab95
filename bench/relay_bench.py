"""The cost of "no sticky sessions": a command routed through Redis vs one fed locally.

    python bench/relay_bench.py [--rounds 3] [--n 5000] [--redis redis://HOST:PORT/0]

Two hubs in this process on one Redis (a throwaway redis-server of its own unless
`--redis`), node A holding a session whose feed counts commands. Per round, medians
over rounds:

* ``local``: `hub.relay.route` on A for A's session (a POST that landed on the node
  holding its session): µs per command, awaited one by one;
* ``routed_seq``: route on B, then wait until A's feed has it, one at a time: the
  latency a routed command adds (B -> Redis PUBLISH -> A's subscriber link -> feed);
* ``routed_win``: route on B with 64 commands in flight (concurrent POSTs on a busy
  node), until A fed all: µs per command, and the CPU time per command of this process
  (both nodes' work) and of the Redis server (INFO cpu), which stay meaningful on a
  loaded machine where wall-clock rates do not.

The HTTP POST around a command is the same wherever it lands; what is measured is what
the relay adds. Prints a table (docs/design.md "No sticky sessions: the cost").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.redis_server import given_or_throwaway as redis_url

from pubsocket import Hub, Settings
from pubsocket.brokers.redis import RedisBroker
from pubsocket.hub.relay import RouteResult

WINDOW = 64
REFERENCE = "bench:reference"  # a topic without history (see the Settings below)
DATA = b'{"id":1,"publish":{"channel":"chat:room","data":{"text":"hello there"}}}'


class Feed:
    """A session's feed that counts; `wait` returns once `count` commands arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached = asyncio.Event()

    def __call__(self, data: bytes) -> None:
        self.count += 1
        if self.count >= self.target:
            self.reached.set()

    async def wait(self, count: int) -> None:
        if self.count < count:
            self.target = count
            self.reached.clear()
            await asyncio.wait_for(self.reached.wait(), 30)


async def redis_cpu(client: Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def one_round(a: Hub, b: Hub, feed: Feed, n: int, client: Redis) -> dict[str, float]:
    node, out = a.relay.node, {}
    started = time.perf_counter()
    for _ in range(n):
        assert await a.relay.route(node, "s1", DATA) is RouteResult.LOCAL_FED
    out["local"] = (time.perf_counter() - started) / n * 1e6

    seq = max(n // 5, 1)
    started = time.perf_counter()
    for _ in range(seq):
        expect = feed.count + 1
        assert await b.relay.route(node, "s1", DATA) is RouteResult.SENT
        await feed.wait(expect)
    out["routed_seq"] = (time.perf_counter() - started) / seq * 1e6

    expect = feed.count + n
    cpu0, rcpu0 = time.process_time(), await redis_cpu(client)
    started = time.perf_counter()
    window = asyncio.Semaphore(WINDOW)

    async def send() -> None:
        async with window:
            assert await b.relay.route(node, "s1", DATA) is RouteResult.SENT

    await asyncio.gather(*(send() for _ in range(n)))
    await feed.wait(expect)
    out["routed_win"] = (time.perf_counter() - started) / n * 1e6
    out["routed_cpu"] = (time.process_time() - cpu0) / n * 1e6
    out["redis_cpu"] = (await redis_cpu(client) - rcpu0) / n * 1e6

    received = a.stats.received + n
    cpu0 = time.process_time()
    started = time.perf_counter()

    async def publish() -> None:
        async with window:
            await b.publish_payload(REFERENCE, DATA)

    await asyncio.gather(*(publish() for _ in range(n)))
    async with asyncio.timeout(30):
        while a.stats.received < received:
            await asyncio.sleep(0.001)
    out["publish_win"] = (time.perf_counter() - started) / n * 1e6
    out["publish_cpu"] = (time.process_time() - cpu0) / n * 1e6
    return out


async def main(args: argparse.Namespace) -> None:
    with redis_url(args.redis) as url:
        prefix = f"bench-relay-{uuid.uuid4().hex[:8]}:"
        settings = Settings(history_size=0)  # the reference publishes keep no history
        a = Hub(settings, RedisBroker(f"{url}?prefix={prefix}"))
        b = Hub(settings, RedisBroker(f"{url}?prefix={prefix}"))
        client = Redis.from_url(url)
        await a.start()
        await b.start()
        try:
            async with asyncio.timeout(10):
                while not (a.relay.ready and b.relay.ready):
                    await asyncio.sleep(0.01)
            feed = Feed()
            a.relay.register("s1", feed)
            await a.broker.subscribe(REFERENCE)  # delivered to A's hub, no subscriber
            await one_round(a, b, feed, min(args.n, 500), client)  # warm-up
            rounds = [await one_round(a, b, feed, args.n, client) for _ in range(args.rounds)]
        finally:
            await client.aclose()
            await a.close()
            await b.close()
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"relay: {args.n} commands x {args.rounds} rounds, median µs per command")
    print(f"  local (POST on the session's node)        {med['local']:8.1f}")
    print(f"  routed through Redis, one at a time       {med['routed_seq']:8.1f}"
          "  (latency added)")
    print(f"  routed through Redis, {WINDOW} in flight       {med['routed_win']:8.1f}"
          f"  (CPU: this process {med['routed_cpu']:.1f}, redis {med['redis_cpu']:.1f})")
    print(f"  reference: a publish without history       {med['publish_win']:8.1f}"
          f"  (CPU: this process {med['publish_cpu']:.1f}; the relay's own share "
          f"{med['routed_cpu'] - med['publish_cpu']:.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--redis", default=None)
    asyncio.run(main(parser.parse_args()))
