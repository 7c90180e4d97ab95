"""Benchmark runner: Node `ws` baseline vs pubsocket, interleaved, same run.

    python bench/run.py [--rounds 3] [--scenarios fanout1000,latency] [--quick]
    python bench/run.py --server-cmd "python my_server.py --port {port}"   # candidate override
    python bench/run.py --candidate picows        # validate the harness without pubsocket
    python bench/run.py --self-check              # loadgen headroom: node vs picows servers

For each scenario and round, each server runs in turn (node, candidate, node, ...),
each on a fresh process and a fresh free port. Medians of rounds are compared.
Results: bench/results/latest.json (+ server logs in bench/results/logs/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from servers import (  # noqa: E402
    BENCH,
    RunningServer,
    ServerSpec,
    default_pinning,
    node_spec,
    pin_to,
    picows_spec,
    pubsocket_spec,
)

SCENARIOS = ["fanout100", "fanout1000", "latency", "chat", "idle"]
RESULTS = BENCH / "results"
LOADGEN_TIMEOUT = 240.0


@dataclass(frozen=True)
class Row:
    scenario: str
    key: str
    label: str
    kind: str  # info | ratio_ge | ratio_le | abs_le | zero
    target: float | None = None
    agg: str = "median"  # median | max
    loss_key: str | None = None  # target also requires this metric == 0


ROWS = [
    Row("fanout1000", "deliveries_per_s", "fanout1000 deliveries/s", "ratio_ge", 3.0,
        loss_key="loss"),
    Row("fanout1000", "loss", "fanout1000 loss (max of rounds)", "zero", agg="max"),
    Row("fanout1000", "loadgen_cpu_pct", "fanout1000 loadgen CPU %", "info"),
    Row("fanout1000", "server_cpu_pct", "fanout1000 server CPU %", "info"),
    Row("fanout100", "deliveries_per_s", "fanout100 deliveries/s", "info"),
    Row("fanout100", "loss", "fanout100 loss (max of rounds)", "info", agg="max"),
    Row("latency", "p50_ms", "latency p50 ms", "info"),
    Row("latency", "p99_ms", "latency p99 ms", "ratio_le", 1.0),
    Row("latency", "max_ms", "latency max ms", "info"),
    Row("latency", "loss", "latency loss (max of rounds)", "info", agg="max"),
    Row("chat", "p50_ms", "chat p50 ms", "info"),
    Row("chat", "p99_ms", "chat p99 ms", "ratio_le", 1.5, loss_key="loss"),
    Row("chat", "loss", "chat loss (max of rounds)", "zero", agg="max"),
    Row("chat", "deliveries_per_s", "chat deliveries/s", "info"),
    Row("idle", "rss_per_conn_bytes", "idle server RSS/conn bytes", "abs_le", 8192.0),
    Row("idle", "handshakes_per_s", "idle handshakes/s", "ratio_ge", 1.0),
    Row("idle", "loadgen_cpu_pct", "idle loadgen CPU %", "info"),
]


# ---------------------------------------------------------------- measuring


class Background:
    """CPU used by processes other than ours while a scenario runs (noise flag)."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.t0 = time.perf_counter()
        self.c0 = self._sample()

    def _sample(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for p in psutil.process_iter():
            if p.pid in self.exclude:
                continue
            try:
                ct = p.cpu_times()
                out[p.pid] = ct.user + ct.system
            except psutil.Error:
                continue
        return out

    def pct(self, exclude: set[int]) -> float:
        c1 = self._sample()
        dt = max(1e-9, time.perf_counter() - self.t0)
        busy = sum(v - self.c0.get(pid, 0.0) for pid, v in c1.items() if pid not in exclude)
        return 100.0 * busy / dt


def server_tree(pid: int) -> set[int]:
    try:
        p = psutil.Process(pid)
        return {pid, *(c.pid for c in p.children(recursive=True))}
    except psutil.Error:
        return {pid}


Pinning = tuple[set[int], set[int]] | None


def run_loadgen(scenario: str, srv: RunningServer, quick: bool, sets: list[str],
                pin: Pinning) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH / "loadgen.py"), scenario, "--url", srv.url,
           "--server-pid", str(srv.pid), "--timeout", str(LOADGEN_TIMEOUT - 20)]
    if quick:
        cmd.append("--quick")
    for s in sets:
        cmd += ["--set", s]
    mine = {os.getpid(), *server_tree(srv.pid)}
    bg = Background(mine)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=pin_to(pin[1] if pin else None))
    try:
        out, err = proc.communicate(timeout=LOADGEN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        return {"ok": False, "error": f"loadgen timed out after {LOADGEN_TIMEOUT}s"}
    bg_pct = bg.pct(mine | {proc.pid} | server_tree(srv.pid))
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if not lines:
        return {"ok": False, "error": f"loadgen produced no JSON (rc={proc.returncode}): "
                                      f"{err.strip()[-600:]}"}
    res: dict[str, Any] = json.loads(lines[-1])
    res["background_cpu_pct"] = bg_pct
    res["server_alive_after"] = srv.proc.poll() is None
    return res


def one_run(spec: ServerSpec, scenario: str, rnd: int, quick: bool,
            sets: list[str], pin: Pinning) -> dict[str, Any]:
    log = RESULTS / "logs" / f"{scenario}-r{rnd}-{spec.name}.log"
    t0 = time.perf_counter()
    try:
        srv = RunningServer(spec, log, cpus=pin[0] if pin else None)
    except (RuntimeError, OSError) as exc:
        return {"ok": False, "error": f"server start failed: {exc}"}
    try:
        res = run_loadgen(scenario, srv, quick, sets, pin)
    finally:
        srv.stop()
    res["wall_s"] = time.perf_counter() - t0
    return res


# ---------------------------------------------------------------- summarizing


def aggregate(runs: list[dict[str, Any]], key: str, how: str) -> float | None:
    vals = [float(r["metrics"][key]) for r in runs
            if r.get("ok") and r["metrics"].get(key) is not None]
    if not vals:
        return None
    return max(vals) if how == "max" else statistics.median(vals)


def evaluate(row: Row, base: float | None, cand: float | None,
             cand_loss: float | None) -> tuple[float | None, str, str]:
    ratio = (cand / base) if (base and cand is not None) else None
    loss_ok = row.loss_key is None or cand_loss == 0
    extra = " & loss=0" if row.loss_key else ""
    if row.kind == "info":
        return ratio, "", ""
    if row.kind == "zero":
        return ratio, "=0", ("yes" if cand == 0 else "no") if cand is not None else "n/a"
    if row.kind == "abs_le":
        assert row.target is not None
        tgt = f"<= {row.target:.0f} (abs)"
        return ratio, tgt, ("yes" if cand <= row.target else "no") if cand is not None else "n/a"
    assert row.target is not None
    if ratio is None:
        sym = ">=" if row.kind == "ratio_ge" else "<="
        return None, f"{sym} {row.target:g}x{extra}", "n/a"
    if row.kind == "ratio_ge":
        met = ratio >= row.target and loss_ok
        return ratio, f">= {row.target:g}x{extra}", "yes" if met else "no"
    met = ratio <= row.target and loss_ok
    return ratio, f"<= {row.target:g}x{extra}", "yes" if met else "no"


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def summarize(results: dict[str, dict[str, list[dict[str, Any]]]], base: str,
              cand: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for row in ROWS:
        if row.scenario not in results:
            continue
        per = results[row.scenario]
        b = aggregate(per.get(base, []), row.key, row.agg)
        c = aggregate(per.get(cand, []), row.key, row.agg)
        c_loss = aggregate(per.get(cand, []), row.loss_key, "max") if row.loss_key else None
        ratio, target, met = evaluate(row, b, c, c_loss)
        rows.append({"metric": row.label, "scenario": row.scenario, "key": row.key,
                     base: b, cand: c, "ratio": ratio, "target": target, "met": met})
    return rows


def print_table(rows: list[dict[str, Any]], base: str, cand: str) -> None:
    head = ["metric", base, cand, "ratio", "target", "met"]
    body = [[r["metric"], fmt(r[base]), fmt(r[cand]),
             f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-", r["target"], r["met"]]
            for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for b in body:
        print("  ".join(str(x).ljust(w) for x, w in zip(b, widths, strict=True)))


def brief(res: dict[str, Any]) -> str:
    if not res.get("ok"):
        return f"ERROR {res.get('error', '?')[:300]}"
    m = res["metrics"]
    keys = ["deliveries_per_s", "p50_ms", "p99_ms", "loss", "handshakes_per_s",
            "rss_per_conn_bytes", "loadgen_cpu_pct", "server_cpu_pct"]
    parts = [f"{k}={fmt(m[k])}" for k in keys if m.get(k) is not None]
    parts.append(f"bg_cpu={fmt(res.get('background_cpu_pct'))}%")
    return " ".join(parts)


# ---------------------------------------------------------------- main


def ensure_node_deps() -> None:
    if (BENCH / "node" / "node_modules" / "ws").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found; install Node.js >= 18 to run the ws baseline")
    print("installing bench/node dependencies (npm ci)...", file=sys.stderr)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BENCH / "node", check=True,
                   timeout=300)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by children


def tool_version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def meta() -> dict[str, Any]:
    ws_pkg = BENCH / "node" / "node_modules" / "ws" / "package.json"
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "node": tool_version(["node", "--version"]),
        "ws": json.loads(ws_pkg.read_text())["version"] if ws_pkg.exists() else "?",
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    }


def parse_env(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise SystemExit(f"--server-env expects KEY=VALUE, got {item!r}")
        out[k] = v
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=None, help="rounds per scenario (default 3, quick 1)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"comma list from {','.join(SCENARIOS)}")
    ap.add_argument("--quick", action="store_true", help="short windows, idle with 2000 conns")
    ap.add_argument("--candidate", default="pubsocket",
                    choices=["pubsocket", "picows", "picows-coalesce", "node"],
                    help="server compared against the node baseline")
    ap.add_argument("--server-cmd", default=None,
                    help="candidate command (shell-split; {port} and $PORT available)")
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to every loadgen run (e.g. duration=3)")
    ap.add_argument("--self-check", action="store_true",
                    help="fanout1000 vs node, picows, picows-coalesce; shows loadgen headroom")
    ap.add_argument("--no-pin", action="store_true",
                    help="don't pin server / loadgen to disjoint CPU sets")
    ap.add_argument("--out", default=str(RESULTS / "latest.json"))
    args = ap.parse_args()

    raise_nofile()
    ensure_node_deps()
    rounds = args.rounds or (1 if args.quick else 3)
    pin = None if args.no_pin else default_pinning()
    base_spec = node_spec()
    if args.self_check:
        specs = [base_spec, picows_spec(False), picows_spec(True)]
        scenarios = ["fanout1000"] if args.scenarios == ",".join(SCENARIOS) else \
            args.scenarios.split(",")
    else:
        if args.candidate == "pubsocket":
            cand_spec = pubsocket_spec(args.server_cmd, parse_env(args.server_env))
        elif args.candidate == "node":
            cand_spec = ServerSpec("node-2", node_spec().cmd)
        else:
            cand_spec = picows_spec(args.candidate == "picows-coalesce")
        if args.server_cmd and args.candidate != "pubsocket":
            cand_spec = ServerSpec(cand_spec.name, pubsocket_spec(args.server_cmd).cmd,
                                   parse_env(args.server_env))
        specs = [base_spec, cand_spec]
        scenarios = [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s!r}")

    t_start = time.perf_counter()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for scenario in scenarios:
        per = results.setdefault(scenario, {sp.name: [] for sp in specs})
        for rnd in range(1, rounds + 1):
            for spec in specs:  # interleaved: node, candidate, node, candidate, ...
                res = one_run(spec, scenario, rnd, args.quick, args.set, pin)
                per[spec.name].append(res)
                print(f"[{scenario} r{rnd}/{rounds}] {spec.name:<16} {brief(res)}",
                      file=sys.stderr, flush=True)
                time.sleep(0.3)
    elapsed = time.perf_counter() - t_start

    names = [sp.name for sp in specs]
    report: dict[str, Any] = {
        "meta": meta(),
        "config": {"rounds": rounds, "quick": args.quick, "scenarios": scenarios,
                   "servers": {sp.name: {"cmd": sp.cmd, "env": sp.env} for sp in specs},
                   "set": args.set,
                   "pinning": {"server": sorted(pin[0]), "loadgen": sorted(pin[1])}
                   if pin else None},
        "results": results,
        "elapsed_s": elapsed,
    }
    print()
    if args.self_check:
        report["self_check"] = self_check_table(results, names)
    else:
        rows = summarize(results, names[0], names[1])
        report["summary"] = rows
        print_table(rows, names[0], names[1])
    print(f"\n{len(scenarios)} scenarios x {rounds} rounds x {len(specs)} servers "
          f"in {elapsed:.0f}s; results -> {args.out}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    return 0


def self_check_table(results: dict[str, dict[str, list[dict[str, Any]]]],
                     names: list[str]) -> list[dict[str, Any]]:
    keys = ["deliveries_per_s", "loadgen_cpu_pct", "server_cpu_pct", "loss"]
    rows: list[dict[str, Any]] = []
    for scenario, per in results.items():
        print(f"self-check {scenario} (medians; loss = max):")
        print(f"  {'server':<16} " + " ".join(f"{k:>18}" for k in keys))
        for name in names:
            vals = {k: aggregate(per.get(name, []), k, "max" if k == "loss" else "median")
                    for k in keys}
            rows.append({"scenario": scenario, "server": name, **vals})
            print(f"  {name:<16} " + " ".join(f"{fmt(vals[k]):>18}" for k in keys))
    print("\nloadgen CPU% is one process on one core (100 = saturated). If a faster server "
          "yields more deliveries/s at the same loadgen, the loadgen was not the limit.")
    return rows


if __name__ == "__main__":
    sys.exit(main())
