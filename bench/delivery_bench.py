"""Delivery guarantees under load (part of `make bench`): acked publishes and recovery.

    python bench/delivery_bench.py [--quick] [--rounds 3] [--trials 50] [--redis URL]

Measured in the same run, on the memory broker and on Redis (a throwaway redis-server
this script starts when `--redis` is not given; never the machine's 6379):

* **acknowledged publishes/s, one publisher**: a `pubsocket.v1` client over a real
  WebSocket sends publishes with ids, pipelined (at most `--window` 512 unacknowledged),
  and counts the acks (`PUBSOCKET_RATE_LIMIT=0`). The topic keeps history (the default),
  so every publish runs the broker's offset script. Median of `--rounds`.
* **recovery of 100 missed messages**: a client that knows position (0, epoch) of a
  topic subscribes with ``since`` after 100 publications; the time from sending that
  subscribe to receiving the 100th replayed delivery (and `recovered: true` checked),
  over `--trials` trials. "warm": another subscriber on the node keeps the topic live
  (one client of many reconnects); "cold": the node has no subscriber of the topic
  (the client reconnects to another node: broker subscribe + position + history read).

Server and client are pinned to different CPUs (as in run.py); Redis is not pinned.
Writes bench/results/delivery.json and prints a table with the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import picows
import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from run import RESULTS, meta, raise_nofile  # noqa: E402
from servers import RunningServer, default_pinning, pin_to, pubsocket_spec  # noqa: E402
from tests.redis_server import RedisProcess  # noqa: E402

TEXT = picows.WSMsgType.TEXT
PUBLISH_TARGET = 20_000.0
TIMEOUT = 60.0  # any single wait in this script


@contextmanager
def redis_url(given: str | None) -> Iterator[tuple[str, int | None]]:
    """(`given`, None), or a throwaway redis-server on a free port (stopped at the end)
    and its pid (its CPU share is reported)."""
    if given:
        yield given, None
        return
    server = RedisProcess().start()
    assert server.proc is not None
    try:
        yield server.url, server.proc.pid
    finally:
        server.stop()


def cpu_seconds(pids: list[int]) -> list[float]:
    return [sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids]


class Client(picows.WSListener):  # type: ignore[misc]
    """A v1 client: acks resolve futures by id; deliveries are counted per topic, and the
    n-th one of an awaited count is stamped in the callback (no queue in between)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.replies: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.want: dict[str, tuple[int, asyncio.Future[float]]] = {}
        self.got: dict[str, list[int]] = {}
        self.tr: Any = None

    def on_ws_connected(self, transport: Any) -> None:
        self.tr = transport

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type != TEXT:
            return
        msg = orjson.loads(frame.get_payload_as_bytes())
        if msg.get("type") == "message":
            offsets = self.got.setdefault(msg["topic"], [])
            offsets.append(msg["offset"])
            want = self.want.get(msg["topic"])
            if want is not None and len(offsets) >= want[0] and not want[1].done():
                want[1].set_result(time.perf_counter())
            return
        waiter = self.replies.pop(msg.get("id"), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)

    def send(self, obj: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        waiter = self.replies[obj["id"]] = self.loop.create_future()
        self.tr.send(TEXT, orjson.dumps(obj))
        return waiter

    def expect(self, topic: str, count: int) -> asyncio.Future[float]:
        """A future that gets the perf_counter time of `topic`'s `count`-th delivery."""
        self.got[topic] = []
        done: asyncio.Future[float] = self.loop.create_future()
        self.want[topic] = (count, done)
        return done


class Publisher(picows.WSListener):  # type: ignore[misc]
    """Pipelined v1 publishes: keep up to `window` unacknowledged, count the acks."""

    def __init__(self) -> None:
        self.tr: Any = None
        self.topic = b"bench-pub"
        self.pad = b'"' + b"x" * 64 + b'"'
        self.total = self.sent = self.acked = self.errors = 0
        self.window = 512
        self.done: asyncio.Future[float] | None = None

    def on_ws_connected(self, transport: Any) -> None:
        self.tr = transport

    def run(self, total: int, window: int) -> asyncio.Future[float]:
        self.total, self.window, self.sent, self.acked, self.errors = total, window, 0, 0, 0
        self.done = asyncio.get_running_loop().create_future()
        self._pump()
        return self.done

    def _pump(self) -> None:
        while self.sent < self.total and self.sent - self.acked < self.window:
            self.tr.send(TEXT, b'{"action":"publish","topic":"%s","id":%d,"data":%s}'
                         % (self.topic, self.sent, self.pad))
            self.sent += 1

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type != TEXT:
            return
        if not frame.get_payload_as_bytes().startswith(b'{"type":"ack"'):
            self.errors += 1
        self.acked += 1
        if self.acked >= self.total:
            if self.done is not None and not self.done.done():
                self.done.set_result(time.perf_counter())
        elif frame.last_in_buffer:  # refill once per read: fewer, larger writes
            self._pump()


async def publish_rate(url: str, count: int, window: int, server_pid: int,
                       redis_pid: int | None) -> dict[str, Any]:
    """Acked publishes/s of one pipelined publisher (after a warm-up of count/10), with
    the CPU share this client, the server and Redis used meanwhile (who is the
    bottleneck)."""
    tr, pub = await picows.ws_connect(Publisher, url, extra_headers={
        "Sec-WebSocket-Protocol": "pubsocket.v1"})
    pids = [server_pid] + ([redis_pid] if redis_pid else [])
    try:
        await asyncio.wait_for(pub.run(max(count // 10, 1000), window), TIMEOUT)
        cpu0, others0 = time.process_time(), cpu_seconds(pids)
        t0 = time.perf_counter()
        t1 = await asyncio.wait_for(pub.run(count, window), TIMEOUT)
        cpu1, others1 = time.process_time(), cpu_seconds(pids)
        wall = t1 - t0
        used = [100 * (b - a) / wall for a, b in zip(others0, others1, strict=True)]
        return {"acked_per_s": count / wall, "errors": pub.errors, "count": count,
                "client_cpu_pct": 100 * (cpu1 - cpu0) / wall, "server_cpu_pct": used[0],
                "redis_cpu_pct": used[1] if len(used) > 1 else None}
    finally:
        tr.disconnect()


async def recovery_trials(url: str, trials: int, missed: int) -> dict[str, list[float]]:
    """Seconds from a subscribe-with-since to the `missed`-th replayed delivery."""
    headers = {"Sec-WebSocket-Protocol": "pubsocket.v1"}
    conns = [await picows.ws_connect(Client, url, extra_headers=headers) for _ in range(3)]
    (_, anchor), (_, pub), (_, client) = conns
    out: dict[str, list[float]] = {"warm": [], "cold": []}
    run = uuid.uuid4().hex[:6]
    try:
        for trial in range(trials):
            for mode in ("warm", "cold"):
                topic = f"rec-{run}-{mode}-{trial}"
                who = anchor if mode == "warm" else client
                ack = await asyncio.wait_for(who.send(
                    {"action": "subscribe", "topic": topic, "id": f"a{topic}"}), TIMEOUT)
                epoch = ack["epoch"]
                if mode == "warm":
                    seen = anchor.expect(topic, missed)
                else:  # nobody on this node follows the topic any more
                    await asyncio.wait_for(client.send(
                        {"action": "unsubscribe", "topic": topic, "id": f"u{topic}"}), TIMEOUT)
                acks = [pub.send({"action": "publish", "topic": topic, "id": f"p{topic}-{i}",
                                  "data": {"i": i, "pad": "x" * 64}}) for i in range(missed)]
                replies = await asyncio.wait_for(asyncio.gather(*acks), TIMEOUT)
                assert all(r["type"] == "ack" for r in replies), replies[:2]
                if mode == "warm":
                    await asyncio.wait_for(seen, TIMEOUT)  # the node is at the top
                done = client.expect(topic, missed)
                t0 = time.perf_counter()
                reply = client.send({"action": "subscribe", "topic": topic, "id": f"r{topic}",
                                     "since": {"offset": 0, "epoch": epoch}})
                t1 = await asyncio.wait_for(done, TIMEOUT)
                ack = await asyncio.wait_for(reply, TIMEOUT)
                assert ack.get("recovered") is True, ack
                assert client.got[topic] == list(range(1, missed + 1)), "not exactly once"
                out[mode].append(t1 - t0)
                for who in {anchor, client}:
                    await asyncio.wait_for(who.send(
                        {"action": "unsubscribe", "topic": topic, "id": f"x{topic}"}), TIMEOUT)
                for who in (anchor, client):
                    who.got.pop(topic, None)
                    who.want.pop(topic, None)
    finally:
        for tr, _ in conns:
            tr.disconnect()
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--publishes", type=int, default=None)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--redis", default=None, help="default: start a throwaway redis-server")
    args = ap.parse_args()
    raise_nofile()
    rounds = args.rounds or (1 if args.quick else 3)
    count = args.publishes or (20_000 if args.quick else 100_000)
    pin = default_pinning()
    if pin:  # this process is the client: the other half of the CPUs
        setter = pin_to(pin[1])
        if setter:
            setter()
    logs = RESULTS / "logs"
    rates: dict[str, list[float]] = {"memory": [], "redis": []}
    cpu: dict[str, list[tuple[float, float, float]]] = {"memory": [], "redis": []}
    load_before = os.getloadavg()
    errors = 0
    recovery: dict[str, list[float]] = {}
    with redis_url(args.redis) as (redis, redis_pid):
        brokers = {"memory": "memory://",
                   "redis": f"{redis}?prefix=dbench-{uuid.uuid4().hex[:8]}:"}
        for name, broker in brokers.items():
            spec = pubsocket_spec(env={"PUBSOCKET_BROKER": broker})
            with RunningServer(spec, logs / f"delivery-{name}.log",
                               cpus=pin[0] if pin else None) as srv:
                for rnd in range(1, rounds + 1):
                    res = asyncio.run(publish_rate(srv.url, count, args.window, srv.pid,
                                                   redis_pid))
                    rates[name].append(res["acked_per_s"])
                    cpu[name].append((res["client_cpu_pct"], res["server_cpu_pct"],
                                      res["redis_cpu_pct"] or 0.0))
                    errors += res["errors"]
                    print(f"[publish r{rnd}] {name:<6} {res['acked_per_s']:>9,.0f} acked/s "
                          f"(errors {res['errors']}; CPU client {res['client_cpu_pct']:.0f}%, "
                          f"server {res['server_cpu_pct']:.0f}%, "
                          f"redis {res['redis_cpu_pct'] or 0:.0f}%)", flush=True)
                out = asyncio.run(recovery_trials(srv.url, args.trials, 100))
                for mode, xs in out.items():
                    recovery[f"{name}-{mode}"] = xs
                    print(f"[recovery] {name}-{mode}: p50 {pct(xs, .5) * 1e3:.2f} ms, "
                          f"p99 {pct(xs, .99) * 1e3:.2f} ms ({len(xs)} trials)", flush=True)
    summary = {
        "acked_publishes_per_s": {k: statistics.median(v) for k, v in rates.items()},
        "publish_errors": errors,
        "publish_cpu_pct_client_server_redis": cpu,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "recovery_100_ms": {k: {"p50": pct(v, .5) * 1e3, "p99": pct(v, .99) * 1e3,
                                "max": max(v) * 1e3, "trials": len(v)}
                            for k, v in recovery.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "delivery.json"
    path.write_text(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "meta": meta(),
                                "args": vars(args), "raw": {"rates": rates,
                                                            "recovery_s": recovery},
                                "summary": summary}, indent=2))
    a = summary["acked_publishes_per_s"]
    print(f"\ndelivery guarantees (medians of {rounds} rounds, {count:,} publishes each)")
    met = "yes" if a["redis"] >= PUBLISH_TARGET and not errors else "NO"
    print(f"  one publisher, acked publishes/s: redis {a['redis']:,.0f} "
          f"(target >= {PUBLISH_TARGET:,.0f}: {met}), memory {a['memory']:,.0f}")
    for name, xs in cpu.items():
        client, server, engine = (statistics.median(x[i] for x in xs) for i in range(3))
        print(f"  {name}: CPU client {client:.0f}%, server {server:.0f}%, redis {engine:.0f}% "
              "of a core (medians)")
    for key, r in summary["recovery_100_ms"].items():
        print(f"  recovery of 100 missed, {key:<12} p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms"
              f"  max {r['max']:.2f} ms")
    print(f"  load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"results -> {path}")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
