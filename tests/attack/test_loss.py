"""Finding 7: a node whose Redis link drops must not lose messages of topics without
history silently (issue 15).

Two real server processes share one real Redis: the publisher node talks to it
directly, the subscriber node through a TCP proxy the test controls, so only the
subscriber node's link is cut (what a network blip or a Redis failover does to one
node). A publisher client keeps publishing to a topic without history on the
publisher node while the link is cut and after it comes back; every publish is acked,
so the subscriber node misses what was published while its link was down. Each
subscriber on the subscriber node (pubsocket.v1, plain, Centrifuge) must then either
have received every acked message or have been told: a v1 ``gap`` notice, a Centrifuge
``unsubscribe`` push with the resubscribe code 2500, or a plain close 1012.

A second test kills Redis itself and restarts it: the same rule through a real outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.centrifuge_js.proxy import proxy_to
from tests.conftest import free_port
from tests.integration.spawn import ROOT, Proc, spawn
from tests.redis_server import RedisProcess

APP = ROOT / "tests/attack/apps/loss"
TOPIC = "feed:ticks"
NO_HISTORY = {"PUBSOCKET_HISTORY": "feed:*=off"}


@contextlib.contextmanager
def redis_on(port: int, binary: str) -> Iterator[RedisProcess]:
    server = RedisProcess(port, binary).start()
    try:
        yield server
    finally:
        server.kill()


@dataclass
class Watch:
    """What one subscriber saw: data of deliveries, whether it was told of a loss."""

    received: set[int] = field(default_factory=set)
    told: list[Any] = field(default_factory=list)
    closed: int | None = None


async def watch_v1(ws: ClientConnection, seen: Watch) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("type") == "message" and msg.get("topic") == TOPIC:
                seen.received.add(msg["data"])
            elif msg.get("type") == "gap" and msg.get("topic") == TOPIC:
                seen.told.append(msg)


async def watch_plain(ws: ClientConnection, seen: Watch) -> None:
    try:
        async for raw in ws:
            data = json.loads(raw)
            if isinstance(data, int):
                seen.received.add(data)
    except ConnectionClosed:
        pass
    seen.closed = ws.close_code


async def watch_centrifuge(ws: ClientConnection, seen: Watch) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            for line in str(raw).splitlines():
                push = json.loads(line).get("push") if line.strip() else None
                if not push or push.get("channel") != TOPIC:
                    continue
                if "pub" in push:
                    seen.received.add(push["pub"]["data"])
                elif "unsubscribe" in push:
                    seen.told.append(push["unsubscribe"])


async def subscribers(node: Proc) -> AsyncIterator[tuple[str, ClientConnection,
                                                          Watch, asyncio.Task[None]]]:
    base = f"ws://127.0.0.1:{node.port}"
    v1 = await connect(f"{base}/ws/chat", subprotocols=["pubsocket.v1"])  # type: ignore[list-item]
    await v1.send(json.dumps({"action": "subscribe", "topic": TOPIC, "id": "s"}))
    async with asyncio.timeout(5):
        assert json.loads(await v1.recv())["type"] == "ack"
    plain = await connect(f"{base}/ws/chat")
    await plain.send(json.dumps({"action": "subscribe", "topic": TOPIC}))
    cf = await connect(f"{base}/connection/websocket")
    await cf.send(json.dumps({"id": 1, "connect": {}}) + "\n"
                  + json.dumps({"id": 2, "subscribe": {"channel": TOPIC}}))
    async with asyncio.timeout(5):
        replies: list[Any] = []
        while len(replies) < 2:
            replies += [json.loads(line) for line in str(await cf.recv()).splitlines()]
        assert [r.get("id") for r in replies] == [1, 2] and "error" not in replies[1]
    for name, ws, task in (("v1", v1, watch_v1), ("plain", plain, watch_plain),
                           ("centrifuge", cf, watch_centrifuge)):
        seen = Watch()
        yield name, ws, seen, asyncio.create_task(task(ws, seen))


class Publisher:
    """A v1 client on the publisher node publishing 0, 1, 2, ... with acks."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.acked: set[int] = set()
        self.errors = 0

    async def run(self, stop: asyncio.Event, interval: float = 0.005,
                  limit: int = 5000) -> None:
        reader = asyncio.create_task(self._acks())
        try:
            for n in range(limit):
                if stop.is_set():
                    break
                await self.ws.send(json.dumps({"action": "publish", "topic": TOPIC,
                                               "data": n, "id": n}))
                await asyncio.sleep(interval)
            await asyncio.sleep(0.5)  # the last acks
        finally:
            reader.cancel()

    async def _acks(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if msg.get("type") == "ack":
                self.acked.add(msg["id"])
            elif msg.get("type") == "error":
                self.errors += 1


async def run_outage(publisher_node: Proc, subscriber_node: Proc, outage: Any) -> dict[
        str, Watch]:
    """Subscribe on `subscriber_node`, publish on `publisher_node` through `outage()`
    (a coroutine that breaks the subscriber node's link and brings it back), then
    return what each subscriber saw; the publisher's acked set is checked against it."""
    subs = [s async for s in subscribers(subscriber_node)]
    pub_ws = await connect(f"ws://127.0.0.1:{publisher_node.port}/ws/chat",
                           subprotocols=["pubsocket.v1"])  # type: ignore[list-item]
    publisher, stop = Publisher(pub_ws), asyncio.Event()
    publishing = asyncio.create_task(publisher.run(stop))
    try:
        # Wait until deliveries flow to the subscriber node, then break its link.
        async with asyncio.timeout(10):
            while len(subs[0][2].received) < 20:
                await asyncio.sleep(0.01)
        await outage()
        await asyncio.sleep(1.0)  # deliveries flow again after the outage
        stop.set()
        async with asyncio.timeout(10):
            await publishing
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await pub_ws.close()
        for _, ws, _, task in subs:
            await ws.close()
            task.cancel()
    seen = {name: s for name, _, s, _ in subs}
    seen["_acked"] = Watch(received=publisher.acked)
    return seen


def assert_never_silent(seen: dict[str, Watch]) -> None:
    acked = seen.pop("_acked").received
    assert len(acked) > 100, "the publisher must have been acked through the outage"
    for name, watch in seen.items():
        missed = acked - watch.received
        if name == "v1" and missed:
            assert watch.told, f"v1: {len(missed)} of {len(acked)} lost without a gap notice"
            assert all(g["offset"] == 0 and g["epoch"] == "" for g in watch.told)
        if name == "centrifuge" and missed:
            assert watch.told, f"centrifuge: {len(missed)} lost without an unsubscribe push"
            assert all(u["code"] == 2500 for u in watch.told)
        if name == "plain" and missed:
            assert watch.closed == 1012, f"plain: {len(missed)} lost, closed {watch.closed}"


async def test_a_cut_link_never_loses_messages_silently(redis_server_binary: str) -> None:
    port = free_port()
    with redis_on(port, redis_server_binary):
        async with proxy_to(port) as proxy:
            env = {**NO_HISTORY, "PUBSOCKET_LOG_LEVEL": "WARNING"}
            with spawn(APP, PUBSOCKET_BROKER=f"redis://127.0.0.1:{port}/0", **env) as a, \
                    spawn(APP, PUBSOCKET_BROKER=f"redis://127.0.0.1:{proxy.port}/0",
                          **env) as b:
                async def outage() -> None:
                    proxy.cut()
                    await asyncio.sleep(1.0)  # the publisher node publishes meanwhile
                    proxy.resume()

                seen = await run_outage(a, b, outage)
    # The cut is certain to lose messages: each subscriber must have been told.
    acked = seen["_acked"].received
    for name in ("v1", "plain", "centrifuge"):
        assert acked - seen[name].received, f"{name}: the cut lost nothing? (test broken)"
    assert_never_silent(seen)


async def test_a_redis_restart_never_loses_messages_silently(redis_server_binary: str) -> None:
    port = free_port()
    redis = RedisProcess(port, redis_server_binary).start()
    try:
        async with proxy_to(port) as proxy:
            env = {**NO_HISTORY, "PUBSOCKET_LOG_LEVEL": "WARNING"}
            with spawn(APP, PUBSOCKET_BROKER=f"redis://127.0.0.1:{port}/0", **env) as a, \
                    spawn(APP, PUBSOCKET_BROKER=f"redis://127.0.0.1:{proxy.port}/0",
                          **env) as b:
                async def outage() -> None:
                    redis.kill()  # both nodes lose Redis; publishes get error replies
                    proxy.accepting = False
                    await asyncio.sleep(0.5)
                    redis.start()
                    # The nodes reconnect on their own backoff schedules (with jitter in
                    # production): here the subscriber node comes back last, so what the
                    # publisher node publishes meanwhile is acked and not delivered to it.
                    await asyncio.sleep(0.7)
                    proxy.resume()

                seen = await run_outage(a, b, outage)
    finally:
        redis.kill()
    assert seen["_acked"].received - seen["v1"].received, "nothing lost? (test broken)"
    assert_never_silent(seen)
