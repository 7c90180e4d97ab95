"""Summaries for run.py: medians, ratios vs targets, the table, warnings."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

Results = dict[str, dict[str, list[dict[str, Any]]]]


@dataclass(frozen=True)
class Row:
    scenario: str
    key: str
    label: str
    kind: str  # info | ratio_ge | ratio_le | abs_le | zero
    target: float | None = None
    agg: str = "median"  # median | max
    loss_key: str | None = None  # target also requires this metric == 0
    versus: str = "node"  # the baseline the ratio is taken against (node | uws)


ROWS = [
    Row(
        "fanout1000",
        "deliveries_per_s",
        "fanout1000 deliveries/s",
        "ratio_ge",
        3.0,
        loss_key="loss",
    ),
    Row("fanout1000", "loss", "fanout1000 loss (max of rounds)", "zero", agg="max"),
    Row("fanout1000", "loadgen_cpu_pct", "fanout1000 loadgen CPU %", "info"),
    Row("fanout1000", "loadgen_core_busy_pct", "fanout1000 loadgen core busy %", "info"),
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
    Row("chat", "delivered_fraction", "chat delivered/offered", "info"),
    Row("chat", "loadgen_cpu_pct", "chat loadgen CPU %", "info"),
    Row("chat", "loadgen_core_busy_pct", "chat loadgen core busy %", "info"),
    Row("chat10k", "p99_ms", "chat10k p99 ms (10k deliveries/s)", "ratio_le", 1.0,
        loss_key="loss"),
    Row("chat10k", "p50_ms", "chat10k p50 ms", "info"),
    Row("chat20k", "p99_ms", "chat20k p99 ms (20k deliveries/s)", "ratio_le", 1.0,
        loss_key="loss"),
    Row("chat20k", "p50_ms", "chat20k p50 ms", "info"),
    # issue 20: server CPU per delivery against uWebSockets (the loadgen is the limit of
    # deliveries/s in fan-out, so CPU per delivery is the fair figure)
    *(Row(sc, "server_cpu_us_per_delivery", f"{sc} server CPU us/delivery", "ratio_le", 0.7,
          versus="uws") for sc in ("fanout1000", "fanout100", "chat10k", "chat20k")),
    # its split: user (the server's own code) and system (the kernel's socket work, about
    # the same per write for every server: docs/design.md "Cost model: one delivery")
    *(Row(sc, key, f"{sc} server {part} us/delivery", "info", versus="uws")
      for sc in ("fanout1000", "chat10k", "chat20k")
      for key, part in (("server_user_us_per_delivery", "user"),
                        ("server_sys_us_per_delivery", "sys"))),
    Row("fanout1000", "deliveries_per_s", "fanout1000 deliveries/s", "info", versus="uws"),
    Row("chat10k", "p99_ms", "chat10k p99 ms", "info", versus="uws"),
    Row("idle", "rss_per_conn_bytes", "idle server RSS/conn bytes", "abs_le", 8192.0),
    Row("idle", "handshakes_per_s", "idle handshakes/s", "ratio_ge", 1.0),
    Row("idle", "server_cpu_us_per_handshake", "idle server CPU us/handshake", "info"),
    Row("idle", "loadgen_cpu_pct", "idle loadgen CPU %", "info"),
    Row("idle", "loadgen_core_busy_pct", "idle loadgen core busy %", "info"),
]
LOADGEN_BUSY_PCT = 90.0


def aggregate(runs: list[dict[str, Any]], key: str, how: str) -> float | None:
    vals = [
        float(r["metrics"][key]) for r in runs if r.get("ok") and r["metrics"].get(key) is not None
    ]
    if not vals:
        return None
    return max(vals) if how == "max" else statistics.median(vals)


def evaluate(
    row: Row, base: float | None, cand: float | None, cand_loss: float | None
) -> tuple[float | None, str, str]:
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


def round_ratios(base: list[dict[str, Any]], cand: list[dict[str, Any]], key: str) -> list[float]:
    """cand / base per round (rounds are interleaved, so round i of each ran back to back)."""
    out: list[float] = []
    for b, c in zip(base, cand, strict=False):
        if not (b.get("ok") and c.get("ok")):
            continue
        bv, cv = b["metrics"].get(key), c["metrics"].get(key)
        if bv and cv is not None:
            out.append(float(cv) / float(bv))
    return out


def summarize(
    results: dict[str, dict[str, list[dict[str, Any]]]], base: str, cand: str
) -> list[dict[str, Any]]:
    """One dict per row of ROWS whose scenario ran: every server's median, the ratio of
    `cand` to the row's baseline (`base` unless the row names another that ran), the
    per-round ratios' spread, and each server's loadgen busy % in that scenario."""
    rows: list[dict[str, Any]] = []
    for row in ROWS:
        if row.scenario not in results:
            continue
        per = results[row.scenario]
        vs = row.versus if row.versus in per else base
        if row.versus != base and row.versus not in per:
            continue  # that baseline did not run
        values = {name: aggregate(runs, row.key, row.agg) for name, runs in per.items()}
        b, c = values.get(vs), values.get(cand)
        c_loss = aggregate(per.get(cand, []), row.loss_key, "max") if row.loss_key else None
        ratio, target, met = evaluate(row, b, c, c_loss)
        spread = round_ratios(per.get(vs, []), per.get(cand, []), row.key)
        lg = {name: aggregate(runs, "loadgen_core_busy_pct", "median")
              or aggregate(runs, "loadgen_cpu_pct", "median") for name, runs in per.items()}
        rows.append(
            {
                "metric": row.label,
                "scenario": row.scenario,
                "key": row.key,
                "versus": vs,
                **values,
                base: b if vs == base else values.get(base),
                cand: c,
                "ratio": ratio,
                "round_ratios": spread,
                "target": target,
                "met": met,
                "loadgen_busy_pct": lg,
            }
        )
    return rows


def loadgen_busy(m: dict[str, Any]) -> float:
    """Core busy % (incl. softirq/steal) when pinned, else process CPU %."""
    v = m.get("loadgen_core_busy_pct")
    return float(v if v is not None else m.get("loadgen_cpu_pct", 0.0))


def warnings(results: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    out: list[str] = []
    for scenario, per in results.items():
        for name, runs in per.items():
            errs = [r for r in runs if not r.get("ok")]
            if errs:
                out.append(
                    f"{scenario}/{name}: {len(errs)}/{len(runs)} runs failed: "
                    f"{errs[0].get('error', '?')[:200]} (log: {errs[0].get('server_log')})"
                )
            ok = [r["metrics"] for r in runs if r.get("ok")]
            over = [m for m in ok if m.get("overloaded")]
            if over:
                m = over[0]
                out.append(
                    f"{scenario}/{name}: overloaded in {len(over)}/{len(ok)} runs (delivered "
                    f"{m['deliveries_per_s']:,.0f} of {m['offered_deliveries_per_s']:,.0f}/s, "
                    f"p50 {m.get('p50_ms', 0):.0f} ms); latency compares a saturated server, "
                    f"try a lower rate, e.g. --set {scenario}.rate=..."
                )
            busy = [m for m in ok if loadgen_busy(m) >= LOADGEN_BUSY_PCT]
            if busy:
                out.append(
                    f"{scenario}/{name}: loadgen core >= {LOADGEN_BUSY_PCT:.0f}% busy in "
                    f"{len(busy)}/{len(ok)} runs; the loadgen may be the limit"
                )
            noisy = [r for r in runs if r.get("noisy")]
            if noisy:
                out.append(
                    f"{scenario}/{name}: {len(noisy)}/{len(runs)} kept runs were noisy "
                    f"(other processes / steal)"
                )
            died = [r for r in runs if r.get("server_alive_after") is False]
            if died:
                out.append(
                    f"{scenario}/{name}: server died during {len(died)} runs "
                    f"(log: {died[0].get('server_log')})"
                )
            lost = [m for m in ok if m.get("disconnects")]
            if lost:
                out.append(f"{scenario}/{name}: unexpected disconnects in {len(lost)} runs")
    return out


def print_table(rows: list[dict[str, Any]], names: list[str]) -> None:
    """Medians per server, cand / baseline (and the per-round min..max of that ratio),
    and the loadgen's core busy % per server: ~100 means the loadgen was the limit."""
    head = ["metric", *names, "ratio", "rounds", "target", "met", "loadgen % " + "/".join(names)]
    body = [
        [
            r["metric"],
            *(fmt(r.get(n)) for n in names),
            f"{r['ratio']:.2f}x vs {r['versus']}" if r["ratio"] is not None else "-",
            (f"{min(r['round_ratios']):.2f}-{max(r['round_ratios']):.2f}"
             if r["round_ratios"] and r["ratio"] is not None else "-"),
            r["target"],
            r["met"],
            "/".join(f"{r['loadgen_busy_pct'].get(n) or 0:.0f}" for n in names),
        ]
        for r in rows
    ]
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
    keys = [
        "deliveries_per_s",
        "p50_ms",
        "p99_ms",
        "loss",
        "handshakes_per_s",
        "rss_per_conn_bytes",
        "loadgen_cpu_pct",
        "loadgen_core_busy_pct",
        "server_cpu_pct",
        "server_cpu_us_per_delivery",
        "server_sys_us_per_delivery",
    ]
    parts = [f"{k}={fmt(m[k])}" for k in keys if m.get(k) is not None]
    parts.append(f"bg_cpu={fmt(res.get('background_cpu_pct'))}%")
    if res.get("noisy"):
        parts.append(f"({' '.join(res.get('background_top', []))})")
    parts.append(f"steal={fmt(res.get('steal_pct'))}%")
    if res.get("noisy"):
        parts.append("NOISY")
    return " ".join(parts)


def self_check_table(
    results: dict[str, dict[str, list[dict[str, Any]]]], names: list[str]
) -> list[dict[str, Any]]:
    keys = [
        "deliveries_per_s",
        "loadgen_cpu_pct",
        "loadgen_core_busy_pct",
        "server_cpu_pct",
        "loss",
    ]
    rows: list[dict[str, Any]] = []
    for scenario, per in results.items():
        print(f"self-check {scenario} (medians; loss = max):")
        print(f"  {'server':<16} " + " ".join(f"{k:>{max(12, len(k))}}" for k in keys))
        for name in names:
            vals = {
                k: aggregate(per.get(name, []), k, "max" if k == "loss" else "median") for k in keys
            }
            rows.append({"scenario": scenario, "server": name, **vals})
            print(f"  {name:<16} " + " ".join(f"{fmt(vals[k]):>{max(12, len(k))}}" for k in keys))
    print(
        "\nloadgen_cpu_pct: loadgen process CPU (getrusage, 100 = one core). "
        "loadgen_core_busy_pct: its pinned core incl. softirq/steal (100 = saturated).\n"
        "If a faster server yields more deliveries/s through the same loadgen, the loadgen "
        "was not the limit for the slower one."
    )
    return rows
