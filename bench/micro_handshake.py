"""Per-call cost of the opening-handshake check: websockets' `ServerProtocol.accept()`
against pubsocket's `accept_handshake` (the numbers in docs/design.md).

    .venv/bin/python bench/micro_handshake.py [--calls 20000] [--rounds 5]

Prints the median over rounds of the mean µs per call for each, and the machine
(`os.cpu_count()`, CPU model from /proc/cpuinfo).
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from websockets.datastructures import Headers as WSHeaders
from websockets.http11 import Request
from websockets.server import ServerProtocol

from pubsocket.server.handshake import accept_handshake
from pubsocket.web.request import Headers

KEY = base64.b64encode(b"0123456789abcdef").decode()
PAIRS = [("Host", "127.0.0.1:7145"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
         ("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13"),
         ("Sec-WebSocket-Protocol", "pubsocket.v1")]


def websockets_accept() -> None:
    protocol = ServerProtocol(subprotocols=["pubsocket.v1"])  # type: ignore[list-item]
    protocol.accept(Request("/ws/chat", WSHeaders(PAIRS)))


def pubsocket_accept() -> None:
    accept_handshake("GET", Headers(PAIRS), ("pubsocket.v1",))


def per_call_us(fn: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}")
    for name, fn in (("websockets ServerProtocol.accept", websockets_accept),
                     ("pubsocket accept_handshake", pubsocket_accept)):
        fn()  # warm up imports and caches
        rounds = [per_call_us(fn, args.calls) for _ in range(args.rounds)]
        print(f"{name:34s} {statistics.median(rounds):8.1f} µs per call")


if __name__ == "__main__":
    main()
