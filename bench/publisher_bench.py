"""Publishing from elsewhere (part of `make bench`): Publisher throughput, outbox latency.

    python bench/publisher_bench.py [--quick] [--redis URL] [--postgres DSN]

Measured in the same run, through the same Redis (a throwaway redis-server unless
`--redis`; a throwaway PostgreSQL from tests/postgres_server.py unless `--postgres`):

* **acknowledged publishes/s**: `--count` publishes to one topic with history, each
  awaited until the broker answered with its offset, in two shapes:
  - *one at a time* (a view or task publishing once and waiting): a node's
    ``await hub.publish`` in a loop vs the sync ``Publisher.publish`` in a loop (from a
    plain thread, no event loop) vs ``await AsyncPublisher.publish``;
  - *windowed* (512 in flight, like a busy node): ``hub.publish`` vs `AsyncPublisher`
    vs the sync `Publisher` called from 8 threads.
  Target: the publishers >= 0.8x the node's rate of the same shape.
* **outbox commit-to-delivery**: 4 writers commit one outbox row per transaction, paced
  to `--rate` (1000) commits/s in total for `--seconds`; the relay runs as its own
  process (`pubsocket outbox relay`); a broker subscriber stamps each delivery. Latency:
  from sending COMMIT to the delivery, p50/p99 (goal: p99 <= 50 ms). The throwaway
  PostgreSQL runs with fsync off: a real disk adds its flush to the COMMIT, not to this.

Writes bench/results/publisher.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from tests.postgres_server import start_postgres  # noqa: E402
from tests.redis_server import given_or_throwaway as redis_url  # noqa: E402

from pubsocket import AsyncPublisher, Hub, Publisher, Settings  # noqa: E402
from pubsocket.brokers.base import Publication  # noqa: E402
from pubsocket.brokers.redis import RedisBroker  # noqa: E402
from pubsocket.server.runner import new_event_loop  # noqa: E402

RESULTS = BENCH / "results"
RATIO_TARGET = 0.8
P99_GOAL_MS = 50.0
WINDOW = 512


@contextmanager
def postgres_dsn(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    server = start_postgres()
    try:
        yield server.dsn
    finally:
        server.stop()


def fresh(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}prefix=bench-{uuid.uuid4().hex[:8]}:"


# ------------------------------------------------------------------ throughput
async def node_rates(url: str, count: int) -> tuple[float, float]:
    """(one at a time, windowed) acknowledged publishes/s of a node's hub.publish."""
    hub = Hub(Settings(broker=fresh(url)))
    await hub.start()
    try:
        await hub.publish("warm", 0)
        t0 = time.perf_counter()
        for i in range(count):
            await hub.publish("seq", i)
        one = count / (time.perf_counter() - t0)
        windowed = await _windowed(lambda i: hub.publish("win", i), count)
    finally:
        await hub.close()
    return one, windowed


async def async_publisher_rates(url: str, count: int) -> tuple[float, float]:
    async with AsyncPublisher(fresh(url), settings=Settings()) as publisher:
        await publisher.publish("warm", 0)
        t0 = time.perf_counter()
        for i in range(count):
            await publisher.publish("seq", i)
        one = count / (time.perf_counter() - t0)
        windowed = await _windowed(lambda i: publisher.publish("win", i), count)
    return one, windowed


async def _windowed(publish: Any, count: int) -> float:
    sem = asyncio.Semaphore(WINDOW)

    async def one(i: int) -> None:
        async with sem:
            await publish(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - t0)


def sync_publisher_rates(url: str, count: int, threads: int = 8) -> tuple[float, float]:
    """(one at a time from a plain thread, `threads` threads at once) publishes/s."""
    with Publisher(fresh(url), settings=Settings()) as publisher:
        publisher.publish("warm", 0)
        t0 = time.perf_counter()
        for i in range(count):
            publisher.publish("seq", i)
        one = count / (time.perf_counter() - t0)
        per = count // threads

        def work() -> None:
            for i in range(per):
                publisher.publish("win", i)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        many = per * threads / (time.perf_counter() - t0)
    return one, many


