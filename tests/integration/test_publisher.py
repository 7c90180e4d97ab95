"""`Publisher` / `AsyncPublisher` against real nodes and a real Redis: positions and
history exactly like a node's publish, so every node delivers and recovery works."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid

import pytest

from pubsocket import AsyncPublisher, Publisher, Settings
from pubsocket import client as pc
from pubsocket.errors import BrokerUnavailable, ConfigError
from tests.centrifuge_js.proxy import proxy_to
from tests.client.helpers import RecordingBackoff, messages, take
from tests.integration.spawn import ROOT, spawn
from tests.outbox.helpers import subscriber

APP = ROOT / "tests/integration/apps/hub"

PUBLISH_SCRIPT = """
import json, sys, time
from pubsocket import Publisher
with Publisher(sys.argv[1]) as publisher:
    offsets = []
    for i in range(int(sys.argv[2])):
        offsets.append(publisher.publish("feed", {"i": i}))
        time.sleep(0.003)
print(json.dumps(offsets))
"""


@pytest.fixture
def url(redis_url: str) -> str:
    return f"{redis_url}?prefix=test-{uuid.uuid4().hex[:8]}:"


async def test_a_publisher_process_reaches_two_nodes_and_a_cut_subscriber_recovers(
    url: str,
) -> None:
    total = 300
    kept = {"PUBSOCKET_HISTORY_SIZE": "1000"}  # the nodes' and the publisher's: all agree
    with spawn(APP, PUBSOCKET_BROKER=url, **kept) as a, \
            spawn(APP, PUBSOCKET_BROKER=url, **kept) as b:
        async with proxy_to(b.port) as proxy, \
                pc.connect(f"ws://127.0.0.1:{a.port}/ws/chat") as on_a, \
                pc.connect(f"ws://127.0.0.1:{proxy.port}/ws/chat",
                           backoff=RecordingBackoff(0.05)) as on_b:
            sub_a, sub_b = await on_a.subscribe("feed"), await on_b.subscribe("feed")
            publisher = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PUBLISH_SCRIPT, url, str(total), cwd=ROOT,
                env={**os.environ, **kept}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            got_b = await take(sub_b, 60, timeout=15)
            proxy.cut()  # no close frame: B's subscriber is away while publishes go on
            await asyncio.sleep(0.4)
            proxy.resume()
            got_b += await take(sub_b, total - 60, timeout=15)
            got_a = await take(sub_a, total, timeout=15)
            out, err = await asyncio.wait_for(publisher.communicate(), 30)
    assert publisher.returncode == 0, err.decode()
    assert json.loads(out) == list(range(1, total + 1))  # the offsets publish() returned
    for got in (got_a, got_b):
        assert [(e.data["i"], e.offset) for e in messages(got)] == [
            (i, i + 1) for i in range(total)]
    assert proxy.accepted == 2  # the subscriber really was cut and came back


async def test_async_publisher_positions_history_and_no_history_topics(url: str) -> None:
    settings = Settings(history_rules=(("nohist*", 0, 0.0),))
    with spawn(APP, PUBSOCKET_BROKER=url, PUBSOCKET_HISTORY="nohist*=off") as node:
        async with pc.connect(f"ws://127.0.0.1:{node.port}/ws/chat") as client:
            kept, plain = await client.subscribe("room"), await client.subscribe("nohist.x")
            async with AsyncPublisher(url, settings=settings) as publisher:
                offsets = [await publisher.publish("room", n) for n in range(3)]
                assert await publisher.publish("nohist.x", "live only") == 0
            assert offsets == [1, 2, 3]
            assert [(e.data, e.offset) for e in messages(await take(kept, 3, timeout=15))] == [
                (0, 1), (1, 2), (2, 3)]
            assert [(e.data, e.offset) for e in messages(await take(plain, 1, timeout=15))] == [
                ("live only", None)]
            page = await client.history("room", limit=10)
            assert [m.data for m in page.messages] == [0, 1, 2]
    with pytest.raises(BrokerUnavailable):
        await publisher.publish("room", 4)  # closed


async def test_the_sync_publisher_works_from_threads_without_a_loop(
    redis_url: str, url: str
) -> None:
    results: list[int] = []
    errors: list[BaseException] = []
    publisher = Publisher(url, settings=Settings())

    def work(n: int) -> None:
        try:
            for i in range(50):
                results.append(publisher.publish("t", [n, i]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    async with subscriber(redis_url, url, "t") as node:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(lambda: [thread.join(20) for thread in threads])
        await asyncio.to_thread(publisher.close)
        await node.wait_for(200)
    assert not errors
    assert sorted(results) == list(range(1, 201))
    for n in range(4):  # each thread's own publishes keep their order
        mine = [json.loads(p) for _, p in node.received if json.loads(p)[0] == n]
        assert mine == [[n, i] for i in range(50)]


def test_bad_arguments_are_refused_before_any_connection() -> None:
    with pytest.raises(ConfigError, match="memory://"):
        Publisher("memory://")
    with pytest.raises(ConfigError, match="memory://"):
        AsyncPublisher(settings=Settings(broker="memory://"))
    publisher = Publisher("redis://127.0.0.1:9/0", settings=Settings())
    try:
        with pytest.raises(ValueError, match="invalid topic"):
            publisher.publish("no spaces", 1)
        with pytest.raises(ValueError, match="JSON"):
            publisher.publish("t", {1, 2})
        with pytest.raises(BrokerUnavailable):
            publisher.publish("t", 1)  # nothing listens on port 9
    finally:
        publisher.close()


async def test_the_sync_publisher_survives_a_script_flush_and_keeps_keys(
    redis_url: str, url: str
) -> None:
    from redis.asyncio import Redis

    async with subscriber(redis_url, url, "s") as node:
        with Publisher(url, settings=Settings()) as publisher:
            assert await asyncio.to_thread(publisher.publish, "s", 1) == 1
            admin = Redis.from_url(redis_url)
            try:
                await admin.script_flush()  # as after a Redis restart: NOSCRIPT next time
            finally:
                await admin.aclose()
            assert await asyncio.to_thread(publisher.publish, "s", 2) == 2
            for _ in range(2):  # a retried publish with its key: published once
                offset = await asyncio.to_thread(
                    lambda: publisher.publish("s", 3, idempotency_key="retry-1"))
                assert offset == 3
        await node.wait_for(3)
        assert [json.loads(p) for _, p in await node.settle()] == [1, 2, 3]
