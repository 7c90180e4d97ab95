"""Recovery end to end: real server processes on a real Redis, real sockets cut.

Every test follows one topic with a v1 client that remembers the offset of the last
delivery it processed and, after losing its connection (aborted, a node restarted,
Redis restarted, a 4008 close), subscribes again with ``since``. The checks are the
promise of docs/protocol.md ("Positions and recovery"): every publication exactly once
and in order, or ``recovered: false`` / a gap notice that says what is missing, never a
silent hole. Each test has its own Redis key prefix (or its own Redis), and every wait
is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psutil
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import API_KEY, free_port
from tests.integration.spawn import ROOT, Proc, spawn
from tests.redis_server import RedisProcess

APP = ROOT / "tests/integration/apps/hub"
V1: Any = ["pubsocket.v1"]
FAST = {"PUBSOCKET_RATE_LIMIT": "0", "PUBSOCKET_PUBLISH_BYTE_RATE": "0",
        "PUBSOCKET_HISTORY_SIZE": "1000"}


@pytest.fixture
def url(redis_url: str) -> str:
    """The session's Redis with a key prefix of this test's own."""
    return f"{redis_url}?prefix=rec-{uuid.uuid4().hex[:8]}:"


@contextmanager
def own_redis(binary: str) -> Iterator[RedisProcess]:
    """A throwaway Redis (no persistence) that the test may kill; killed at the end."""
    server = RedisProcess(free_port(), binary).start()
    try:
        yield server
    finally:
        server.kill()


KEY = {"Authorization": f"Bearer {API_KEY}"}  # /metrics needs the API key

def scrape(port: int, name: str) -> float:
    with urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics", headers=KEY), timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(f"pubsocket_{name} "):
                return float(line.split()[1])
    raise AssertionError(f"no pubsocket_{name} in /metrics")


async def metric_becomes(port: int, name: str, ok: Callable[[float], bool],
                         timeout: float = 15.0) -> float:
    """Poll /metrics (bounded) until `name` satisfies `ok`; return the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(scrape, port, name)
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"pubsocket_{name} stayed at {value}"
        await asyncio.sleep(0.1)


