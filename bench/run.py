"""Benchmark runner: Node `ws` and uWebSockets baselines vs pubsocket, interleaved, same run.

    python bench/run.py [--rounds 3] [--scenarios fanout1000,latency] [--quick]
    python bench/run.py --server-cmd "python my_server.py --port {port}"   # candidate override
    python bench/run.py --candidate picows        # validate the harness without pubsocket
    python bench/run.py --self-check              # loadgen headroom: node vs picows servers

For each scenario and round, each server runs in turn (node, uws, candidate, node, ...),
each on a fresh process and a fresh free port. Medians of rounds are compared: most
ratios against Node `ws`, server CPU per delivery against uWebSockets (`--no-uws` skips it).
Results: bench/results/latest.json (+ server logs in bench/results/logs/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from report import (
    brief,
    print_table,
    self_check_table,
    summarize,
    warnings,
)
from servers import (
    BENCH,
    RunningServer,
    ServerSpec,
    default_pinning,
    node_spec,
    picows_spec,
    pin_to,
    pubsocket_spec,
    uws_spec,
)

SCENARIOS = ["fanout100", "fanout1000", "latency", "chat", "chat10k", "chat20k", "idle"]
RESULTS = BENCH / "results"
LOADGEN_TIMEOUT = 240.0


# ---------------------------------------------------------------- measuring


NOISY_BG_PCT = 25.0  # other processes using > 1/4 core during a run
NOISY_STEAL_PCT = 10.0  # hypervisor steal, % of all CPUs


def wait_quiet(max_pct: float, max_wait: float) -> float:
    """Wait (bounded) until the box is near idle; returns last system busy % (all CPUs)."""
    deadline = time.monotonic() + max_wait
    busy = float(psutil.cpu_percent(interval=0.3))
    while busy > max_pct and time.monotonic() < deadline:
        busy = float(psutil.cpu_percent(interval=0.5))
    return busy


class Background:
    """CPU used by processes other than ours while a scenario runs (noise flag)."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.t0 = time.perf_counter()
        self.c0 = self._sample()
        self.steal0 = getattr(psutil.cpu_times(), "steal", 0.0)

    def steal_pct(self) -> float:
        dt = max(1e-9, time.perf_counter() - self.t0)
        st = getattr(psutil.cpu_times(), "steal", 0.0) - self.steal0
        return 100.0 * st / dt / (psutil.cpu_count() or 1)

    def _sample(self) -> dict[int, tuple[str, float]]:
        out: dict[int, tuple[str, float]] = {}
        for p in psutil.process_iter(["name"]):
            if p.pid in self.exclude:
                continue
            try:
                ct = p.cpu_times()
                out[p.pid] = (str(p.info["name"]), ct.user + ct.system)
            except psutil.Error:
                continue
        return out

    def pct(self, exclude: set[int]) -> tuple[float, list[str]]:
        """(CPU % of one core used by others, top consumers as 'name:pct')."""
        c1 = self._sample()
        dt = max(1e-9, time.perf_counter() - self.t0)
        used = {
            pid: (name, v - self.c0.get(pid, ("", 0.0))[1])
            for pid, (name, v) in c1.items()
            if pid not in exclude
        }
        top = sorted(used.values(), key=lambda x: -x[1])[:3]
        busy = sum(v for _, v in used.values())
        return 100.0 * busy / dt, [f"{n}:{100.0 * v / dt:.0f}%" for n, v in top if v > 0]


def server_tree(pid: int) -> set[int]:
    try:
        p = psutil.Process(pid)
        return {pid, *(c.pid for c in p.children(recursive=True))}
    except psutil.Error:
        return {pid}


Pinning = tuple[set[int], set[int]] | None


