"""Idle memory per subscribed connection over 10,000 connections (issue 20), per protocol.

    python bench/idle_bench.py [--conns 10000] [--modes plain,v1,cf] [--rounds 1]
                               [--workers 2] [--baselines node,uws] [--node-dir DIR]

For each mode a fresh server process (``pubsocket serve bench/cf_app``: /ws/chat
anonymous, /connection/websocket Centrifuge JSON; keepalive pings off so the raw clients
need not answer them) on a free port:

1. warm up: `--warmup` connections of the mode open, subscribe, and close (first-use
   allocations: imports, caches, the hub's structures), then 1 s of quiet;
2. the server's RSS (psutil, its process tree) before;
3. `--conns` connections from `--workers` client processes (bench/idle_client.py: raw
   sockets, the upgrade, the subscribe, then only reads), over
   `--topics` topics: ``plain`` (/ws/chat, no acks: confirmed by a sentinel published
   to every topic), ``v1`` (subprotocol pubsocket.v1: confirmed by the subscribe ack),
   ``cf`` (Centrifuge connect + subscribe in one frame: confirmed by the subscribe
   reply);
4. `--settle` seconds later, RSS after, and every client checks its connections are
   still open; the figure is (after - before) / conns.

Baselines (`--baselines`): Node ``ws`` (bench/node/server.js) and uWebSockets
(bench/node/uws_server.js) in plain mode, when their files and node_modules are there.
Rounds are interleaved; medians. Target: pubsocket <= 2 KiB per connection in every mode.
Writes bench/results/idle.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import BENCH, ROOT, RunningServer, ServerSpec, pubsocket_spec

RESULTS = BENCH / "results"
TARGET = 2048  # bytes of server RSS per idle subscribed connection, at most
MODES = ("plain", "v1", "cf")
ENV = {"PUBSOCKET_PING_INTERVAL": "0"}
CLIENT = BENCH / "idle_client.py"
SENTINEL_EVERY = 1.0  # seconds between sentinel rounds while plain clients confirm
STEP_TIMEOUT = 120.0  # seconds for any one step (open, confirm, status)


def raise_nofile(need: int) -> None:
    """Raise our soft descriptor limit to `need` (at most the hard limit); the server
    inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(hard, need)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def tree_rss(pid: int) -> int:
    """RSS of `pid` and its children (a Node server is one process; so is ours)."""
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    return sum(int(p.memory_info().rss) for p in procs)


