"""Scale-out benchmarks on Redis (part of `make bench`).

    python bench/redis_bench.py [--rounds 3] [--quick] [--redis redis://HOST:PORT/0]

Without `--redis` it starts a throwaway redis-server of its own on a free port
(tests/redis_server.py: redis-server on PATH, else the dev extra's valkey-server) and
stops it at the end, so `make bench` needs no Redis service.

Measured in the same run, interleaved, medians of rounds:
* fanout1000 through the memory broker (reference, history on: the default), the memory
  broker with history off (`PUBSOCKET_HISTORY_SIZE=0`: what positions cost), through
  Redis with 1 worker and with `--workers 2` (SO_REUSEPORT on one port); targets:
  history on / off >= 0.9, Redis (1 worker) / memory >= 0.7;
* cross-node latency: 100 subscribers on node B, a publisher on node A, 200 publishes/s;
* topic locality: two nodes, each with subscribers for half of 100 topics, 10 000
  publishes spread over all topics; each node's `pubsocket_broker_received_total` shows
  what it had to take from Redis, against the 10 000 a firehose subscription would give.
Writes bench/results/redis.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import urllib.request
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run import RESULTS, raise_nofile, run_loadgen
from servers import RunningServer, ServerSpec, default_pinning, pubsocket_spec
from tests.redis_server import given_or_throwaway


def spec(name: str, broker: str, workers: int = 1, **env: str) -> ServerSpec:
    base = pubsocket_spec(env={"PUBSOCKET_BROKER": broker, "PUBSOCKET_WORKERS": str(workers),
                               **env})
    return ServerSpec(name, base.cmd, base.env)


def redis_url(given: str | None) -> AbstractContextManager[str]:
    """`given`, or a throwaway redis-server on a free port (stopped at the end)."""
    return given_or_throwaway(given, announce=True)


def loadgen(scenario: str, srv: RunningServer, quick: bool, pin: Any,
            pub: RunningServer | None = None) -> dict[str, Any]:
    sets = ["latency.subs=100"] if scenario == "latency" else []
    extra = ["--pub-url", pub.url] if pub is not None else []
    res: dict[str, Any] = run_loadgen(scenario, srv, quick, sets, pin, extra)
    return res


def metric(res: dict[str, Any], key: str) -> float | None:
    value = res.get("metrics", {}).get(key) if res.get("ok") else None
    return float(value) if value is not None else None


def scrape_received(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("pubsocket_broker_received_total "):
                return float(line.split()[1])
    raise RuntimeError("no pubsocket_broker_received_total in /metrics")


async def locality(port_a: int, port_b: int, topics: int = 100, publishes: int = 10_000) -> dict:
    import picows

    class Sink(picows.WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            pass

    conns = []
    for t in range(topics):
        port = port_a if t < topics // 2 else port_b
        tr, _ = await picows.ws_connect(Sink, f"ws://127.0.0.1:{port}/ws/chat")
        tr.send(picows.WSMsgType.TEXT, orjson.dumps({"action": "subscribe", "topic": f"t{t}"}))
        conns.append(tr)
    await asyncio.sleep(0.5)
    before = (scrape_received(port_a), scrape_received(port_b))
    pub, _ = await picows.ws_connect(Sink, f"ws://127.0.0.1:{port_a}/ws/chat")
    for i in range(publishes):
        pub.send(picows.WSMsgType.TEXT,
                 orjson.dumps({"action": "publish", "topic": f"t{i % topics}", "data": i}))
        if i % 500 == 0:
            await asyncio.sleep(0.01)
    # Publishes go to Redis one round trip at a time per publisher: wait (bounded)
    # until both nodes' counters stop moving.
    after = (-1.0, -1.0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = (scrape_received(port_a), scrape_received(port_b))
        if now == after:
            break
        after = now
    for tr in (*conns, pub):
        tr.disconnect()
    got = [after[0] - before[0], after[1] - before[1]]
    return {"published": publishes, "node_a_received": got[0], "node_b_received": got[1],
            "firehose_per_node": publishes, "fraction_of_firehose": max(got) / publishes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--redis", default=None,
                    help="an existing Redis (default: start a throwaway redis-server)")
    args = ap.parse_args()
    with redis_url(args.redis) as url:
        args.redis = url
        return run(args)


def run(args: argparse.Namespace) -> int:
    raise_nofile()
    rounds = args.rounds or (1 if args.quick else 3)
    pin = default_pinning()
    logs = RESULTS / "logs"
    fan: dict[str, list[float | None]] = {"memory": [], "memory-nohist": [], "redis-w1": [],
                                          "redis-w2": []}
    lat: list[dict[str, Any]] = []
    for rnd in range(1, rounds + 1):
        prefix = f"?prefix=bench-{uuid.uuid4().hex[:8]}:"
        for name, broker, workers, env in (
                ("memory", "memory://", 1, {}),
                ("memory-nohist", "memory://", 1, {"PUBSOCKET_HISTORY_SIZE": "0"}),
                ("redis-w1", args.redis + prefix, 1, {}),
                ("redis-w2", args.redis + prefix, 2, {})):
            with RunningServer(spec(name, broker, workers, **env),
                               logs / f"redis-{name}-r{rnd}.log",
                               cpus=pin[0] if pin else None) as srv:
                res = loadgen("fanout1000", srv, args.quick, pin)
            fan[name].append(metric(res, "deliveries_per_s"))
            print(f"[fanout1000 r{rnd}] {name:<9} {fan[name][-1]}", flush=True)
        broker = args.redis + prefix
        with RunningServer(spec("node-a", broker), logs / f"redis-a-r{rnd}.log") as a, \
                RunningServer(spec("node-b", broker), logs / f"redis-b-r{rnd}.log") as b:
            res = loadgen("latency", b, args.quick, pin, pub=a)
            lat.append(res.get("metrics", {}) if res.get("ok") else {})
            print(f"[cross-node latency r{rnd}] p50 {lat[-1].get('p50_ms')} "
                  f"p99 {lat[-1].get('p99_ms')} loss {lat[-1].get('loss')}", flush=True)
    with RunningServer(spec("loc-a", args.redis + "?prefix=loc:"), logs / "loc-a.log") as a, \
            RunningServer(spec("loc-b", args.redis + "?prefix=loc:"), logs / "loc-b.log") as b:
        loc = asyncio.run(locality(a.port, b.port))

    def med(xs: list[Any]) -> float | None:
        vals = [x for x in xs if x is not None]
        return statistics.median(vals) if vals else None

    summary = {
        "fanout1000_deliveries_per_s": {k: med(v) for k, v in fan.items()},
        "cross_node_latency_ms": {k: med([r.get(k) for r in lat])
                                  for k in ("p50_ms", "p99_ms", "max_ms")},
        "cross_node_loss": max((r.get("loss", 0) or 0 for r in lat), default=None),
        "locality": loc,
    }
    fan_med = summary["fanout1000_deliveries_per_s"]

    def ratio(num: str, den: str) -> float | None:
        a, b = fan_med[num], fan_med[den]
        return a / b if a and b else None

    summary["ratios"] = {  # label: (value, target)
        "history on / off (memory)": (ratio("memory", "memory-nohist"), 0.9),
        "redis (1 worker) / memory": (ratio("redis-w1", "memory"), 0.7),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "redis.json"
    out.write_text(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rounds": rounds,
                               "raw": {"fanout": fan, "latency": lat}, "summary": summary},
                              indent=2))
    f = summary["fanout1000_deliveries_per_s"]
    print(f"\nscale-out on Redis (medians of {rounds})")
    for name in fan:
        ratio = (f[name] / f["memory"]) if f[name] and f["memory"] else None
        print(f"  fanout1000 {name:<13} {f[name] or 0:>12,.0f} deliveries/s"
              + (f"  ({ratio:.2f}x memory)" if ratio else ""))
    for label, (value, target) in summary["ratios"].items():
        met = "yes" if value is not None and value >= target else "NO"
        print(f"  {label}: {value or 0:.2f}x (target >= {target}: {met})")
    c = summary["cross_node_latency_ms"]
    print(f"  cross-node latency (200 publishes/s to 100 subscribers): p50 {c['p50_ms']} ms, "
          f"p99 {c['p99_ms']} ms, loss {summary['cross_node_loss']}")
    print(f"  topic locality: node A took {loc['node_a_received']:.0f}, node B "
          f"{loc['node_b_received']:.0f} of {loc['published']} messages from Redis "
          f"(a firehose: {loc['published']} each)")
    print(f"results -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