class Follower:
    """A v1 client following one topic across reconnects, as the guide's client does.

    `events` holds ("message", offset, data) and ("gap", offset, epoch) in arrival
    order over every connection; `last`/`epoch` are the position it resumes from.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.events: list[tuple[str, int, Any]] = []
        self.acks: list[dict[str, Any]] = []
        self.last = 0
        self.epoch: str | None = None
        self.ws: ClientConnection | None = None

    async def connect(self, port: int, resume: bool = True) -> dict[str, Any]:
        """Connect to `port` and subscribe (with `since` once a position is known)."""
        self.ws = await connect(f"ws://127.0.0.1:{port}/ws/chat", subprotocols=V1)
        cmd: dict[str, Any] = {"action": "subscribe", "topic": self.topic, "id": "s"}
        if resume and self.epoch is not None:
            cmd["since"] = {"offset": self.last, "epoch": self.epoch}
        await self.ws.send(json.dumps(cmd))
        async with asyncio.timeout(10):
            while True:
                reply = json.loads(await self.ws.recv())
                if reply.get("type") == "ack" and reply.get("id") == "s":
                    break
                self._handle(reply)  # pragma: no cover - nothing precedes the ack
        assert reply["topic"] == self.topic
        if "since" in cmd:
            assert "recovered" in reply
            if reply["recovered"]:
                assert (reply["offset"], reply["epoch"]) == (self.last, self.epoch)
        self.acks.append(reply)
        self.last, self.epoch = reply["offset"], reply["epoch"]
        return dict(reply)

    def _handle(self, reply: dict[str, Any]) -> None:
        if reply["type"] == "message":
            assert reply["topic"] == self.topic
            self.events.append(("message", reply["offset"], reply["data"]))
            self.last = reply["offset"]
        elif reply["type"] == "gap":
            assert reply["topic"] == self.topic
            self.events.append(("gap", reply["offset"], reply["epoch"]))
            self.last, self.epoch = reply["offset"], reply["epoch"]
        else:
            raise AssertionError(f"unexpected frame {reply}")

    async def read_until(self, done: Callable[[], bool], timeout: float = 20.0) -> None:
        """Process deliveries until `done()` (bounded; fails on timeout)."""
        assert self.ws is not None
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    self._handle(json.loads(await self.ws.recv()))
        except TimeoutError:
            raise TimeoutError(f"stalled after {self.received} deliveries at offset "
                               f"{self.last}; {self.summary()}") from None

    def summary(self) -> str:
        """Runs of consecutive offsets and the gap notices, in order (failure messages)."""
        parts: list[str] = []
        run: list[int] = []
        for kind, offset, _ in self.events:
            if kind == "message" and run and offset == run[-1] + 1:
                run.append(offset)
                continue
            if run:
                parts.append(f"{run[0]}..{run[-1]}")
            run = [offset] if kind == "message" else []
            if kind == "gap":
                parts.append(f"gap->{offset}")
        if run:
            parts.append(f"{run[0]}..{run[-1]}")
        return "received " + ", ".join(parts)

    async def try_read_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """`read_until`, but False instead of failing when `timeout` passes first."""
        try:
            await self.read_until(done, timeout)
        except TimeoutError:
            return False
        return True

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake (a phone losing network)."""
        assert self.ws is not None
        self.ws.transport.abort()
        self.ws = None

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    @property
    def received(self) -> int:
        return sum(1 for kind, *_ in self.events if kind == "message")

    @property
    def gaps(self) -> list[tuple[str, int, Any]]:
        return [e for e in self.events if e[0] == "gap"]

    def assert_exactly_once(self, first: int, last: int) -> None:
        """Deliveries are offsets `first`..`last` once each, in order, with no gap notice."""
        assert not self.gaps, f"gap notices: {self.gaps}"
        offsets = [off for _, off, _ in self.events]
        assert offsets == list(range(first, last + 1)), _diff(offsets, first, last)

    def assert_no_silent_hole(self, first: int, last: int) -> None:
        """In order, each offset at most once; whatever is missing is covered by a gap
        notice that arrived where the hole is (and delivery continued right after it).
        A notice with a new epoch starts the count again at its offset."""
        expected, epoch = first, self.acks[0]["epoch"]
        for kind, offset, detail in self.events:
            if kind == "message":
                assert offset == expected, f"silent hole or repeat at {offset}, wanted {expected}"
                expected += 1
            else:
                assert detail != epoch or offset >= expected - 1, f"gap {offset} goes backwards"
                expected, epoch = offset + 1, detail
        assert expected == last + 1, f"stream ended at {expected - 1}, wanted {last}"


def _diff(offsets: list[int], first: int, last: int) -> str:
    want = set(range(first, last + 1))
    seen: set[int] = set()
    repeats = sorted({o for o in offsets if o in seen or seen.add(o)})  # type: ignore[func-returns-value]
    return (f"{len(offsets)} deliveries; missing {sorted(want - set(offsets))[:20]}; "
            f"repeated {repeats[:20]}; out of order: {offsets != sorted(offsets)}")


class Publisher:
    """A v1 client publishing `count` messages (data 0..count-1) to `topic`, one every
    `interval` seconds, without waiting for acks; `sent` counts what it sent so far."""

    def __init__(self, port: int, topic: str, count: int, interval: float) -> None:
        self.port, self.topic, self.count, self.interval = port, topic, count, interval
        self.sent = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> list[dict[str, Any]]:
        async with connect(f"ws://127.0.0.1:{self.port}/ws/chat", subprotocols=V1) as ws:
            for i in range(self.count):
                await ws.send(json.dumps({"action": "publish", "topic": self.topic,
                                          "id": i, "data": i}))
                self.sent += 1
                await asyncio.sleep(self.interval)
            acks = []
            async with asyncio.timeout(20):
                while len(acks) < self.count:
                    acks.append(json.loads(await ws.recv()))
        return acks

    async def done(self) -> list[dict[str, Any]]:
        """Wait (bounded) until every publish was acked; fail on any error reply."""
        acks = await asyncio.wait_for(self.task, 60)
        errors = [a for a in acks if a.get("type") != "ack"]
        assert not errors, errors[:3]
        assert [a["id"] for a in acks] == list(range(self.count))
        return acks


async def publish_once(port: int, topic: str, data: Any, cmd_id: str) -> dict[str, Any]:
    """One v1 publish on a fresh connection; its ack or error."""
    async with connect(f"ws://127.0.0.1:{port}/ws/chat", subprotocols=V1) as ws:
        await ws.send(json.dumps({"action": "publish", "topic": topic, "id": cmd_id,
                                  "data": data}))
        async with asyncio.timeout(10):
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("id") == cmd_id:
                    return dict(reply)


