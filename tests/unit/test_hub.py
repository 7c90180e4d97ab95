"""`Hub` over the in-memory broker: fan-out, wire modes, topic state, errors and threads."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from pubsocket import BrokerUnavailable, ConfigError, Hub, Settings
from pubsocket.brokers import (
    Broker,
    DeliverFn,
    HistoryPage,
    HistoryPolicy,
    MemoryBroker,
    Publication,
)
from pubsocket.brokers.base import Publisher, ResyncFn
from pubsocket.codecs import V1
from pubsocket.errors import BrokerError
from pubsocket.hub.wire import RAW, WireSet


class Recorder:
    """A subscriber that keeps every frame it is handed."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def deliver(self, frame: bytes) -> None:
        self.frames.append(frame)

    @property
    def messages(self) -> list[Any]:
        return [json.loads(f) for f in self.frames]  # raw wires: payloads


class GatedBroker(MemoryBroker):
    """A memory broker whose `subscribe` waits for `gate`, then fails if `error` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.error: BaseException | None = None
        self.subscribe_calls = 0

    async def subscribe(self, topic: str) -> None:
        self.subscribe_calls += 1
        self.entered.set()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        await super().subscribe(topic)


class DownBroker(Broker):
    """A broker whose engine is unreachable for subscriptions and publishes."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.unsubscribed: list[str] = []

    async def start(self, deliver: DeliverFn, resync: ResyncFn | None = None) -> None:
        pass

    async def close(self) -> None:
        pass

    async def subscribe(self, topic: str) -> None:
        raise self.error

    async def unsubscribe(self, topic: str) -> None:
        self.unsubscribed.append(topic)

    async def publish(self, topic: str, payload: bytes, policy: HistoryPolicy,
                      publisher: Publisher | None = None) -> Publication:
        raise BrokerUnavailable("down")

    async def history(self, topic: str, since: int | None, limit: int,
                      max_bytes: int = 0) -> HistoryPage:
        raise BrokerUnavailable("down")


class SharedMemoryBroker(MemoryBroker):
    """A memory broker that claims to be reachable from other processes."""

    @property
    def shared(self) -> bool:
        return True


async def started(broker: Broker, **settings: Any) -> Hub:
    h = Hub(Settings(**settings), broker)
    await h.start()
    return h


# -- fan-out -------------------------------------------------------------------------------


async def test_one_frame_per_subscriber_and_the_same_bytes_object(hub: Hub) -> None:
    subs = [Recorder() for _ in range(5)]
    for s in subs:
        await hub.subscribe(s, "room")
    await hub.publish("room", {"n": 1})
    assert all(len(s.frames) == 1 for s in subs)
    first = subs[0].frames[0]
    assert all(s.frames[0] is first for s in subs)
    assert subs[0].messages == [{"n": 1}]


async def test_envelope_subscribers_share_one_frame_too(hub: Hub) -> None:
    subs = [Recorder() for _ in range(3)]
    for s in subs:
        await hub.subscribe(s, "room", RAW(V1))
    await hub.publish("room", [1])
    assert all(s.frames[0] is subs[0].frames[0] for s in subs)


async def test_plain_and_envelope_subscribers_get_their_payloads(hub: Hub) -> None:
    plain, env = Recorder(), Recorder()
    await hub.subscribe(plain, "a/b:c")
    await hub.subscribe(env, "a/b:c", RAW(V1))
    await hub.publish("a/b:c", {"x": "é"})
    assert plain.messages == [{"x": "é"}]
    assert env.messages == [{"type": "message", "topic": "a/b:c", "offset": 1,
                             "data": {"x": "é"}}]
    assert plain.frames[0] == b'{"x":"\xc3\xa9"}'


async def test_only_subscribers_of_the_topic_receive(hub: Hub) -> None:
    a, b = Recorder(), Recorder()
    await hub.subscribe(a, "a")
    await hub.subscribe(b, "b")
    await hub.publish("a", 1)
    await hub.publish("a", 2)
    assert a.messages == [1, 2]
    assert b.frames == []


async def test_publish_to_a_topic_nobody_follows_creates_no_state(hub: Hub) -> None:
    await hub.publish("nobody", {"x": 1})
    assert hub.topic_count == 0
    assert hub.subscriber_count("nobody") == 0
    assert hub.subscription_count == 0


async def test_unsubscribing_the_last_subscriber_removes_the_topic(hub: Hub) -> None:
    a, b = Recorder(), Recorder()
    await hub.subscribe(a, "t")
    await hub.subscribe(b, "t", RAW(V1))
    await hub.unsubscribe(a, "t")
    assert hub.topic_count == 1
    assert hub.subscriber_count("t") == 1
    await hub.unsubscribe(b, "t")
    assert hub.topic_count == 0
    assert hub.subscriber_count("t") == 0
    received = hub.stats.received
    await hub.publish("t", 1)
    assert a.frames == []
    assert b.frames == []
    assert hub.stats.received == received  # the broker no longer sends the topic here


