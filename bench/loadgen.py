"""pubsocket load generator (picows clients on uvloop), one scenario per process.

    python bench/loadgen.py fanout1000 --url ws://127.0.0.1:8080/ws/chat \
        [--server-pid PID] [--quick] [--set duration=3 --set subs=500] [--timeout 180]

BENCH_PUB_TOKEN / BENCH_SUB_TOKEN in the environment: the publisher's / the
subscribers' token (Bearer header on the seed endpoint, the connect command's token on
the Centrifuge one) for a secured server; unset, every client is anonymous.

Prints one JSON object on stdout: {"scenario", "ok", "metrics" | "error", "elapsed_s"}.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys
import time
import traceback
from typing import Any

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lg_client
from lg_stats import ServerProbe
from scenarios import SCENARIOS, Ctx


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def parse_sets(items: list[str], scenario: str) -> dict[str, float]:
    """``key=value`` applies to every scenario, ``scenario.key=value`` to one."""
    out: dict[str, float] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        scope, dot, name = key.strip().rpartition(".")
        if dot and scope != scenario:
            continue
        out[name] = float(val)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = Ctx(
        url=args.url,
        probe=ServerProbe(args.server_pid),
        quick=args.quick,
        opts=parse_sets(args.set, args.scenario),
        pub_url=args.pub_url,
        # tokens come from the environment, not argv (ps shows argv to every user)
        pub_token=os.environ.get("BENCH_PUB_TOKEN") or None,
        sub_token=os.environ.get("BENCH_SUB_TOKEN") or None,
    )
    lg_client.USE_AIOFASTNET = bool(ctx.get("aiofastnet", 0.0))
    async with asyncio.timeout(args.timeout):
        metrics = await SCENARIOS[args.scenario](ctx)
    await asyncio.sleep(0.05)  # let aborts flush before the loop closes
    return metrics


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--url", required=True)
    ap.add_argument("--server-pid", type=int, default=None)
    ap.add_argument("--pub-url", default=None, help="publish through this node instead")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--timeout", type=float, default=180.0, help="hard cap on the scenario")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    nofile = raise_nofile()
    t0 = time.perf_counter()
    result: dict[str, Any] = {"scenario": args.scenario, "nofile": nofile}
    try:
        import uvloop

        result["metrics"] = uvloop.run(run(args))
        result["ok"] = True
    except BaseException as exc:  # report, don't hang: the runner reads our JSON
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=8)
    result["elapsed_s"] = time.perf_counter() - t0
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
