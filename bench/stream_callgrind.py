"""Instructions per fan-out delivery, http_stream vs WebSocket, under callgrind.

    PYTHONPATH=src:. python bench/stream_callgrind.py [--subscribers 200] [--messages 400]

bench/fallback_bench.py's fan-out (the same app, settings and clients: pubsocket.v1
http_stream subscribers vs pubsocket.v1 WebSockets, one WebSocket publisher) with the
server under ``valgrind --tool=callgrind``, twice per transport: `messages` / 4 and
`messages` publications. The difference of the two instruction totals over the
difference of deliveries is the instructions per delivery of the publish phase alone
(start-up, handshakes and shutdown cancel out), repeatable on a busy machine.

Valgrind slows the server ~50x, so more publications wait in each read than in a real
run and the hub's per-tick batches are longer: compare transports and trees with it,
and read the absolute per-delivery CPU from bench/fallback_bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from fallback_bench import ENV, fanout  # noqa: E402
from run import RESULTS, raise_nofile  # noqa: E402
from tests.attack.harness import CHAT, Server  # noqa: E402
from tests.conftest import API_KEY, SECRET  # noqa: E402
from tests.integration.spawn import Proc  # noqa: E402

READY = re.compile(rb"serving on http://[\d.]+:(\d+)")
TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.M)


def under_callgrind(out: Path) -> Callable[[], AbstractAsyncContextManager[Server]]:
    """A `fanout` server factory: examples/chat under callgrind, writing `out`."""

    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[Server]:
        popen = _launch(out)
        try:
            yield Server(Proc(popen, await asyncio.to_thread(_port, popen, 300.0)))
        finally:
            if popen.poll() is None:  # SIGTERM: the server exits, callgrind writes `out`
                popen.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(popen.wait, 180)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait(10)
            if popen.stdout:
                popen.stdout.close()

    return start


def _launch(out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "API_KEY": API_KEY, "SECRET": SECRET,
           "PUBSOCKET_LOG_LEVEL": "WARNING", **ENV}
    return subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         "-m", "pubsocket", "serve", str(CHAT), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _port(popen: subprocess.Popen[bytes], timeout: float) -> int:
    assert popen.stdout is not None
    os.set_blocking(popen.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += popen.stdout.read() or b""
        found = READY.search(seen)
        if found:
            return int(found.group(1))
        if popen.poll() is not None:
            raise RuntimeError(f"server exited: {seen.decode(errors='replace')[-800:]}")
        time.sleep(0.1)
    raise RuntimeError("server not ready under valgrind")


async def instructions(mode: str, subscribers: int, messages: int, out: Path) -> float:
    """Instructions per delivery of `mode`'s publish phase (module docstring)."""
    totals = []
    for count in (messages // 4, messages):
        path = out.with_suffix(f".{mode}.{count}.out")
        await fanout(mode, subscribers, count, under_callgrind(path))
        found = TOTAL.search(path.read_text(errors="replace"))
        if found is None:
            raise RuntimeError(f"no instruction total in {path}")
        totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / (subscribers * (messages - messages // 4))


async def main(args: argparse.Namespace, out: Path) -> dict[str, float]:
    res = {mode: await instructions(mode, args.subscribers, args.messages, out)
           for mode in ("websocket", "http_stream")}
    for mode, value in res.items():
        print(f"{mode:<12} {value:,.0f} instructions/delivery")
    return res


def cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=200)
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--out", default=str(RESULTS / "callgrind" / "stream_fanout"))
    args = ap.parse_args()
    raise_nofile()
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    res = asyncio.run(main(args, out))
    print(json.dumps({**res, "config": vars(args), "tree": str(ROOT)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