async def test_unsubscribe_of_unknown_topic_or_subscriber_is_a_no_op(hub: Hub) -> None:
    a, b = Recorder(), Recorder()
    await hub.unsubscribe(a, "never")
    await hub.subscribe(a, "t")
    await hub.unsubscribe(b, "t")
    assert hub.subscriber_count("t") == 1
    await hub.publish("t", "still")
    assert a.messages == ["still"]


async def test_subscribe_is_idempotent(hub: Hub) -> None:
    a = Recorder()
    for _ in range(3):
        await hub.subscribe(a, "t")
    assert hub.subscriber_count("t") == 1
    assert hub.subscription_count == 1
    await hub.publish("t", 1)
    assert len(a.frames) == 1
    await hub.unsubscribe(a, "t")
    assert hub.topic_count == 0


async def test_counts(hub: Hub) -> None:
    a, b = Recorder(), Recorder()
    await hub.subscribe(a, "x")
    await hub.subscribe(a, "y")
    await hub.subscribe(b, "y")
    assert hub.topic_count == 2
    assert hub.subscription_count == 3
    assert hub.subscriber_count("y") == 2


# -- publish validation ---------------------------------------------------------------


@pytest.mark.parametrize("topic", ["", "a b", "x" * 256, "é", "a%b"])
async def test_publish_refuses_invalid_topic(hub: Hub, topic: str) -> None:
    with pytest.raises(ValueError, match="topic"):
        await hub.publish(topic, 1)
    assert hub.stats.published == 0


@pytest.mark.parametrize("data", [object(), {1, 2}, {"a": b"bytes"}, {1: "non-str key"}])
async def test_publish_refuses_non_json_data(hub: Hub, data: Any) -> None:
    a = Recorder()
    await hub.subscribe(a, "t")
    with pytest.raises(ValueError, match="JSON"):
        await hub.publish("t", data)
    assert a.frames == []
    assert hub.stats.published == 0


async def test_publish_refuses_too_deeply_nested_data(hub: Hub) -> None:
    data: Any = []
    for _ in range(300):
        data = [data]
    with pytest.raises(ValueError, match="JSON"):
        await hub.publish("t", data)


# -- threads ----------------------------------------------------------------------------


async def test_publish_threadsafe_from_a_thread(hub: Hub) -> None:
    a = Recorder()
    await hub.subscribe(a, "t")
    seen: list[str] = []

    def worker() -> None:
        seen.append(threading.current_thread().name)
        hub.publish_threadsafe("t", {"from": "thread"}).result(timeout=5)

    await asyncio.wait_for(asyncio.to_thread(worker), 5)
    assert seen
    assert seen[0] != threading.current_thread().name
    assert a.messages == [{"from": "thread"}]


async def test_publish_threadsafe_carries_errors(hub: Hub) -> None:
    def worker() -> None:
        with pytest.raises(ValueError, match="topic"):
            hub.publish_threadsafe("bad topic", 1).result(timeout=5)

    await asyncio.wait_for(asyncio.to_thread(worker), 5)


def test_publish_threadsafe_before_start_raises() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        Hub(Settings(), MemoryBroker()).publish_threadsafe("t", 1)


# -- stats -------------------------------------------------------------------------------


async def test_stats(hub: Hub) -> None:
    plain1, plain2, env = Recorder(), Recorder(), Recorder()
    await hub.subscribe(plain1, "t")
    await hub.subscribe(plain2, "t")
    await hub.subscribe(env, "t", RAW(V1))
    await hub.publish("t", {"k": "v"})
    await hub.publish("nobody", 1)
    s = hub.stats
    assert s.published == 2
    assert s.received == 1
    assert s.deliveries == 3
    assert s.bytes_out == len(plain1.frames[0]) * 2 + len(env.frames[0])


# -- lifecycle and broker failures ------------------------------------------------------


async def test_workers_above_one_need_a_shared_broker() -> None:
    with pytest.raises(ConfigError, match="shared broker"):
        await started(MemoryBroker(), workers=2)
    h = await started(SharedMemoryBroker(), workers=2)
    await h.close()


async def test_default_broker_comes_from_settings() -> None:
    h = Hub(Settings(broker="memory://"))
    await h.start()
    try:
        assert isinstance(h.broker, MemoryBroker)
        with pytest.raises(ConfigError, match="PUBSOCKET_BROKER"):
            _ = Hub(Settings(broker="kafka://x")).broker
    finally:
        await h.close()


async def test_close_forgets_topics() -> None:
    h = await started(MemoryBroker())
    await h.subscribe(Recorder(), "t")
    await h.close()
    assert h.topic_count == 0


@pytest.mark.parametrize("error", [OSError("engine down"), RuntimeError("bug"),
                                   BrokerUnavailable("down")])
async def test_failed_broker_subscribe_leaves_no_state(error: Exception) -> None:
    h = await started(DownBroker(error))
    a = Recorder()
    with pytest.raises(BrokerUnavailable):
        await h.subscribe(a, "t")
    assert h.topic_count == 0
    assert h.subscriber_count("t") == 0
    assert h.subscription_count == 0
    await h.close()


async def test_broker_errors_are_passed_through_unchanged() -> None:
    error = BrokerUnavailable("specific")
    h = await started(DownBroker(error))
    with pytest.raises(BrokerUnavailable) as info:
        await h.subscribe(Recorder(), "t")
    assert info.value is error
    await h.close()