# -- 1. a subscriber's connection dies mid-stream -----------------------------------------
async def test_aborted_subscriber_resumes_with_every_message_once(url: str) -> None:
    with spawn(APP, PUBSOCKET_BROKER=url, **FAST) as node:
        follower = Follower("stream")
        await follower.connect(node.port)
        assert follower.last == 0
        publisher = Publisher(node.port, "stream", 300, 0.005)
        await follower.read_until(lambda: follower.received >= 100)
        follower.abort()
        await asyncio.sleep(0.2)
        assert publisher.sent < 300, "the publisher should still be publishing"
        ack = await follower.connect(node.port)
        assert ack["recovered"] is True
        await follower.read_until(lambda: follower.last >= 300)
        await publisher.done()
        follower.assert_exactly_once(1, 300)
        assert [d for kind, _, d in follower.events if kind == "message"] == list(range(300))
        assert await asyncio.to_thread(scrape, node.port, "recoveries_total") == 1
        assert await asyncio.to_thread(scrape, node.port, "gaps_total") == 0
        await follower.close()


# -- 2. the same across nodes ------------------------------------------------------------
async def test_subscriber_resumes_on_the_other_node(url: str) -> None:
    with spawn(APP, PUBSOCKET_BROKER=url, **FAST) as a, \
            spawn(APP, PUBSOCKET_BROKER=url, **FAST) as b:
        follower = Follower("stream")
        await follower.connect(b.port)
        publisher = Publisher(a.port, "stream", 400, 0.005)
        # B -> A (A has no subscriber of the topic yet: the recovery also positions it),
        # then A -> B (B dropped the topic when its last subscriber left).
        for cut, node in ((100, a), (200, b)):
            await follower.read_until(lambda cut=cut: follower.received >= cut)  # type: ignore[misc]
            follower.abort()
            await asyncio.sleep(0.1)
            assert publisher.sent < 400
            assert (await follower.connect(node.port))["recovered"] is True
        await follower.read_until(lambda: follower.last >= 400)
        await publisher.done()
        follower.assert_exactly_once(1, 400)
        await follower.close()


# -- 3. the subscriber's node restarts on the same Redis --------------------------------
async def test_restarted_node_recovers_from_the_same_redis(url: str) -> None:
    with spawn(APP, PUBSOCKET_BROKER=url, **FAST) as a, ExitStack() as stack:
        first: Proc = stack.enter_context(spawn(APP, PUBSOCKET_BROKER=url, **FAST))
        follower = Follower("stream")
        await follower.connect(first.port)
        publisher = Publisher(a.port, "stream", 300, 0.01)
        await follower.read_until(lambda: follower.received >= 50)
        old_ws, follower.ws = follower.ws, None  # read nothing more from it
        stack.close()  # SIGTERM, wait for exit
        assert first.popen.returncode is not None
        assert old_ws is not None
        await asyncio.wait_for(old_ws.wait_closed(), 10)
        second = stack.enter_context(spawn(APP, PUBSOCKET_BROKER=url, **FAST))
        assert second.port != first.port
        missed_at_least = publisher.sent - follower.last
        assert missed_at_least > 0 and publisher.sent < 300
        ack = await follower.connect(second.port)
        assert ack["recovered"] is True
        await follower.read_until(lambda: follower.last >= 300)
        await publisher.done()
        follower.assert_exactly_once(1, 300)
        assert await asyncio.to_thread(scrape, second.port, "recoveries_total") == 1
        await follower.close()


