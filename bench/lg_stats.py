"""Measurement helpers: percentiles, own CPU (getrusage), server CPU/RSS (psutil)."""

from __future__ import annotations

import contextlib
import resource
import time
from dataclasses import dataclass

import psutil


def percentile(sorted_vals: list[int], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in [0, 100])."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, round(q / 100.0 * len(sorted_vals) + 0.5) - 1))
    return float(sorted_vals[k])


def latency_summary_ms(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)
    ms = 1e-6
    return {
        "samples": float(len(s)),
        "p50_ms": percentile(s, 50) * ms,
        "p90_ms": percentile(s, 90) * ms,
        "p99_ms": percentile(s, 99) * ms,
        "p999_ms": percentile(s, 99.9) * ms,
        "max_ms": (s[-1] * ms) if s else float("nan"),
        "mean_ms": (sum(s) / len(s) * ms) if s else float("nan"),
    }


def own_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class ServerProbe:
    """CPU seconds and RSS of the server process tree (pid + descendants)."""

    def __init__(self, pid: int | None) -> None:
        self.proc: psutil.Process | None = psutil.Process(pid) if pid else None

    def _tree(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            return [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return []

    def cpus(self) -> set[int] | None:
        """CPUs the server is pinned to, or None when unpinned / unknown."""
        if self.proc is None:
            return None
        try:
            cpus = set(self.proc.cpu_affinity() or [])
        except (psutil.Error, AttributeError):
            return None
        return cpus if cpus and len(cpus) < (psutil.cpu_count() or 0) else None

    def cpu_s(self) -> float:
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the tree: system is mostly the socket syscalls."""
        user = system = 0.0
        for p in self._tree():
            try:
                ct = p.cpu_times()
                user += ct.user
                system += ct.system
            except psutil.Error:
                pass
        return user, system

    def rss(self) -> int:
        total = 0
        for p in self._tree():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total


CoreTimes = list[tuple[float, float]]  # per CPU: (total, not-busy) seconds


def core_times() -> CoreTimes:
    """Per-CPU (total, idle+iowait). Busy therefore includes softirq and steal, which
    getrusage does not charge to the loadgen but which do use up its core."""
    out: CoreTimes = []
    for ct in psutil.cpu_times(percpu=True):
        total = sum(ct)
        out.append((total, ct.idle + getattr(ct, "iowait", 0.0)))
    return out


def cores_busy_pct(a: CoreTimes, b: CoreTimes, cpus: set[int] | None) -> float:
    """Average busy % of ``cpus`` (all CPUs if None) between two samples."""
    idx = sorted(cpus) if cpus else list(range(min(len(a), len(b))))
    tot = sum(b[i][0] - a[i][0] for i in idx if i < len(a) and i < len(b))
    idle = sum(b[i][1] - a[i][1] for i in idx if i < len(a) and i < len(b))
    return 100.0 * (tot - idle) / tot if tot > 0 else float("nan")


def own_cpus() -> set[int] | None:
    """CPUs this process is pinned to, or None when it may use all of them."""
    try:
        mine = set(psutil.Process().cpu_affinity() or [])
    except (psutil.Error, AttributeError):
        return None
    return mine if mine and len(mine) < (psutil.cpu_count() or 0) else None


@dataclass
class Snapshot:
    wall: float
    received: int
    own_cpu: float
    server_cpu: float
    cores: CoreTimes
    server_sys: float = 0.0


def snapshot(received: int, probe: ServerProbe) -> Snapshot:
    user, system = probe.cpu_split()
    return Snapshot(time.perf_counter(), received, own_cpu_s(), user + system, core_times(),
                    system)


def window_metrics(
    a: Snapshot, b: Snapshot, server_cpus: set[int] | None = None
) -> dict[str, float]:
    dt = max(1e-9, b.wall - a.wall)
    out = {
        "window_s": dt,
        "deliveries_per_s": (b.received - a.received) / dt,
        "loadgen_cpu_pct": 100.0 * (b.own_cpu - a.own_cpu) / dt,
        "server_cpu_pct": 100.0 * (b.server_cpu - a.server_cpu) / dt,
    }
    delivered = b.received - a.received
    if delivered > 0:  # CPU per delivery: the fair figure when the loadgen is the limit
        out["server_cpu_us_per_delivery"] = 1e6 * (b.server_cpu - a.server_cpu) / delivered
        out["server_sys_us_per_delivery"] = 1e6 * (b.server_sys - a.server_sys) / delivered
        # user = what the server's own code costs; sys is mostly the socket syscalls,
        # charged alike to every server making the same writes (the floor of the total)
        out["server_user_us_per_delivery"] = (out["server_cpu_us_per_delivery"]
                                              - out["server_sys_us_per_delivery"])
        out["loadgen_cpu_us_per_delivery"] = 1e6 * (b.own_cpu - a.own_cpu) / delivered
    mine = own_cpus()
    if mine is not None:
        out["loadgen_core_busy_pct"] = cores_busy_pct(a.cores, b.cores, mine)
    if server_cpus is not None:
        out["server_core_busy_pct"] = cores_busy_pct(a.cores, b.cores, server_cpus)
    return out
