"""What one idle subscribed connection holds, by allocation site and by object (issue 20).

    python bench/idle_breakdown.py [--conns 2000] [--mode plain|v1|cf] [--top 25]

Runs the server in this process (``bench/cf_app`` on uvloop, keepalive off) with
tracemalloc on, opens `--conns` idle subscribers from client processes
(bench/idle_client.py, as bench/idle_bench.py does) after a warm-up, and prints:

* the tracemalloc difference (after - before) per connection, grouped by the
  allocating line (its first frame inside pubsocket, websockets, asyncio or uvloop);
* ``sys.getsizeof`` of each object one connection owns: the `WSConnection`, websockets'
  `Protocol` (its ``__dict__``, `StreamReader`, parser generator, lists, UUID), the
  session and its parts, the topic's subscriber entry, the uvloop transport.

The totals differ from bench/idle_bench.py's RSS figure by the allocator's overhead
(malloc/pymalloc headers, fragmentation) and what tracemalloc cannot see (libuv's own
allocations made outside the Python allocators, if any).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from idle_bench import hold, raise_nofile

ROOT = Path(__file__).resolve().parent.parent
KEEP = ("pubsocket", "websockets", "asyncio", "uvloop")


def size_of(obj: Any) -> int:
    """`sys.getsizeof` of `obj` plus its instance ``__dict__`` when it has one."""
    size = sys.getsizeof(obj)
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        size += sys.getsizeof(d)
    return size


def site(trace: tracemalloc.Traceback) -> str:
    """The innermost frame in our code or the libraries we run on."""
    for frame in reversed(trace):  # most recent first
        if any(k in frame.filename for k in KEEP):
            short = frame.filename.split("site-packages/")[-1].split("/src/")[-1]
            return f"{short}:{frame.lineno}"
    return f"{trace[0].filename.rsplit('/', 1)[-1]}:{trace[0].lineno}"


def by_site(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot,
            conns: int, top: int) -> None:
    diff: dict[str, list[int]] = {}
    for stat in after.compare_to(before, "traceback"):
        entry = diff.setdefault(site(stat.traceback), [0, 0])
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    total = sum(v[0] for v in diff.values())
    print(f"\ntracemalloc: {total / conns:,.0f} B per connection in all; by allocating line:")
    for where, (size, count) in sorted(diff.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {size / conns:8,.0f} B  {count / conns:5.1f} blocks  {where}")


def objects(conn: Any) -> None:
    """`sys.getsizeof` of what one connection owns (shared objects excluded)."""
    proto = conn._live  # None: parked (server/frames.py `park`)
    rows: list[tuple[str, int]] = [
        ("WSConnection (slotted)", sys.getsizeof(conn)),
        ("uvloop TCPTransport", sys.getsizeof(conn._transport)),
    ]
    for name in ("_out", "_inbox", "_assembly", "wires", "access"):
        value = getattr(conn, name, None)
        if value is not None and name != "wires":
            rows.append((f"  conn.{name}", size_of(value)))
    if proto is None:
        rows.append(("websockets Protocol: parked, shared parameters", 0))
    else:
        rows.append(("websockets Protocol object + __dict__", size_of(proto)))
    for name, value in (vars(proto) if proto is not None else {}).items():
        if name in ("logger", "side", "_state", "extensions") or value is None:
            continue
        if isinstance(value, bool | int | float):
            continue
        extra = ""
        if name == "id":
            extra = " (+ its int)"
            n = size_of(value) + sys.getsizeof(value.int)
        elif name == "reader":
            n = size_of(value) + sys.getsizeof(value.buffer)
            extra = " (+ its bytearray)"
        elif name == "parser":
            frames = 0
            gen: Any = value
            n = 0
            while gen is not None:  # the generator and every generator it delegates to
                n += sys.getsizeof(gen)
                frames += 1
                gen = getattr(gen, "gi_yieldfrom", None)
            extra = f" ({frames} suspended generators)"
        else:
            n = size_of(value)
        rows.append((f"  proto.{name}{extra}", n))
    session = conn._listener
    if session is not None:
        rows.append((f"{type(session).__name__} (slotted)", size_of(session)))
        for name in getattr(type(session), "__slots__", ()):
            value = getattr(session, name, None)
            if value is None or isinstance(value, bool | int | float | str):
                continue
            if name in ("hub", "settings", "codec", "authenticator", "peer"):
                continue
            rows.append((f"  session.{name}", size_of(value)))
        hub = session.hub
        for topic in session.topics:
            rows.append((f"  topic {topic!r} record in hub", 0))
            _ = hub
    width = max(len(r[0]) for r in rows)
    print("\none connection's objects (sys.getsizeof; shared objects excluded):")
    for label, n in rows:
        print(f"  {label:{width}} {n:6,} B")


async def serve_and_measure(args: argparse.Namespace) -> None:
    from pubsocket.config import Settings
    from pubsocket.server.runner import Server
    from pubsocket.web import load_app

    settings = Settings.from_env(env_file=None, ping_interval=0.0, rate_limit=0.0,
                                 max_connections=0, log_level="WARNING")
    app = load_app(ROOT / "bench" / "cf_app", settings)
    server = Server(app, "127.0.0.1", 0)
    await server.start()
    try:
        assert server.state is not None
        warm = await hold(server.port, args.mode, 200, 1, args.topics, "chat:warm-")
        await warm.stop()
        await asyncio.sleep(1.0)
        gc.collect()
        before = tracemalloc.take_snapshot()
        clients = await hold(server.port, args.mode, args.conns, 2, args.topics, "chat:idle-")
        await asyncio.sleep(1.0)
        gc.collect()
        after = tracemalloc.take_snapshot()
        by_site(before, after, args.conns, args.top)
        conn = next(iter(server.state.websockets))
        objects(conn)
        await clients.stop()
    finally:
        await server.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--mode", choices=("plain", "v1", "cf"), default="plain")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    os.chdir(ROOT)
    raise_nofile(args.conns + 1024)
    tracemalloc.start(25)
    import uvloop
    uvloop.run(serve_and_measure(args))


if __name__ == "__main__":
    main()