# -- 4. Redis dies and comes back empty ---------------------------------------------------
async def test_redis_restarted_without_persistence_is_reported_not_replayed(
        redis_server_binary: str) -> None:
    with own_redis(redis_server_binary) as server, \
            spawn(APP, PUBSOCKET_BROKER=server.url, PUBSOCKET_LOG_LEVEL="INFO", **FAST) as node:
        follower = Follower("t")
        await follower.connect(node.port)
        for i in range(5):
            assert (await publish_once(node.port, "t", i, f"p{i}"))["offset"] == i + 1
        await follower.read_until(lambda: follower.last >= 5, 10)
        old = {"offset": follower.last, "epoch": follower.epoch}
        assert await asyncio.to_thread(scrape, node.port, "broker_healthy") == 1

        server.kill()
        await metric_becomes(node.port, "broker_healthy", lambda v: v == 0)
        assert (await publish_once(node.port, "t", "down", "pd"))["code"] == "broker_unavailable"
        server.start()  # same port, no persistence: every key is gone
        await metric_becomes(node.port, "broker_healthy", lambda v: v == 1)

        # The follower that stayed connected hears about the new epoch (a gap notice)
        # before any publication of it, never a silent switch. Publishes acked before the
        # node's subscription is back may be covered by that notice: publish until one
        # is delivered (bounded in count and time).
        deadline = time.monotonic() + 15
        for n in range(50):
            reply = await publish_once(node.port, "t", f"new{n}", f"n{n}")
            if reply["type"] == "ack" and await follower.try_read_until(
                    lambda n=n: follower.events[-1][2] == f"new{n}", 1.0):  # type: ignore[misc]
                break
            assert time.monotonic() < deadline, f"no delivery after the restart: {follower.events}"
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no delivery after the restart")
        after = follower.events[5:]
        assert after[0][0] == "gap", after
        assert after[0][2] != old["epoch"]
        follower.assert_no_silent_hole(1, follower.last)

        # A client coming back with its old position: recovered false, nothing replayed.
        late = Follower("t")
        late.last, late.epoch = old["offset"], old["epoch"]
        ack = await late.connect(node.port)
        assert ack["recovered"] is False
        assert ack["epoch"] not in (old["epoch"], "")
        top = ack["offset"]
        assert (await publish_once(node.port, "t", "live", "pl"))["offset"] == top + 1
        await late.read_until(lambda: late.received >= 1, 10)
        assert late.events == [("message", top + 1, "live")]
        assert await asyncio.to_thread(scrape, node.port, "recovery_failures_total") == 1
        await follower.close()
        await late.close()
        assert node.popen.poll() is None  # the node never crashed
        assert node.popen.stdout is not None
        log = node.popen.stdout.read() or b""
        assert b"broker lost" in log and b"broker regained" in log


# -- 5. one node's Redis subscription is cut while another node publishes ---------------
async def test_killed_pubsub_link_is_filled_from_history(redis_server_binary: str) -> None:
    with own_redis(redis_server_binary) as server, \
            spawn(APP, PUBSOCKET_BROKER=server.url, **FAST) as a, \
            spawn(APP, PUBSOCKET_BROKER=server.url, **FAST) as b:
        follower = Follower("stream")
        await follower.connect(b.port)
        publisher = Publisher(a.port, "stream", 300, 0.005)
        await follower.read_until(lambda: follower.received >= 100)
        # Only node B's subscriber link: node A (the publisher's) keeps its own.
        killed = await asyncio.to_thread(kill_pubsub_links_of, b.pid, server.url)
        assert killed == 1
        assert publisher.sent < 300
        await follower.read_until(lambda: follower.last >= 300)
        await publisher.done()
        assert await asyncio.to_thread(scrape, b.port, "broker_reconnects_total") >= 1
        follower.assert_no_silent_hole(1, 300)
        follower.assert_exactly_once(1, 300)  # history holds it all: filled, no notice
        await follower.close()


async def test_every_pubsub_link_killed_acked_publishes_arrive_once(
        redis_server_binary: str) -> None:
    # CLIENT KILL TYPE pubsub cuts every node's subscriber link (each node also follows
    # its control channel), the publisher's node included: while its link is down that
    # node refuses publishes with an error (never acks what it cannot deliver), and
    # every acked publish reaches the follower exactly once, in order.
    with own_redis(redis_server_binary) as server, \
            spawn(APP, PUBSOCKET_BROKER=server.url, **FAST) as a, \
            spawn(APP, PUBSOCKET_BROKER=server.url, **FAST) as b:
        follower = Follower("stream")
        await follower.connect(b.port)
        publisher = Publisher(a.port, "stream", 300, 0.005)
        await follower.read_until(lambda: follower.received >= 100)
        with redis.Redis.from_url(server.url) as admin:
            assert admin.client_kill_filter(_type="pubsub") == 2
        acks = await asyncio.wait_for(publisher.task, 60)
        refused = [r for r in acks if r["type"] != "ack"]
        assert all(r["code"] == "broker_unavailable" for r in refused), refused[:3]
        offsets = [r["offset"] for r in acks if r["type"] == "ack"]
        assert offsets == list(range(1, len(offsets) + 1))
        await follower.read_until(lambda: follower.last >= len(offsets))
        follower.assert_exactly_once(1, len(offsets))
        data = [d for kind, _, d in follower.events if kind == "message"]
        assert data == [r["id"] for r in acks if r["type"] == "ack"]
        with pytest.raises(TimeoutError):  # and nothing else arrives
            await follower.read_until(lambda: False, 0.5)
        await follower.close()