# ------------------------------------------------------------------ outbox latency
async def outbox_latency(url: str, dsn: str, rate: float, seconds: float) -> dict[str, Any]:
    import psycopg

    from pubsocket import outbox

    broker_url, table = fresh(url), f"bench_outbox_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await outbox.acreate_table(conn, table)
        await conn.commit()
    delivered: dict[int, float] = {}

    def deliver(topic: str, pub: Publication) -> None:
        delivered[orjson.loads(pub.payload)] = time.perf_counter()

    node = RedisBroker(broker_url)
    await node.start(deliver)
    await node.subscribe("o")
    relay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pubsocket", "outbox", "relay", "--dsn", dsn, "--broker",
        broker_url, "--table", table, cwd=BENCH.parent,
        env={**os.environ, "PUBSOCKET_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    sent: dict[int, float] = {}
    writers, total = 4, int(rate * seconds)
    try:
        await asyncio.sleep(1.0)  # the relay connects and takes its lock

        async def writer(w: int) -> None:
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                start = time.perf_counter()
                for k, n in enumerate(range(w, total, writers)):
                    due = start + k * writers / rate
                    if (delay := due - time.perf_counter()) > 0:
                        await asyncio.sleep(delay)
                    await outbox.apublish(conn, "o", n, table=table)
                    sent[n] = time.perf_counter()
                    await conn.commit()

        t0 = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        achieved = total / (time.perf_counter() - t0)
        async with asyncio.timeout(30):
            while len(delivered) < total:
                await asyncio.sleep(0.01)
    finally:
        relay.terminate()
        await asyncio.wait_for(relay.wait(), 10)
        await node.close()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute(f"DROP FUNCTION IF EXISTS {table}_notify()")
    lat = sorted((delivered[n] - sent[n]) * 1000 for n in sent)
    return {"commits": total, "commits_per_s": round(achieved, 1),
            "p50_ms": round(lat[len(lat) // 2], 2), "p99_ms": round(lat[int(len(lat) * 0.99)], 2),
            "max_ms": round(lat[-1], 2)}


# ------------------------------------------------------------------ main
def run_uv(coro: Any) -> Any:
    """Run `coro` on uvloop, as a node (`pubsocket serve`) and the sync Publisher do."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--redis")
    parser.add_argument("--postgres")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    count, rounds, seconds = args.count, args.rounds, args.seconds
    if args.quick:
        count, rounds, seconds = 5000, 1, 2.0
    rows: dict[str, list[float]] = {}
    with redis_url(args.redis) as url:
        for _ in range(rounds):  # interleaved, so drift hits every variant alike
            for name, (one, win) in (
                ("node hub.publish", run_uv(node_rates(url, count))),
                ("AsyncPublisher", run_uv(async_publisher_rates(url, count))),
                ("Publisher (sync)", sync_publisher_rates(url, count)),
            ):
                rows.setdefault(f"{name} / one at a time", []).append(one)
                rows.setdefault(f"{name} / windowed", []).append(win)
        with postgres_dsn(args.postgres) as dsn:
            latency = run_uv(outbox_latency(url, dsn, args.rate, seconds))
    rates = {k: round(statistics.median(v)) for k, v in rows.items()}
    title = f"acknowledged publishes/s (median of {rounds})"
    print(f"\n{title:<46} {'rate':>9} {'vs node':>8}")
    for key, value in rates.items():
        shape = key.rpartition(" / ")[2]
        base = rates[f"node hub.publish / {shape}"]
        print(f"{key:<46} {value:>9,} {value / base:>7.2f}x")
    print(f"\noutbox commit-to-delivery at {latency['commits_per_s']:.0f} commits/s "
          f"({latency['commits']} commits): p50 {latency['p50_ms']} ms, "
          f"p99 {latency['p99_ms']} ms (goal <= {P99_GOAL_MS:.0f}), max {latency['max_ms']} ms")
    RESULTS.mkdir(exist_ok=True)
    out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
           "count": count, "rounds": rounds, "rates": rates, "outbox": latency,
           "ratio_target": RATIO_TARGET, "p99_goal_ms": P99_GOAL_MS}
    (RESULTS / "publisher.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
