"""Centrifuge protocol vs the seed protocol on the same server, same run (`make bench`).

    python bench/centrifuge_bench.py [--rounds 2] [--duration 3] [--conns 2000]

* **fan-out to 1000 subscribers**: `fanout1000` of scenarios.py, once with seed-protocol
  subscribers and once with Centrifuge-protocol subscribers (`cf=1`: connect + subscribe,
  publication pushes counted, pings answered); the publisher is a seed-protocol client
  both times, so only the subscriber side differs. Target: Centrifuge deliveries/s
  >= 0.8x plain.
* **idle memory per connection**: `idle` (N connections over 100 topics, each
  subscribed) per protocol: server RSS after minus before, over N. Target: Centrifuge
  <= 1.2x plain.

Interleaved (plain, centrifuge, plain, ...), a fresh server on a fresh port each run,
server and loadgen pinned to different CPUs as in run.py; a run measured while other
processes used the box is re-run once (`--retries`); medians of rounds. Writes
bench/results/centrifuge.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import RESULTS, ensure_node_deps, meta, one_run, raise_nofile
from servers import ServerSpec, default_pinning, pubsocket_spec

PROTOCOLS = ("plain", "centrifuge")
FANOUT_TARGET = 0.8  # centrifuge / plain deliveries/s, at least
MEMORY_TARGET = 1.2  # centrifuge / plain RSS per connection, at most


def spec(proto: str) -> ServerSpec:
    base = pubsocket_spec()
    argv = [a if a != "bench/app" else "bench/cf_app" for a in base.cmd]
    return ServerSpec(proto, argv, base.env)


def median(runs: list[dict[str, Any]], key: str) -> float:
    values = [float(r["metrics"][key]) for r in runs if r.get("ok")]
    return statistics.median(values) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="fan-out rounds (idle: 2)")
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a noisy measurement")
    ap.add_argument("--duration", type=float, default=3.0, help="fan-out window, s")
    ap.add_argument("--conns", type=int, default=2000, help="idle connections per run")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "centrifuge.json"))
    args = ap.parse_args()
    raise_nofile()
    ensure_node_deps()  # run.py's helpers need bench/node only for meta()
    pin = None if args.no_pin else default_pinning()
    plan = {
        "fanout1000": [f"duration={args.duration}", "warmup=1"],
        "idle": [f"conns={args.conns}", "topics=100", "settle=1"],
    }
    t0 = time.perf_counter()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    failed = False
    discarded: list[dict[str, Any]] = []
    for scenario, sets in plan.items():
        per = results.setdefault(scenario, {p: [] for p in PROTOCOLS})
        rounds = args.rounds if scenario == "fanout1000" else 2
        for rnd in range(1, rounds + 1):
            for proto in PROTOCOLS:
                extra = ["cf=1"] if proto == "centrifuge" else []
                for _attempt in range(1 + args.retries):  # re-measure a busy box's run
                    res = one_run(spec(proto), scenario, rnd, False, [*sets, *extra], pin)
                    if not res.get("noisy"):
                        break
                    discarded.append({"scenario": scenario, "protocol": proto, **res})
                m = res.get("metrics", {})
                bad = {k: m[k] for k in ("loss", "protocol_errors") if m.get(k)}
                if not res.get("ok") or bad:
                    failed = True
                    print(f"FAILED {scenario} r{rnd} {proto}: {res.get('error') or bad}"
                          f"\n{res.get('server_log_tail', '')}", file=sys.stderr)
                else:
                    brief = (f"{m['deliveries_per_s']:,.0f} deliveries/s, "
                             f"server CPU {m['server_cpu_pct']:.0f}%"
                             if scenario == "fanout1000"
                             else f"{m['rss_per_conn_bytes']:,.0f} B/conn")
                    print(f"[{scenario} r{rnd}/{rounds}] {proto:<10} {brief}",
                          file=sys.stderr, flush=True)
                per[proto].append(res)
                time.sleep(0.3)
    fan = {p: median(results["fanout1000"][p], "deliveries_per_s") for p in PROTOCOLS}
    mem = {p: median(results["idle"][p], "rss_per_conn_bytes") for p in PROTOCOLS}
    for runs in results["fanout1000"].values():
        for r in runs:  # server CPU time per delivery (server_cpu_pct is % of one core)
            if r.get("ok"):
                m = r["metrics"]
                m["server_us_per_delivery"] = m["server_cpu_pct"] * 1e4 / m["deliveries_per_s"]
    cost = {p: median(results["fanout1000"][p], "server_us_per_delivery") for p in PROTOCOLS}
    fan_ratio = fan["centrifuge"] / fan["plain"]
    mem_ratio = mem["centrifuge"] / mem["plain"]
    rows = [
        ("fanout1000 deliveries/s", fan["plain"], fan["centrifuge"], fan_ratio,
         f">= {FANOUT_TARGET}x", fan_ratio >= FANOUT_TARGET),
        ("fanout1000 server CPU ns/delivery", 1e3 * cost["plain"], 1e3 * cost["centrifuge"],
         cost["centrifuge"] / cost["plain"], "-", True),
        (f"idle RSS/conn ({args.conns} conns), B", mem["plain"], mem["centrifuge"], mem_ratio,
         f"<= {MEMORY_TARGET}x", mem_ratio <= MEMORY_TARGET),
    ]
    print(f"\n{'metric':<34} {'plain':>12} {'centrifuge':>12} {'ratio':>7} {'target':>8}  met")
    for name, a, b, ratio, target, met in rows:
        print(f"{name:<34} {a:>12,.0f} {b:>12,.0f} {ratio:>7.2f} {target:>8}  "
              f"{'yes' if met else 'NO'}")
    elapsed = time.perf_counter() - t0
    report = {
        "meta": meta(),
        "config": {"rounds": args.rounds, "duration": args.duration, "conns": args.conns,
                   "plan": plan, "pinning": [sorted(s) for s in pin] if pin else None},
        "summary": [dict(zip(("metric", "plain", "centrifuge", "ratio", "target", "met"), r,
                             strict=True)) for r in rows],
        "results": results,
        "discarded_noisy_runs": discarded,
        "elapsed_s": elapsed,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\n{elapsed:.0f}s; results -> {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
