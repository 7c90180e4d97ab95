"""Fan-out to 1000 Centrifuge subscribers with the channel options of a Centrifugo config
file vs without (issue 18), same run (`make bench`).

    python bench/namespaces_bench.py [--rounds 3] [--duration 3]

Both servers serve bench/cf_app (the seed protocol and Centrifuge on one hub) and both
runs use the topic ``bench:fanout`` (`fanout1000` with ``ns=1``, Centrifuge subscribers,
an anonymous seed-protocol publisher). The second server also reads
bench/cf_namespaces.json (``PUBSOCKET_CENTRIFUGO_CONFIG``): 20 namespaces with the
defaults' history (100 / 120 s), ``bench`` allowing anonymous subscribe and publish
(``client.allow_anonymous_connect_without_token``: the file's endpoint, which replaces
the app's, admits the anonymous subscribers), so
every subscribe and publish goes through the namespaces' refusal and permission checks
(`auth.namespaces.NamespacePolicy`). Interleaved rounds, a fresh server each run,
medians. Target: with config >= 0.95x without. Writes bench/results/namespaces.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import RESULTS, ensure_node_deps, failed_run, measured, meta, raise_nofile, write_report
from servers import ServerSpec, default_pinning, pubsocket_spec

CONFIG = Path(__file__).resolve().parent / "cf_namespaces.json"
TARGET = 0.95  # with config / without, deliveries/s, at least
KINDS = ("without", "with_config")


def spec(kind: str) -> ServerSpec:
    env = {"PUBSOCKET_CENTRIFUGO_CONFIG": str(CONFIG)} if kind == "with_config" else None
    base = pubsocket_spec(env=env)
    argv = [a if a != "bench/app" else "bench/cf_app" for a in base.cmd]
    return ServerSpec(kind, argv, base.env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a noisy measurement")
    ap.add_argument("--duration", type=float, default=3.0, help="fan-out window, s")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "namespaces.json"))
    args = ap.parse_args()
    raise_nofile()
    ensure_node_deps()
    pin = None if args.no_pin else default_pinning()
    sets = [f"duration={args.duration}", "warmup=1", "cf=1", "ns=1"]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    failed = False
    t0 = time.perf_counter()
    for rnd in range(1, args.rounds + 1):
        for kind in KINDS:
            res = measured(spec(kind), "fanout1000", rnd, sets, pin, args.retries)
            m = res.get("metrics", {})
            if failed_run(f"r{rnd} {kind}", res):
                failed = True
            else:
                print(f"[r{rnd}/{args.rounds}] {kind:<12} {m['deliveries_per_s']:,.0f} "
                      f"deliveries/s, server CPU {m['server_cpu_pct']:.0f}%",
                      file=sys.stderr, flush=True)
            runs[kind].append(res)
            time.sleep(0.3)
    fan = {k: statistics.median([float(r["metrics"]["deliveries_per_s"])
                                 for r in runs[k] if r.get("ok")] or [float("nan")])
           for k in KINDS}
    ratio = fan["with_config"] / fan["without"]
    met = ratio >= TARGET
    print(f"\nfanout1000 bench:fanout deliveries/s: without {fan['without']:,.0f}, "
          f"with config {fan['with_config']:,.0f}, ratio {ratio:.2f} "
          f"(target >= {TARGET}x: {'yes' if met else 'NO'})")
    report = {"meta": meta(), "config": {"rounds": args.rounds, "duration": args.duration,
                                         "file": CONFIG.name},
              "summary": {"without": fan["without"], "with_config": fan["with_config"],
                          "ratio": ratio, "target": TARGET, "met": met},
              "results": runs, "elapsed_s": time.perf_counter() - t0}
    print(f"results -> {write_report(args.out, report)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
