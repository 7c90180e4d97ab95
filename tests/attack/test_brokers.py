"""Findings 3 and 8: what one client can make the brokers keep (issue 15).

3. One connection publishing large messages to many topics as fast as the command rate
   limit lets it grew Redis by 360 MiB in 19 s (kept `history_ttl`, 120 s); a Redis
   out of memory stops every node. Now the connection's publish bytes are charged to a
   bucket (1 MiB/s, burst 4 MiB) before the broker keeps anything, and each topic's
   history is capped in bytes: Redis grows by at most `redis_bound(seconds)`
   (docs/security.md "Brokers"), on the memory broker the server's RSS likewise.
8. Every distinct topic left a record the memory broker's byte cap undercounted ~2.3x:
   50,000 publishes to distinct topics kept far more than the cap. Now the node's real
   growth stays under `PUBSOCKET_HISTORY_MAX_BYTES`.

Each attack runs against a real server process (`harness.attack_server`) while
`harness.measure` watches a bystander's latency and losses and the server's RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.attack.harness import (
    MiB,
    Server,
    attack_server,
    env_for_redis,
    measure,
    token,
)

SECONDS = 10.0  # each attack's run
PACE = 90  # publishes/s: just under the command rate limit (100/s), so it stays connected
MESSAGE = 256 * 1024  # bytes of `data` per publish (the frame limit is 1 MiB)
# The documented defaults (docs/security.md "Brokers"): what one connection may publish.
BYTE_RATE, BYTE_BURST = 1 * MiB, 4 * MiB
COMMAND_RATE, COMMAND_BURST = 100, 200
# Measured on Redis 7.0 (jemalloc): a kept large value costs up to 1.35x its bytes (size
# classes), and a topic's first stream node ~4.6 KiB (the listpack is preallocated).
REDIS_FACTOR, REDIS_PER_TOPIC = 1.35, 4.6 * 1024


def redis_bound(seconds: float) -> float:
    """The most one connection can add to Redis in `seconds` under the defaults."""
    published = BYTE_BURST + BYTE_RATE * seconds
    topics = COMMAND_BURST + COMMAND_RATE * seconds
    return REDIS_FACTOR * published + REDIS_PER_TOPIC * topics


async def flood(server: Server, stop: asyncio.Event, size: int = MESSAGE,
                pace: float = PACE) -> str:
    """One pubsocket.v1 connection publishing `size`-byte messages, each to a new topic,
    `pace` per second until `stop`; returns a note with what the server answered."""
    ws = await _open(server)
    data = "x" * size
    acked = refused = sent = 0
    reader = asyncio.create_task(_count(ws))
    started = time.perf_counter()
    try:
        while not stop.is_set() and sent < pace * 60:
            await ws.send(json.dumps({"action": "publish", "topic": f"room:flood-{sent}",
                                      "data": data, "id": sent}))
            sent += 1
            await asyncio.sleep(max(0.0, started + sent / pace - time.perf_counter()))
    except ConnectionClosed:
        pass
    finally:
        await asyncio.sleep(0.5)  # the last replies
        reader.cancel()
        acked, refused = await _finish(reader)
        await ws.close()
    return f"flood: sent {sent}, acked {acked}, refused {refused}"


async def _open(server: Server) -> ClientConnection:
    return await connect(f"{server.ws}/ws/chat",
                         subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
                         additional_headers={"Authorization": f"Bearer {token()}"},
                         max_size=None, max_queue=None, open_timeout=10)


Counts = tuple[int, int]


async def _count(ws: ClientConnection) -> Counts:
    """(acks, errors) read until the connection ends or the task is cancelled."""
    acked = refused = 0
    try:
        async for raw in ws:
            kind = json.loads(raw).get("type")
            acked += kind == "ack"
            refused += kind == "error"
    except (ConnectionClosed, asyncio.CancelledError):
        pass
    return acked, refused


async def _finish(reader: asyncio.Task[Counts]) -> Counts:
    with contextlib.suppress(asyncio.CancelledError):
        return await reader
    return 0, 0


async def _redis_used(client: Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def test_one_connection_cannot_fill_redis(redis_url: str) -> None:
    """Finding 3 on Redis: `used_memory` grows by at most the documented bound."""
    env = env_for_redis(redis_url)
    prefix = env["PUBSOCKET_BROKER"].rpartition("prefix=")[2]
    client = Redis.from_url(redis_url)
    try:
        async with attack_server(**env) as server:
            before = await _redis_used(client)
            started = time.perf_counter()
            report = await measure(server, flood, name="redis flood", seconds=SECONDS)
            elapsed = time.perf_counter() - started
            growth = await _redis_used(client) - before
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        bound = redis_bound(elapsed)
        report.notes.append(f"Redis +{growth / MiB:.1f} MiB in {elapsed:.1f} s (bound "
                            f"{bound / MiB:.1f} MiB), {len(keys)} keys")
        report.check()
        assert growth <= bound, report.describe()
    finally:
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
        await client.aclose()


async def test_one_connection_cannot_fill_the_memory_broker() -> None:
    """Finding 3 on the memory broker: the server keeps what the connection could pay
    for (plus the frames in flight), well under the 64 MiB node cap."""
    async with attack_server() as server:
        report = await measure(server, flood, name="memory flood", seconds=SECONDS)
    published = BYTE_BURST + BYTE_RATE * SECONDS
    report.check(rss=int(published + 24 * MiB))  # 24 MiB: frames, parse buffers, slack


async def distinct_topics(server: Server, stop: asyncio.Event, count: int = 50_000) -> str:
    """Finding 8: `count` small publishes, each to a topic of its own, pipelined."""
    ws = await _open(server)
    reader = asyncio.create_task(_count(ws))
    sent = 0
    try:
        while sent < count and not stop.is_set():
            for _ in range(100):
                await ws.send(json.dumps({"action": "publish", "topic": f"room:t{sent:06d}",
                                          "data": "hello", "id": sent}))
                sent += 1
            await asyncio.sleep(0.02)  # the bystander gets the loop too
    finally:
        await asyncio.sleep(0.5)
        reader.cancel()
        acked, refused = await _finish(reader)
        await ws.close()
    return f"distinct topics: sent {sent}, acked {acked}, refused {refused}"


async def test_50000_distinct_topics_stay_under_the_node_cap() -> None:
    """Finding 8: with a 16 MiB node cap, 50,000 topics grow the server by less than the
    cap plus the frames in flight (before: the records' real size was ~2.3x counted)."""
    cap = 16 * MiB
    async with attack_server(PUBSOCKET_RATE_LIMIT="0",
                             PUBSOCKET_HISTORY_MAX_BYTES=str(cap)) as server:
        report = await measure(server, distinct_topics, name="50k topics", seconds=40)
    assert "sent 50000" in report.describe(), report.describe()
    report.check(rss=cap + 8 * MiB)
