"""A cheap idle-subscriber client process for bench/idle_bench.py (raw sockets, no library).

    python bench/idle_client.py --port P --mode plain|v1|cf --first 0 --count 5000

Opens `count` WebSocket connections to 127.0.0.1:P in bounded concurrent batches. Each
connection writes its upgrade request, and its subscribe frame once the 101 is in (not
every server takes frames sent behind the upgrade), then only reads: until it is *confirmed*
(v1: the subscribe ack; cf: the reply to the subscribe command, id 2; plain, which has
no acks: the first delivery, the sentinel the driver publishes to every topic), and
after that it drops what it reads. Client frames are masked with the all-zero key (RFC
6455 allows any key), so nothing is rewritten per byte.

Talks to the driver over stdio, one line each way:
  out ``open N``: every connection got its 101 (and, except plain, is confirmed);
  out ``ready N``: every connection is confirmed; ``alive N`` answers ``status`` in;
  out ``error ...`` and exit 1 on any failure. Closing stdin ends the process.
Bounded: every wait has a deadline; RLIMIT_NOFILE is raised to what it needs, at most
the hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import sys
from typing import Any

PATHS = {"plain": "/ws/chat", "v1": "/ws/chat", "cf": "/connection/websocket"}
BATCH = 200  # connections opened concurrently
OPEN_TIMEOUT = 60.0  # seconds for all connections of this process to open
READY_TIMEOUT = 90.0  # seconds for every connection to be confirmed


def client_frame(payload: bytes) -> bytes:
    """One masked text frame (mask key 0000: the payload goes as is)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        raise ValueError("frame too large")
    return head + b"\0\0\0\0" + payload


def opening(mode: str, port: int, topic: str, token: str | None) -> tuple[bytes, bytes]:
    """The upgrade request and the subscribe frame of one connection."""
    key = base64.b64encode(os.urandom(16)).decode()
    headers = [f"GET {PATHS[mode]} HTTP/1.1", f"Host: 127.0.0.1:{port}",
               "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
               "Sec-WebSocket-Version: 13"]
    if mode == "v1":
        headers.append("Sec-WebSocket-Protocol: pubsocket.v1")
    if token and mode != "cf":
        headers.append(f"Authorization: Bearer {token}")
    if mode == "cf":
        connect = f'{{"token":"{token}"}}' if token else "{}"
        body = (f'{{"id":1,"connect":{connect}}}\n'
                f'{{"id":2,"subscribe":{{"channel":"{topic}"}}}}')
    else:
        body = f'{{"action":"subscribe","topic":"{topic}","id":1}}'
    return "\r\n".join(headers).encode() + b"\r\n\r\n", client_frame(body.encode())


class Idle(asyncio.Protocol):
    """One connection: reads the 101, then frames until confirmed, then discards.

    `opened` is set at the 101 when `marker` is None (plain: no ack, confirmed by the
    first delivery), else once a frame holding `marker` arrived (then it is confirmed).
    """

    __slots__ = ("_buf", "_hello", "alive", "confirmed", "marker", "opened", "transport")

    def __init__(self, hello: tuple[bytes, bytes], marker: bytes | None,
                 opened: asyncio.Future[None]) -> None:
        self._hello: tuple[bytes, bytes] | None = hello
        self.marker = marker
        self.opened = opened
        self._buf: bytearray | None = bytearray()
        self.confirmed = False
        self.alive = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.alive = True
        assert self._hello is not None
        transport.write(self._hello[0])

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        if buf is None:
            return  # confirmed: an idle subscriber reads and drops
        buf += data
        if self._hello is not None:  # waiting for the 101
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(bytes(buf[:80]).decode("latin-1")))
                self._buf = None
                return
            del buf[:end + 4]
            self.transport.write(self._hello[1])  # subscribe once upgraded
            self._hello = None
            if self.marker is None:
                self.opened.set_result(None)
        while len(buf) >= 2:  # server frames are unmasked
            n, start = buf[1] & 0x7F, 2
            if n >= 126:
                start = 4 if n == 126 else 10
                if len(buf) < start:
                    return
                n = int.from_bytes(buf[2:start], "big")
            if len(buf) < start + n:
                return
            payload = bytes(buf[start:start + n])
            del buf[:start + n]
            if self.marker is None or self.marker in payload:
                self.confirmed = True
                self._buf = None
                if not self.opened.done():
                    self.opened.set_result(None)
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(f"connection lost: {exc}"))


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    marker = {"v1": b'"ack"', "cf": b'"id":2', "plain": None}[args.mode]
    conns: list[Idle] = []
    deadline = loop.time() + OPEN_TIMEOUT
    for first in range(args.first, args.first + args.count, BATCH):
        batch = []
        for i in range(first, min(args.first + args.count, first + BATCH)):
            topic = f"{args.prefix}{i % args.topics}"
            opened: asyncio.Future[None] = loop.create_future()
            conn = Idle(opening(args.mode, args.port, topic, args.token), marker, opened)
            conns.append(conn)
            batch.append(loop.create_connection(lambda c=conn: c, "127.0.0.1", args.port))
            batch.append(opened)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError("connections did not open in time")
        await asyncio.wait_for(asyncio.gather(*batch), remaining)
    say(f"open {len(conns)}")
    deadline = loop.time() + READY_TIMEOUT
    while not all(c.confirmed for c in conns):
        if loop.time() > deadline:
            raise TimeoutError(f"{sum(not c.confirmed for c in conns)} never confirmed")
        if not all(c.alive for c in conns):
            raise RuntimeError(f"{sum(not c.alive for c in conns)} connections dropped")
        await asyncio.sleep(0.1)
    say(f"ready {len(conns)}")
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"status":
            say(f"alive {sum(c.alive for c in conns)}")
    for conn in conns:
        if conn.transport is not None:
            conn.transport.abort()


def raise_nofile(need: int) -> None:
    """Raise the soft descriptor limit to `need` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(hard, need)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=sorted(PATHS), required=True)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--topics", type=int, default=1000)
    ap.add_argument("--prefix", default="chat:idle-")
    ap.add_argument("--token", default=None)
    args = ap.parse_args()
    raise_nofile(args.count + 256)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    try:
        asyncio.run(run(args))
    except Exception as exc:  # report to the driver, one line
        say(f"error {type(exc).__name__}: {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
