"""A bystander's publish -> delivery p99 while each attack of tests/attack runs, vs none.

    python bench/attack_bench.py [--rounds 2] [--seconds 6] [--only NAME,...]

Issue 15 ("bounded cost"): under every attack a bystander's p99 stays under 50 ms and
loses nothing, and the server's RSS grows by less than 100 MiB. Each round runs, on a
fresh `pubsocket serve examples/chat` (memory broker) per run, a baseline with no
attack and then every attack of the suite, each measured by `tests/attack/harness.py`
(a pubsocket.v1 bystander publishing 50/s to its own topic, the server's RSS sampled
every 50 ms). It prints, per attack, the median over rounds of the bystander's p99, the
ratio to the same round's baseline, losses and the server's RSS growth, and whether the
issue's bounds held. The attacks are the suite's own functions, not copies.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.attack import test_brokers, test_frames, test_history, test_http  # noqa: E402
from tests.attack.harness import (  # noqa: E402
    P99_LIMIT,
    RSS_LIMIT,
    Report,
    Server,
    attack_server,
    measure,
    token,
)

MiB = 1024 * 1024
Attack = Callable[[Server, asyncio.Event], Awaitable[object]]


async def idle(server: Server, stop: asyncio.Event) -> str:
    await stop.wait()
    return "no attack"


def with_tally(attack: Any) -> Attack:
    """History attacks take a tally; they need the topic's history filled first."""

    async def run(server: Server, stop: asyncio.Event) -> object:
        return await attack(server, stop, collections.Counter())

    return run


def http_flood(request: bytes, seconds: float) -> Attack:
    async def run(server: Server, stop: asyncio.Event) -> str:
        statuses: collections.Counter[int] = collections.Counter()
        await test_http.flood(server, stop, request, seconds, statuses)
        return f"statuses {dict(statuses)}"

    return run


Prepare = Callable[[Server], Awaitable[None]] | None


def attacks(seconds: float) -> dict[str, tuple[Attack, Prepare, dict[str, str]]]:
    """name -> (attack, preparation run before the bystander starts, server settings:
    the suite's own, e.g. the history attacks' large history)."""
    big = test_history.LARGE_HISTORY
    return {
        "history (v1, 64 commands)": (with_tally(test_history.v1_bursts), test_history.fill,
                                      big),
        "history (Centrifuge frame)": (with_tally(test_history.centrifuge_frame),
                                       test_history.fill, big),
        "Centrifuge 1 MB batch frames": (test_frames.batch_frames, None, {}),
        "partial frames before connect": (test_frames.partial_frames, None, {}),
        "publish flood to new topics": (test_brokers.flood, None, {}),
        "HTTP publish flood": (http_flood(test_http.post_publish(
            f"Bearer {token('flooder')}"), seconds), None, {}),
        "HTTP bad-token flood": (http_flood(test_http.post_publish(
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad-signature"), seconds), None, {}),
    }


async def one(name: str, attack: Attack, prepare: Prepare, seconds: float,
              env: dict[str, str] | None = None) -> Report:
    async with attack_server(**(env or {})) as server:
        if prepare is not None:
            await prepare(server)
        return await measure(server, attack, name=name, seconds=seconds)


async def main_async(rounds: int, seconds: float, only: set[str] | None) -> int:
    table = {k: v for k, v in attacks(seconds).items()
             if only is None or any(o.lower() in k.lower() for o in only)}
    results: dict[str, list[tuple[Report, float]]] = {name: [] for name in table}
    for rnd in range(rounds):
        base = await one("baseline", idle, None, seconds)
        base_p99 = base.quantile(0.99)
        print(f"round {rnd}: baseline p99 {base_p99 * 1000:.1f} ms", flush=True)
        for name, (attack, prepare, env) in table.items():
            report = await one(name, attack, prepare, seconds, env)
            results[name].append((report, base_p99))
            print(f"  {report.describe()}", flush=True)
    print("\nattack | bystander p99 ms (median) | vs baseline | lost | RSS growth MiB | "
          "bounds (p99 < 50 ms, no loss, RSS < 100 MiB)")
    failed = 0
    for name, runs in results.items():
        p99 = statistics.median(r.quantile(0.99) for r, _ in runs)
        ratio = statistics.median(r.quantile(0.99) / max(b, 1e-4) for r, b in runs)
        lost = max(r.lost for r, _ in runs)
        growth = max(r.growth for r, _ in runs)
        ok = p99 < P99_LIMIT and lost == 0 and growth < RSS_LIMIT
        failed += not ok
        print(f"{name} | {p99 * 1000:.1f} | {ratio:.1f}x | {lost} | {growth / MiB:.1f} | "
              f"{'MET' if ok else 'MISSED'}")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--only", default=None, help="comma-separated name fragments")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    return asyncio.run(main_async(args.rounds, args.seconds, only))


if __name__ == "__main__":
    sys.exit(main())