async def test_publish_through_a_down_broker_raises_broker_unavailable() -> None:
    h = await started(DownBroker(OSError()))
    with pytest.raises(BrokerUnavailable):
        await h.publish("t", 1)
    await h.close()


async def test_subscribe_succeeds_after_the_broker_recovers() -> None:
    broker = GatedBroker()
    h = await started(broker)
    broker.error = BrokerUnavailable("down")
    broker.gate.set()
    with pytest.raises(BrokerUnavailable):
        await h.subscribe(Recorder(), "t")
    broker.error = None
    a = Recorder()
    await h.subscribe(a, "t")
    await h.publish("t", "ok")
    assert a.messages == ["ok"]
    await h.close()


async def test_second_subscriber_waits_for_the_broker_confirmation() -> None:
    broker = GatedBroker()
    h = await started(broker)
    a, b = Recorder(), Recorder()
    first = asyncio.create_task(h.subscribe(a, "t"))
    await asyncio.wait_for(broker.entered.wait(), 2)
    second = asyncio.create_task(h.subscribe(b, "t"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not second.done()
    broker.gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 2)
    assert broker.subscribe_calls == 1
    await h.publish("t", 1)
    assert a.messages == [1]
    assert b.messages == [1]
    await h.close()


async def test_waiting_subscribers_fail_too_when_the_broker_refuses() -> None:
    broker = GatedBroker()
    h = await started(broker)
    first = asyncio.create_task(h.subscribe(Recorder(), "t"))
    await asyncio.wait_for(broker.entered.wait(), 2)
    second = asyncio.create_task(h.subscribe(Recorder(), "t", RAW(V1)))
    await asyncio.sleep(0)
    broker.error = OSError("refused")
    broker.gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 2)
    assert all(isinstance(r, BrokerUnavailable) for r in results)
    assert h.topic_count == 0
    assert h.subscription_count == 0
    await h.close()


async def test_cancelling_a_subscribe_during_the_broker_call_stays_a_cancellation() -> None:
    # a cancelled subscribe must raise CancelledError, not turn into BrokerUnavailable
    # (a Session catches BrokerError and would keep running after being cancelled)
    broker = GatedBroker()
    h = await started(broker)
    task = asyncio.create_task(h.subscribe(Recorder(), "t"))
    await asyncio.wait_for(broker.entered.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert task.cancelled()
    assert h.topic_count == 0
    await h.close()


async def test_cancelled_waiting_subscriber_is_not_left_subscribed() -> None:
    # the second subscriber of a topic waits for the broker; if it is cancelled while
    # waiting, its caller never learns it was added, so it must not stay subscribed
    broker = GatedBroker()
    h = await started(broker)
    a, b = Recorder(), Recorder()
    first = asyncio.create_task(h.subscribe(a, "t"))
    await asyncio.wait_for(broker.entered.wait(), 2)
    second = asyncio.create_task(h.subscribe(b, "t"))
    await asyncio.sleep(0)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(second, 2)
    broker.gate.set()
    await asyncio.wait_for(first, 2)
    await h.publish("t", 1)
    assert a.messages == [1]
    assert b.frames == []
    assert h.subscriber_count("t") == 1
    await h.close()


async def test_failing_broker_unsubscribe_still_forgets_the_topic() -> None:
    class NoUnsubscribe(MemoryBroker):
        async def unsubscribe(self, topic: str) -> None:
            raise BrokerError("cannot")

    h = await started(NoUnsubscribe())
    a = Recorder()
    await h.subscribe(a, "t")
    await h.unsubscribe(a, "t")
    assert h.topic_count == 0
    await h.close()


class CountingCodec(type(V1)):  # type: ignore[misc]
    """V1, counting how often it encodes a publication."""

    def __init__(self) -> None:
        self.encoded = 0

    def publication(self, topic: str, pub: Any) -> bytes:
        self.encoded += 1
        result: bytes = super().publication(topic, pub)
        return result


async def test_encoded_once_per_codec_and_framed_once_per_wire(hub: Hub) -> None:
    """The wire seam: two framings of one codec share its encoding; each wire frames
    it once and all its subscribers get the same bytes object."""
    codec = CountingCodec()
    framed: list[bytes] = []

    def bracket(payload: bytes) -> bytes:
        framed.append(payload)
        return b"[" + payload + b"]"

    raw, boxed = WireSet(lambda p: p, "raw")(codec), WireSet(bracket, "boxed")(codec)
    subs = [Recorder() for _ in range(4)]
    for i, sub in enumerate(subs):
        await hub.subscribe(sub, "t", raw if i % 2 else boxed)
    await hub.publish("t", {"n": 1})
    assert codec.encoded == 1
    assert len(framed) == 1
    assert subs[0].frames[0] is subs[2].frames[0]
    assert subs[1].frames[0] is subs[3].frames[0]
    assert subs[0].frames[0] == b"[" + subs[1].frames[0] + b"]"
    assert json.loads(subs[1].frames[0])["data"] == {"n": 1}