def kill_pubsub_links_of(pid: int, url: str) -> int:
    """CLIENT KILL every subscribed (pub/sub) connection that process `pid` holds to the
    Redis at `url`, found by matching its local ports in CLIENT LIST; how many."""
    with redis.Redis.from_url(url) as admin:
        port = admin.connection_pool.connection_kwargs["port"]
        mine = {f"127.0.0.1:{c.laddr.port}" for c in psutil.Process(pid).net_connections("tcp")
                if c.raddr and c.raddr.port == port}
        targets = [c["id"] for c in admin.client_list(_type="pubsub") if c["addr"] in mine]
        for client_id in targets:
            admin.client_kill_filter(_id=client_id)
    return len(targets)


# -- 6. a slow consumer closed with 4008 resumes -----------------------------------------
class RawV1:
    """A v1 subscriber on a raw socket with a tiny receive buffer that stops reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawV1:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Protocol: pubsocket.v1\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101") and b"pubsocket.v1" in head
        return cls(reader, writer)

    def send(self, obj: dict[str, Any]) -> None:
        payload = json.dumps(obj).encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        self.writer.write(bytes([0x81, 0x80 | len(payload)]) + mask
                          + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    async def frame(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return b0 & 0x0F, await self.reader.readexactly(n)


async def test_slow_consumer_closed_4008_recovers_everything(url: str) -> None:
    data_pad = "x" * 1000
    with spawn(APP, PUBSOCKET_BROKER=url, PUBSOCKET_RATE_LIMIT="0",
               PUBSOCKET_PUBLISH_BYTE_RATE="0", PUBSOCKET_OUTBOUND_BUDGET="65536",
               PUBSOCKET_HISTORY="slow*=20000/120",
               PUBSOCKET_HISTORY_TOPIC_MAX_BYTES="0") as node:
        raw = await RawV1.open(node.port)
        raw.send({"action": "subscribe", "topic": "slow", "id": "s"})
        async with asyncio.timeout(5):
            opcode, body = await raw.frame()
        ack = json.loads(body)
        assert (opcode, ack["type"], ack["offset"]) == (1, "ack", 0)
        epoch = ack["epoch"]
        # The raw client reads nothing more; publish ~1 KB messages until the server
        # gives up on it (bounded), then a few more while it is away.
        total = 0
        async with connect(f"ws://127.0.0.1:{node.port}/ws/chat") as pub:
            for _ in range(20):
                for _ in range(250):
                    await pub.send(json.dumps({"action": "publish", "topic": "slow",
                                               "data": {"i": total, "p": data_pad}}))
                    total += 1
                if await asyncio.to_thread(scrape, node.port, "slow_consumer_closes_total"):
                    break
            else:  # the server may still be working through what was sent: wait (bounded)
                await metric_becomes(node.port, "slow_consumer_closes_total", bool, 20)
            for _ in range(50):
                await pub.send(json.dumps({"action": "publish", "topic": "slow",
                                           "data": {"i": total, "p": data_pad}}))
                total += 1
            # plain mode has no acks: make sure the server took every publish
            await pub.send(json.dumps({"action": "subscribe", "topic": "fence"}))
            await pub.send(json.dumps({"action": "publish", "topic": "fence", "data": 0}))
            assert await asyncio.wait_for(pub.recv(), 10) == "0"

        # What reached the slow client before the close is what it processed.
        processed: list[int] = []
        async with asyncio.timeout(20):
            while True:
                opcode, body = await raw.frame()
                if opcode == 0x8:
                    assert struct.unpack("!H", body[:2])[0] == 4008
                    break
                msg = json.loads(body)
                assert msg["data"]["i"] == msg["offset"] - 1
                processed.append(msg["offset"])
        raw.writer.close()
        assert processed == list(range(1, len(processed) + 1))
        assert len(processed) <= total - 50

        follower = Follower("slow")
        follower.last, follower.epoch = (processed[-1] if processed else 0), epoch
        resume_from = follower.last
        ack = await follower.connect(node.port)
        assert ack["recovered"] is True
        await follower.read_until(lambda: follower.last >= total, 30)
        follower.assert_exactly_once(resume_from + 1, total)
        await follower.close()
