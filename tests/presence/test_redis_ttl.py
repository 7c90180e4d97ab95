"""Redis presence over time: refresh, expiry of a `kill -9`ed node, key TTLs, outages.

TTLs are 1 s here; every wait is bounded. The "dead node" is a real subprocess that adds
entries and is killed with SIGKILL, so nothing of ours runs on its way out.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from pubsocket.presence import ClientInfo, PresenceUnavailable, Removed, Stats
from pubsocket.presence.redis import PRUNE_BATCH, RedisPresence
from tests.conftest import free_port
from tests.presence.conftest import MakePresence

TTL = 1.0

NODE = textwrap.dedent("""
    import asyncio, sys
    from pubsocket.presence import ClientInfo
    from pubsocket.presence.redis import RedisPresence

    async def main() -> None:
        node = RedisPresence(sys.argv[1], prefix=sys.argv[2], ttl=float(sys.argv[3]))
        await node.start()
        await node.add("room", ClientInfo("dead-1", "alice", {"tab": 1}))
        await node.add("room", ClientInfo("dead-2", "carol"))
        await node.add("room", ClientInfo("dead-3", None))
        print("ready", flush=True)
        await asyncio.sleep(60)  # refreshing, until killed

    asyncio.run(main())
""")


async def test_a_killed_nodes_entries_vanish_after_the_ttl(
    make_redis: MakePresence, redis_url: str, prefix: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", NODE, redis_url, prefix, str(TTL),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(10):
            assert (await proc.stdout.readline()).strip() == b"ready"
        live = await make_redis(ttl=TTL)
        assert await live.add("room", ClientInfo("live-1", "alice")) is False  # alice is in
        assert await live.stats("room") == Stats(4, 3)
        await asyncio.sleep(TTL * 1.5)  # the dead node's refresh keeps its entries alive
        assert await live.stats("room") == Stats(4, 3)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 5)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        # No ghost past the TTL (the dead node's last refresh came before the kill): checked
        # once, half a TTL after it is due, so load only delays the check, never fails it.
        await asyncio.sleep(max(0.0, killed_at + TTL * 1.5 - loop.time()))
        assert set(await live.get("room")) == {"live-1"}
        assert await live.stats("room") == Stats(1, 1)
        assert await live.add("room", ClientInfo("live-2", "carol")) is True  # count fixed
        assert await live.remove("room", "live-1") == Removed("alice", True)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_refresh_keeps_live_entries_past_the_ttl(make_redis: MakePresence) -> None:
    a, b = await make_redis(ttl=TTL), await make_redis(ttl=TTL)
    await a.add("room", ClientInfo("a1", "alice"))
    await asyncio.sleep(TTL * 2.5)
    assert set(await b.get("room")) == {"a1"}
    assert await b.stats("room") == Stats(1, 1)
    assert await b.add("room", ClientInfo("b1", "alice")) is False


async def test_a_stalled_node_expires_and_its_refresh_restores_it(
    make_redis: MakePresence,
) -> None:
    stalled = await make_redis(ttl=TTL, start=False)  # no refresh task: it "stalls"
    other = await make_redis(ttl=TTL)
    await stalled.add("room", ClientInfo("s1", "alice", {"n": 1}))
    await asyncio.sleep(TTL * 1.3)
    assert await other.get("room") == {}
    assert await other.stats("room") == Stats(0, 0)
    assert await stalled.remove("room", "s1") is None  # already gone
    await stalled.add("room", ClientInfo("s2", "bob"))
    await asyncio.sleep(TTL * 1.3)
    assert isinstance(stalled, RedisPresence)
    await stalled.refresh()  # finds its entry missing and puts it back
    assert await other.get("room") == {"s2": ClientInfo("s2", "bob")}
    assert await other.add("room", ClientInfo("o1", "bob")) is False


async def test_every_key_has_a_ttl(make_redis: MakePresence, redis_url: str) -> None:
    node = await make_redis(ttl=TTL)
    await node.add("room", ClientInfo("c1", "alice"))
    assert isinstance(node, RedisPresence)
    client = Redis.from_url(redis_url)
    try:
        for key in node.keys("room"):
            assert 0 < await client.pttl(key) <= TTL * 1000
        await node.remove("room", "c1")
        for key in node.keys("room"):
            assert not await client.exists(key)  # an empty topic leaves no keys
    finally:
        await client.aclose()


async def test_stats_prunes_more_than_one_batch(make_redis: MakePresence) -> None:
    writer = await make_redis(ttl=TTL, start=False)
    reader = await make_redis(ttl=60)
    count = PRUNE_BATCH + PRUNE_BATCH // 2
    # 100 at a time: 1500 at once wait for the pool's 32 connections, and on a slow
    # run (tracemalloc) the last ones passed the pool's 5 s wait (PresenceUnavailable).
    for start in range(0, count, 100):
        await asyncio.gather(*(writer.add("big", ClientInfo(f"c{i}", f"u{i % 7}"))
                               for i in range(start, min(start + 100, count))))
    await reader.add("big", ClientInfo("keeper", "u0"))
    await asyncio.sleep(TTL * 1.3)
    assert await reader.get("big") == {"keeper": ClientInfo("keeper", "u0")}
    assert await reader.stats("big") == Stats(1, 1)
    assert await reader.remove("big", "keeper") == Removed("u0", True)


async def test_unreachable_redis_raises_presence_unavailable(prefix: str) -> None:
    node = RedisPresence(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix, ttl=TTL)
    await node.start()  # never fails because Redis is down
    try:
        for call in (node.add("t", ClientInfo("c", "u")), node.remove("t", "c"),
                     node.get("t"), node.stats("t")):
            with pytest.raises(PresenceUnavailable) as info:
                await call
            assert "127.0.0.1" not in str(info.value)  # the driver's text stays out
    finally:
        await node.close()  # logs and gives up: entries would expire by themselves


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl"):
        RedisPresence(ttl=0)


async def test_close_during_a_refresh_always_ends(redis_url: str, prefix: str) -> None:
    # A cancel landing inside a redis-py command can come back as a connection error;
    # close() must still end the refresh loop (it once hung here).
    for i in range(40):
        node = RedisPresence(redis_url, prefix=prefix, ttl=0.03)  # refresh every 10 ms
        await node.start()
        await node.add("room", ClientInfo(f"c{i}", "u"))
        await asyncio.sleep(0.001 * (i % 15))
        async with asyncio.timeout(5):
            await node.close()



async def test_a_refresh_cancelled_in_script_exists_gives_its_connection_back(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cause of the flake above: a pipeline's execute() runs SCRIPT EXISTS (for the
    # refresh script) on a pooled connection before its own try/finally, so a cancel
    # landing there (close() during a refresh) left the pipeline holding the connection:
    # never returned to the pool, and a ResourceWarning when the pipeline was collected.
    client = Redis.from_url(redis_url)
    pipes: list[Pipeline] = []
    make_pipeline = client.pipeline

    def spy(transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = make_pipeline(transaction, shard_hint)
        pipes.append(pipe)
        return pipe

    monkeypatch.setattr(client, "pipeline", spy)
    inside = asyncio.Event()
    immediate = Pipeline.immediate_execute_command

    async def stalled(self: Pipeline, *args: object, **options: object) -> object:
        # This takes a connection from the pool for the pipeline.
        result = await immediate(self, *args, **options)  # type: ignore[no-untyped-call]
        inside.set()
        await asyncio.sleep(30)  # cancelled long before
        return result

    node = RedisPresence(client=client, prefix=prefix, ttl=60)
    try:
        await node.add("room", ClientInfo("c1", "alice"))
        monkeypatch.setattr(Pipeline, "immediate_execute_command", stalled)
        task = asyncio.create_task(node.refresh())
        async with asyncio.timeout(5):
            await inside.wait()
        task.cancel()
        await asyncio.wait([task], timeout=5)
        assert task.cancelled()
        assert len(pipes) == 1
        assert pipes[0].connection is None  # given back to the pool
        monkeypatch.undo()
        await node.close()
    finally:
        await client.aclose()

async def test_refresh_and_close_cover_many_topics(make_redis: MakePresence) -> None:
    node = await make_redis(ttl=TTL, start=False)
    other = await make_redis(ttl=60)
    topics = [f"t{i}" for i in range(250)]  # more than one refresh pipeline
    for topic in topics:
        await node.add(topic, ClientInfo(f"{topic}-c", "alice"))
    await node.add("t0", ClientInfo("t0-second", "bob"))
    await asyncio.sleep(TTL * 1.3)
    assert await other.get("t7") == {}
    assert isinstance(node, RedisPresence)
    await node.refresh()  # all were pruned: every one is restored
    for topic in topics:
        assert set(await other.get(topic)) == {f"{topic}-c"} | (
            {"t0-second"} if topic == "t0" else set())
    await node.refresh()  # and now simply re-scored
    assert await other.stats("t0") == Stats(2, 2)
    await node.close()
    assert [await other.stats(topic) for topic in topics] == [Stats(0, 0)] * len(topics)