class Clients:
    """`workers` idle_client.py processes holding `count` connections between them."""

    def __init__(self, port: int, mode: str, count: int, workers: int, topics: int,
                 prefix: str) -> None:
        self.args = (port, mode, count, workers, topics, prefix)
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        port, mode, count, workers, topics, prefix = self.args
        share = -(-count // workers)
        for w in range(workers):
            first, n = w * share, min(share, count - w * share)
            if n <= 0:
                break
            self.procs.append(await asyncio.create_subprocess_exec(
                sys.executable, str(CLIENT), "--port", str(port), "--mode", mode,
                "--first", str(first), "--count", str(n), "--topics", str(topics),
                "--prefix", prefix, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE))

    async def expect(self, word: str) -> int:
        """Wait for one `word N` line from every worker; the sum of the Ns."""
        async def one(proc: asyncio.subprocess.Process) -> int:
            assert proc.stdout is not None
            line = (await proc.stdout.readline()).decode().strip()
            if not line.startswith(word + " "):
                raise RuntimeError(f"client worker: {line or 'exited'}")
            return int(line.split()[1])
        return sum(await asyncio.wait_for(asyncio.gather(*map(one, self.procs)),
                                          STEP_TIMEOUT))

    async def alive(self) -> int:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"status\n")
        return await self.expect("alive")

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def sentinels(port: int, topics: int, prefix: str, done: asyncio.Future[int]) -> None:
    """Publish one message to every topic each `SENTINEL_EVERY` s until `done` (plain)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    from idle_client import client_frame, opening
    upgrade, _ = opening("plain", port, prefix + "sentinel", None)
    writer.write(upgrade)
    await reader.readuntil(b"\r\n\r\n")
    while not done.done():
        for k in range(topics):
            body = json.dumps({"action": "publish", "topic": f"{prefix}{k}", "data": 0})
            writer.write(client_frame(body.encode()))
        await writer.drain()
        await asyncio.wait([done], timeout=SENTINEL_EVERY)
    writer.close()


async def hold(port: int, mode: str, count: int, workers: int, topics: int,
               prefix: str) -> Clients:
    """`count` confirmed idle subscribers of `mode` (see the module docstring)."""
    clients = Clients(port, mode, count, workers, topics, prefix)
    await clients.start()
    try:
        opened = await clients.expect("open")
        ready = asyncio.ensure_future(clients.expect("ready"))
        if mode == "plain":
            await sentinels(port, topics, prefix, ready)
        confirmed = await ready
        if opened != count or confirmed != count:
            raise RuntimeError(f"{opened} opened, {confirmed} confirmed of {count}")
    except BaseException:
        await clients.stop()
        raise
    return clients


async def measure(server: RunningServer, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.warmup:
        warm = await hold(server.port, mode, args.warmup, 1, args.topics, "chat:warm-")
        await warm.stop()
        await asyncio.sleep(1.0)
    before = tree_rss(server.pid)
    t0 = time.perf_counter()
    clients = await hold(server.port, mode, args.conns, args.workers, args.topics,
                         "chat:idle-")
    opened_s = time.perf_counter() - t0
    try:
        await asyncio.sleep(args.settle)
        after = tree_rss(server.pid)
        alive = await clients.alive()
    finally:
        await clients.stop()
    if alive != args.conns:
        raise RuntimeError(f"only {alive} of {args.conns} connections still open")
    return {"rss_before": before, "rss_after": after, "open_s": opened_s,
            "per_conn": (after - before) / args.conns}


def specs(args: argparse.Namespace) -> list[tuple[str, str, ServerSpec]]:
    """(label, client mode, server) for every run of a round."""
    app = [sys.executable, "-m", "pubsocket", "serve", "bench/cf_app",
           "--host", "127.0.0.1", "--port", "{port}"]
    out = []
    for mode in args.modes.split(","):
        spec = pubsocket_spec(" ".join(app), {**ENV, **dict(e.split("=", 1)
                                                           for e in args.server_env)})
        out.append((f"pubsocket {mode}", mode, spec))
    node_dir = Path(args.node_dir)
    for name in filter(None, args.baselines.split(",")):
        script, module = {"node": ("server.js", "ws"),
                          "uws": ("uws_server.js", "uwebsockets")}[name]
        if (node_dir / script).exists() and (node_dir / "node_modules" / module).is_dir():
            out.append((name, "plain", ServerSpec(name, ["node", str(node_dir / script)])))
        else:
            print(f"({name}: {node_dir / script} or its node_modules missing, skipped)")
    return out


async def main_async(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for rnd in range(args.rounds):
        for label, mode, spec in specs(args):
            log = RESULTS / "logs" / f"idle-{label.replace(' ', '-')}-{rnd}.log"
            with RunningServer(spec, log) as server:
                result = await measure(server, mode, args)
            runs.setdefault(label, []).append(result)
            print(f"round {rnd + 1} {label:16} {result['per_conn']:8,.0f} B/conn "
                  f"(RSS {result['rss_before'] / 2**20:.1f} -> "
                  f"{result['rss_after'] / 2**20:.1f} MiB, opened in "
                  f"{result['open_s']:.1f} s)", flush=True)
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--conns", type=int, default=10_000)
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--baselines", default="node,uws")
    ap.add_argument("--node-dir", default=str(BENCH / "node"))
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    os.chdir(ROOT)
    raise_nofile(args.conns + args.warmup + 1024)
    runs = asyncio.run(main_async(args))
    print(f"\nidle RSS per subscribed connection, {args.conns:,} connections over "
          f"{args.topics} topics (median of {args.rounds}):")
    table: dict[str, float] = {}
    for label, results in runs.items():
        per = [r["per_conn"] for r in results]
        table[label] = med = statistics.median(per)
        ours = label.startswith("pubsocket")
        verdict = ("  (target <= 2 KiB: " + ("met)" if med <= TARGET else "NOT met)")
                   if ours else "")
        print(f"  {label:16} {med:8,.0f} B  [{', '.join(f'{p:,.0f}' for p in per)}]{verdict}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "idle.json").write_text(json.dumps(
        {"args": vars(args), "median_bytes": table, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
