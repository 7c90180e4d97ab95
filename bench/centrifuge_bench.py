"""Centrifuge protocol vs the seed protocol on the same server, same run (`make bench`).

    python bench/centrifuge_bench.py [--rounds 3] [--info-rounds 2] [--duration 3]
                                     [--conns 2000]

* **fan-out to 1000 subscribers** (the headline): `fanout1000` of scenarios.py, once with
  seed-protocol subscribers and once with Centrifuge-protocol subscribers (`cf=1`:
  connect + subscribe, publication pushes counted, pings answered); the publisher is an
  anonymous seed-protocol client both times, so only the subscriber side differs and
  pushes carry no publisher info. Target: Centrifuge deliveries/s >= 0.8x plain.
* **fan-out to 1000, publisher with info**: the same on `bench/cf_app_auth` (both
  endpoints secured, SECRET/API_KEY in the server's env); the publisher's token has a
  `sub` and an `info` claim, so every Centrifuge push carries `pub.info` (plain
  deliveries stay json(data)); subscribers authenticate with a token of their own
  (Bearer header / the connect command's token). Same target, reported on its own line.
* **fan-out to 1000, Protobuf vs JSON Centrifuge subscribers** (in the headline runs): a
  third run per round whose subscribers speak the Protobuf variant (`cf=1 pb=1`,
  ``?cf_protocol=protobuf``, bench/lg_centrifuge_pb.py). Target: Protobuf
  deliveries/s >= 1.0x JSON Centrifuge, same run.
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
import contextlib
import os
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (
    RESULTS,
    ensure_node_deps,
    failed_run,
    measured,
    meta,
    raise_nofile,
    write_report,
)
from servers import ServerSpec, default_pinning, pubsocket_spec

from pubsocket.auth import Authenticator

PROTOCOLS = ("plain", "centrifuge")
FANOUT_TARGET = 0.8  # centrifuge / plain deliveries/s, at least
PROTOBUF_TARGET = 1.0  # protobuf / JSON centrifuge deliveries/s, at least
EXTRA = {"plain": [], "centrifuge": ["cf=1"], "protobuf": ["cf=1", "pb=1"]}
MEMORY_TARGET = 1.2  # centrifuge / plain RSS per connection, at most


PUBLISHER_INFO = {"name": "bench publisher"}


class Auth:
    """Fresh secrets for the secured runs and the tokens minted with them: the
    publisher's (`sub` + `info`, so its publications carry info) and the subscribers'."""

    def __init__(self) -> None:
        self.env = {"API_KEY": secrets.token_hex(16), "SECRET": secrets.token_hex(32)}
        auth = Authenticator(self.env["API_KEY"], self.env["SECRET"])
        self.pub_token = auth.issue(sub="bench-publisher", claims={"info": PUBLISHER_INFO})
        self.sub_token = auth.issue(sub="bench-subscriber")

    @contextlib.contextmanager
    def loadgen_env(self) -> Iterator[None]:
        """The tokens in our environment while the block runs (loadgen.py inherits it)."""
        os.environ["BENCH_PUB_TOKEN"] = self.pub_token
        os.environ["BENCH_SUB_TOKEN"] = self.sub_token
        try:
            yield
        finally:
            del os.environ["BENCH_PUB_TOKEN"], os.environ["BENCH_SUB_TOKEN"]


def spec(proto: str, auth: Auth | None = None) -> ServerSpec:
    app = "bench/cf_app_auth" if auth else "bench/cf_app"
    base = pubsocket_spec(env=auth.env if auth else None)
    argv = [a if a != "bench/app" else app for a in base.cmd]
    if auth is None:
        return ServerSpec(proto, argv, base.env)
    return ServerSpec(f"{proto}-info", argv, base.env,
                      ready_headers={"Authorization": f"Bearer {auth.sub_token}"})


def median(runs: list[dict[str, Any]], key: str) -> float:
    values = [float(r["metrics"][key]) for r in runs if r.get("ok")]
    return statistics.median(values) if values else float("nan")


def fanout_rows(label: str, runs: dict[str, list[dict[str, Any]]]) -> list[tuple[Any, ...]]:
    """The deliveries/s and server-CPU-per-delivery rows of one fan-out comparison."""
    for rs in runs.values():
        for r in rs:  # server CPU time per delivery (server_cpu_pct is % of one core)
            if r.get("ok"):
                m = r["metrics"]
                m["server_us_per_delivery"] = m["server_cpu_pct"] * 1e4 / m["deliveries_per_s"]
    fan = {p: median(runs[p], "deliveries_per_s") for p in PROTOCOLS}
    cost = {p: median(runs[p], "server_us_per_delivery") for p in PROTOCOLS}
    ratio = fan["centrifuge"] / fan["plain"]
    return [
        (f"{label} deliveries/s", fan["plain"], fan["centrifuge"], ratio,
         f">= {FANOUT_TARGET}x", ratio >= FANOUT_TARGET),
        (f"{label} server CPU ns/delivery", 1e3 * cost["plain"], 1e3 * cost["centrifuge"],
         cost["centrifuge"] / cost["plain"], "-", True),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="headline fan-out rounds (idle: 2)")
    ap.add_argument("--info-rounds", type=int, default=2,
                    help="rounds of the fan-out with an authenticated publisher")
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a noisy measurement")
    ap.add_argument("--duration", type=float, default=3.0, help="fan-out window, s")
    ap.add_argument("--conns", type=int, default=2000, help="idle connections per run")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "centrifuge.json"))
    args = ap.parse_args()
    raise_nofile()
    ensure_node_deps()  # run.py's helpers need bench/node only for meta()
    pin = None if args.no_pin else default_pinning()
    auth = Auth()
    fan_sets = [f"duration={args.duration}", "warmup=1"]
    # name -> (scenario, --set values, rounds, secured server + tokens or None)
    plan: dict[str, tuple[str, list[str], int, Auth | None]] = {
        "fanout1000": ("fanout1000", fan_sets, args.rounds, None),
        "fanout1000_info": ("fanout1000", fan_sets, args.info_rounds, auth),
        "idle": ("idle", [f"conns={args.conns}", "topics=100", "settle=1"], 2, None),
    }
    protocols = {name: (*PROTOCOLS, "protobuf") if name == "fanout1000" else PROTOCOLS
                 for name in plan}
    t0 = time.perf_counter()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    failed = False
    discarded: list[dict[str, Any]] = []
    for name, (scenario, sets, rounds, sec) in plan.items():
        per = results.setdefault(name, {p: [] for p in protocols[name]})
        env = sec.loadgen_env() if sec else contextlib.nullcontext()
        with env:
            for rnd in range(1, rounds + 1):
                for proto in protocols[name]:
                    extra = EXTRA[proto]
                    res = measured(spec(proto, sec), scenario, rnd, [*sets, *extra], pin,
                                   args.retries, discarded, {"scenario": name, "protocol": proto})
                    m = res.get("metrics", {})
                    if failed_run(f"{name} r{rnd} {proto}", res):
                        failed = True
                    else:
                        brief = (f"{m['deliveries_per_s']:,.0f} deliveries/s, "
                                 f"server CPU {m['server_cpu_pct']:.0f}%"
                                 if scenario == "fanout1000"
                                 else f"{m['rss_per_conn_bytes']:,.0f} B/conn")
                        print(f"[{name} r{rnd}/{rounds}] {proto:<10} {brief}",
                              file=sys.stderr, flush=True)
                    per[proto].append(res)
                    time.sleep(0.3)
    mem = {p: median(results["idle"][p], "rss_per_conn_bytes") for p in PROTOCOLS}
    mem_ratio = mem["centrifuge"] / mem["plain"]
    pb_fan = {p: median(results["fanout1000"][p], "deliveries_per_s")
              for p in ("centrifuge", "protobuf")}
    pb_ratio = pb_fan["protobuf"] / pb_fan["centrifuge"]
    rows = [
        *fanout_rows("fanout1000", results["fanout1000"]),
        ("fanout1000 protobuf vs json deliv/s", pb_fan["centrifuge"], pb_fan["protobuf"],
         pb_ratio, f">= {PROTOBUF_TARGET}x", pb_ratio >= PROTOBUF_TARGET),
        *fanout_rows("fanout1000 pub+info", results["fanout1000_info"]),
        (f"idle RSS/conn ({args.conns} conns), B", mem["plain"], mem["centrifuge"], mem_ratio,
         f"<= {MEMORY_TARGET}x", mem_ratio <= MEMORY_TARGET),
    ]
    print(f"\n{'metric':<38} {'plain':>12} {'centrifuge':>12} {'ratio':>7} {'target':>8}  met")
    for label, a, b, ratio, target, met in rows:
        print(f"{label:<38} {a:>12,.0f} {b:>12,.0f} {ratio:>7.2f} {target:>8}  "
              f"{'yes' if met else 'NO'}")
    print("(the protobuf row: columns are JSON Centrifuge, Centrifuge Protobuf)")
    print("(fanout1000: anonymous publisher, pushes without info - the target's headline;"
          "\n pub+info: authenticated publisher, every Centrifuge push carries pub.info)")
    elapsed = time.perf_counter() - t0
    report = {
        "meta": meta(),
        "config": {"rounds": args.rounds, "info_rounds": args.info_rounds,
                   "duration": args.duration, "conns": args.conns,
                   "plan": {k: {"scenario": v[0], "sets": v[1], "rounds": v[2],
                                "publisher_info": PUBLISHER_INFO if v[3] else None}
                            for k, v in plan.items()},
                   "pinning": [sorted(s) for s in pin] if pin else None},
        "summary": [dict(zip(("metric", "plain", "centrifuge", "ratio", "target", "met"), r,
                             strict=True)) for r in rows],
        "results": results,
        "discarded_noisy_runs": discarded,
        "elapsed_s": elapsed,
    }
    print(f"\n{elapsed:.0f}s; results -> {write_report(args.out, report)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
