"""Fan-out to 1000: this tree vs an earlier commit of pubsocket, interleaved, same run.

    python bench/before_after.py [--rev 2cc5005] [--rounds 3] [--quick]

Issue 15 ("bounded cost") asks that the new budgets cost at most 5 % on the happy path:
the ratio printed is after / before for deliveries/s (target >= 0.95) and for server
CPU per delivery (target <= 1.05). `--rev` names the "before" (default: the last commit
before the bounded-cost work); its `src/` is extracted with `git archive` into a
temporary folder and served from there, with the same bench/app, settings and load
generator. Rounds alternate before, after, before, ... so drift hits both alike.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import one_run, raise_nofile
from servers import ROOT, default_pinning, pubsocket_spec

BEFORE = "2cc5005"  # main before issue 15 (bounded cost)


def extract(rev: str, into: Path) -> Path:
    """`src/` of `rev` under `into`; raises SystemExit when git cannot give it."""
    try:
        blob = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True,
                              capture_output=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"cannot extract {rev}: {exc}") from None
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def metric(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(r["metrics"][key]) for r in runs
            if r.get("ok") and r.get("metrics", {}).get(key) is not None]
    return statistics.median(vals) if vals else None


def cpu_per_delivery(run: dict[str, Any]) -> float | None:
    m = run.get("metrics", {})
    if not run.get("ok") or not m.get("deliveries_per_s") or m.get("server_cpu_pct") is None:
        return None
    return float(m["server_cpu_pct"]) / 100.0 / float(m["deliveries_per_s"]) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rev", default=BEFORE)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    raise_nofile()
    pin = default_pinning()
    with tempfile.TemporaryDirectory(prefix="pubsocket-before-") as tmp:
        old_src = extract(args.rev, Path(tmp))
        specs = {
            "before": pubsocket_spec(env={"PYTHONPATH": str(old_src)}),
            "after": pubsocket_spec(env={"PYTHONPATH": str(ROOT / "src")}),
        }
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for rnd in range(args.rounds):
            order = ["before", "after"] if rnd % 2 == 0 else ["after", "before"]
            for name in order:
                spec = specs[name]
                spec.name = f"pubsocket-{name}"
                res = one_run(spec, "fanout1000", rnd, args.quick, [], pin)
                runs[name].append(res)
                m = res.get("metrics", {})
                print(f"round {rnd} {name:6}: {'ok' if res.get('ok') else 'FAILED'} "
                      f"{m.get('deliveries_per_s', 0):,.0f} deliveries/s, server CPU "
                      f"{m.get('server_cpu_pct', 0):.0f}%, loadgen CPU "
                      f"{m.get('loadgen_cpu_pct', 0):.0f}%"
                      + ("" if res.get("ok") else f" ({res.get('error')})"), flush=True)
    before, after = metric(runs["before"], "deliveries_per_s"), metric(runs["after"],
                                                                        "deliveries_per_s")
    cb = [c for r in runs["before"] if (c := cpu_per_delivery(r)) is not None]
    ca = [c for r in runs["after"] if (c := cpu_per_delivery(r)) is not None]
    if not before or not after or not cb or not ca:
        print("before/after: a run failed; no ratio")
        return 1
    ratio = after / before
    cpu_ratio = statistics.median(ca) / statistics.median(cb)
    print(f"fanout1000 after/before ({args.rev}): deliveries/s {ratio:.2f}x "
          f"(target >= 0.95: {'MET' if ratio >= 0.95 else 'MISSED'}); server CPU per "
          f"delivery {statistics.median(ca):.2f} vs {statistics.median(cb):.2f} us = "
          f"{cpu_ratio:.2f}x (target <= 1.05: {'MET' if cpu_ratio <= 1.05 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