def run_loadgen(
    scenario: str,
    srv: RunningServer,
    quick: bool,
    sets: list[str],
    pin: Pinning,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        scenario,
        "--url",
        srv.url,
        "--server-pid",
        str(srv.pid),
        "--timeout",
        str(LOADGEN_TIMEOUT - 20),
    ]
    if quick:
        cmd.append("--quick")
    cmd += extra or []
    for s in sets:
        cmd += ["--set", s]
    mine = {os.getpid(), *server_tree(srv.pid)}
    bg = Background(mine)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=pin_to(pin[1] if pin else None),
    )
    try:
        out, err = proc.communicate(timeout=LOADGEN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        return {"ok": False, "error": f"loadgen timed out after {LOADGEN_TIMEOUT}s"}
    bg_pct, bg_top = bg.pct(mine | {proc.pid} | server_tree(srv.pid))
    steal = bg.steal_pct()
    lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
    if not lines:
        return {
            "ok": False,
            "error": f"loadgen produced no JSON (rc={proc.returncode}): {err.strip()[-600:]}",
        }
    res: dict[str, Any] = json.loads(lines[-1])
    res["background_cpu_pct"] = bg_pct
    res["background_top"] = bg_top
    res["steal_pct"] = steal
    res["noisy"] = bg_pct > NOISY_BG_PCT or steal > NOISY_STEAL_PCT
    res["server_alive_after"] = srv.proc.poll() is None
    return res


def one_run(
    spec: ServerSpec, scenario: str, rnd: int, quick: bool, sets: list[str], pin: Pinning
) -> dict[str, Any]:
    log = RESULTS / "logs" / f"{scenario}-r{rnd}-{spec.name}.log"
    pre_busy = wait_quiet(10.0, 20.0)
    t0 = time.perf_counter()
    try:
        srv = RunningServer(spec, log, cpus=pin[0] if pin else None)
    except (RuntimeError, OSError) as exc:
        return {"ok": False, "error": f"server start failed: {exc}"}
    try:
        res = run_loadgen(scenario, srv, quick, sets, pin)
    finally:
        srv.stop()
    if not res.get("ok") or not res.get("server_alive_after", True):
        res["server_log"] = str(log)
        res["server_log_tail"] = srv.log_tail(1500)
    res["wall_s"] = time.perf_counter() - t0
    res["pre_busy_pct"] = pre_busy
    return res


# ---------------------------------------------------------------- main


def measured(spec: ServerSpec, scenario: str, rnd: int, sets: list[str], pin: Pinning,
             retries: int, discarded: list[dict[str, Any]] | None = None,
             tag: dict[str, Any] | None = None) -> dict[str, Any]:
    """`one_run`, measured again (up to `retries` times) while the box was too busy for
    it; each noisy run goes to `discarded` with the `tag` fields."""
    res: dict[str, Any] = {}
    for _attempt in range(1 + retries):
        res = one_run(spec, scenario, rnd, False, sets, pin)
        if not res.get("noisy"):
            break
        if discarded is not None:
            discarded.append({**(tag or {}), **res})
    return res


def failed_run(label: str, res: dict[str, Any]) -> bool:
    """Whether `res` failed (not ok, or lost messages, or protocol errors); if so it is
    printed to stderr with the server's log tail."""
    m = res.get("metrics", {})
    bad = {k: m[k] for k in ("loss", "protocol_errors") if m.get(k)}
    if res.get("ok") and not bad:
        return False
    print(f"FAILED {label}: {res.get('error') or bad}\n{res.get('server_log_tail', '')}",
          file=sys.stderr)
    return True


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """`report` as indented JSON at `path` (its folder created); the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    return out


def ensure_node_deps() -> None:
    modules = BENCH / "node" / "node_modules"
    if (modules / "ws").is_dir() and (modules / "uwebsockets").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found; install Node.js >= 18 to run the ws baseline")
    print("installing bench/node dependencies (npm ci)...", file=sys.stderr)
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=BENCH / "node", check=True, timeout=300
    )


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
    uws_pkg = BENCH / "node" / "node_modules" / "uwebsockets" / "package.json"
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "node": tool_version(["node", "--version"]),
        "ws": json.loads(ws_pkg.read_text())["version"] if ws_pkg.exists() else "?",
        "uwebsockets": json.loads(uws_pkg.read_text())["version"] if uws_pkg.exists() else "?",
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
    ap.add_argument(
        "--rounds", type=int, default=None, help="rounds per scenario (default 3, quick 1)"
    )
    ap.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma list from {','.join(SCENARIOS)}"
    )
    ap.add_argument("--quick", action="store_true", help="short windows, idle with 2000 conns")
    ap.add_argument(
        "--candidate",
        default="pubsocket",
        choices=["pubsocket", "picows", "picows-coalesce", "node"],
        help="server compared against the node baseline",
    )
    ap.add_argument(
        "--server-cmd",
        default=None,
        help="candidate command (shell-split; {port} and $PORT available)",
    )
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", default=None, help="display name of the candidate server")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every loadgen run (e.g. duration=3)",
    )
    ap.add_argument(
        "--self-check",
        action="store_true",
        help="fanout1000 vs node, picows, picows-coalesce; shows loadgen headroom",
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=1,
        help="re-run a (scenario, round, server) measured while the box was busy",
    )
    ap.add_argument(
        "--no-pin", action="store_true", help="don't pin server / loadgen to disjoint CPU sets"
    )
    ap.add_argument("--no-uws", action="store_true", help="skip the uWebSockets baseline")
    ap.add_argument(
        "--before-tree",
        default=None,
        metavar="PATH",
        help="also run the candidate from another checkout's src/ (e.g. `git worktree` of "
        "main), as 'before', interleaved: before/after in the same run",
    )
    ap.add_argument("--out", default=str(RESULTS / "latest.json"))
    args = ap.parse_args()

    raise_nofile()
    ensure_node_deps()
    rounds = args.rounds or (1 if args.quick else 3)
    pin = None if args.no_pin else default_pinning()
    base_spec = node_spec()
    if args.self_check:
        specs = [base_spec, picows_spec(False), picows_spec(True)]
        scenarios = (
            ["fanout1000"] if args.scenarios == ",".join(SCENARIOS) else args.scenarios.split(",")
        )
    else:
        if args.candidate == "pubsocket":
            cand_spec = pubsocket_spec(args.server_cmd, parse_env(args.server_env))
        elif args.candidate == "node":
            cand_spec = ServerSpec("node-2", node_spec().cmd)
        else:
            cand_spec = picows_spec(args.candidate == "picows-coalesce")
        if args.server_cmd and args.candidate != "pubsocket":
            cand_spec = ServerSpec(
                cand_spec.name, pubsocket_spec(args.server_cmd).cmd, parse_env(args.server_env)
            )
        if args.label:
            cand_spec = ServerSpec(args.label, cand_spec.cmd, cand_spec.env, cand_spec.cwd)
        specs = [base_spec, cand_spec] if args.no_uws else [base_spec, uws_spec(), cand_spec]
        if args.before_tree:
            src = str(Path(args.before_tree).resolve() / "src")
            specs.insert(-1, ServerSpec("before", cand_spec.cmd, {**cand_spec.env,
                                                                  "PYTHONPATH": src}))
        scenarios = [s for s in args.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s!r}")

    t_start = time.perf_counter()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    discarded: list[dict[str, Any]] = []
    for scenario in scenarios:
        per = results.setdefault(scenario, {sp.name: [] for sp in specs})
        for rnd in range(1, rounds + 1):
            for spec in specs:  # interleaved: node, uws, candidate, node, uws, ...
                for attempt in range(args.retries + 1):
                    res = one_run(spec, scenario, rnd, args.quick, args.set, pin)
                    print(
                        f"[{scenario} r{rnd}/{rounds}] {spec.name:<16} {brief(res)}",
                        file=sys.stderr,
                        flush=True,
                    )
                    time.sleep(0.3)
                    if not res.get("noisy") or attempt == args.retries:
                        break
                    discarded.append({"scenario": scenario, "server": spec.name, **res})
                per[spec.name].append(res)
    elapsed = time.perf_counter() - t_start

    names = [sp.name for sp in specs]
    report: dict[str, Any] = {
        "meta": meta(),
        "config": {
            "rounds": rounds,
            "quick": args.quick,
            "scenarios": scenarios,
            "servers": {sp.name: {"cmd": sp.cmd, "env": sp.env} for sp in specs},
            "set": args.set,
            "pinning": {"server": sorted(pin[0]), "loadgen": sorted(pin[1])} if pin else None,
        },
        "results": results,
        "discarded_noisy_runs": discarded,
        "elapsed_s": elapsed,
    }
    print()
    if args.self_check:
        report["self_check"] = self_check_table(results, names)
    else:
        rows = summarize(results, names[0], names[-1])
        report["summary"] = rows
        print_table(rows, names)
    warns = warnings(results)
    report["warnings"] = warns
    for w in warns:
        print(f"WARNING {w}")
    print(
        f"\n{len(scenarios)} scenarios x {rounds} rounds x {len(specs)} servers "
        f"in {elapsed:.0f}s; results -> {args.out}"
    )
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
