"""`Session` driven by an in-memory peer over a real hub and memory broker."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from pubsocket import BrokerUnavailable, CloseCode, Hub, Settings
from pubsocket.brokers import MemoryBroker
from pubsocket.codecs import PLAIN, V1, Codec
from pubsocket.hub import subscribed
from pubsocket.hub.peer import take_tokens
from pubsocket.hub.session import Session, TokenBucket
from tests.conftest import normalize_from


class MemoryPeer:
    """A connection without a socket: messages in through a queue, frames out to a list.

    Like a real connection, it stops yielding messages once it has been closed.
    """

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.frames: list[bytes] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_event = asyncio.Event()

    # -- the Peer interface ----------------------------------------------------------
    def deliver(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close_nowait(self, code: int, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.closed_event.set()
        self._inbox.put_nowait(None)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    backlog = 0  # bytes not taken yet: a test may set it

    def __aiter__(self) -> MemoryPeer:
        return self

    async def __anext__(self) -> str | bytes:
        if self.close_code is not None:
            raise StopAsyncIteration
        item = await self._inbox.get()
        if item is None:
            raise StopAsyncIteration
        return item

    # -- test side -------------------------------------------------------------------
    def send(self, *messages: str | bytes | dict[str, Any]) -> None:
        for m in messages:
            self._inbox.put_nowait(json.dumps(m) if isinstance(m, dict) else m)

    def hang_up(self) -> None:
        self._inbox.put_nowait(None)

    @property
    def received(self) -> list[Any]:
        """Every frame decoded; a (non-empty string) epoch reads as "E" so the random
        epochs of the memory broker compare equal."""
        out = [normalize_from(json.loads(f)) for f in self.frames]  # raw wire: payloads
        for m in out:
            if isinstance(m, dict) and "epoch" in m:
                assert isinstance(m["epoch"], str) and m["epoch"]
                m["epoch"] = "E"
        return out


def sub_ack(cmd_id: Any, topic: str, offset: int = 0, **extra: Any) -> dict[str, Any]:
    """The v1 ack of a subscribe (epoch normalized, see `MemoryPeer.received`)."""
    return {"type": "ack", "id": cmd_id, "topic": topic, "offset": offset, "epoch": "E",
            **extra}


async def run(hub: Hub, peer: MemoryPeer, *, codec: Codec = PLAIN,
              expires_at: float | None = None, **settings: Any) -> Session:
    """Run a session until the peer's messages are used up (bounded)."""
    session = Session(hub, peer, Settings(**settings), codec=codec, expires_at=expires_at)
    await asyncio.wait_for(session.run(), 3)
    return session


def sub(topic: str, **extra: Any) -> dict[str, Any]:
    return {"action": "subscribe", "topic": topic, **extra}


def unsub(topic: str, **extra: Any) -> dict[str, Any]:
    return {"action": "unsubscribe", "topic": topic, **extra}


def pub(topic: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {"action": "publish", "topic": topic, "data": data, **extra}


# -- acks and deliveries ------------------------------------------------------------------


async def test_envelope_mode_acks_commands_with_an_id(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(sub("t", id="s1"), pub("t", {"a": 1}, id=2), unsub("t", id="u"), pub("t", 3))
    peer.hang_up()
    await run(hub, peer, codec=V1)
    assert peer.received == [
        sub_ack("s1", "t"),
        {"type": "message", "topic": "t", "offset": 1, "data": {"a": 1}},
        {"type": "ack", "id": 2, "offset": 1},
        {"type": "ack", "id": "u"},
    ]
    assert peer.close_code is None


async def test_envelope_mode_without_id_gets_no_ack(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(sub("t"), pub("t", "x"), unsub("t"), unsub("never"))
    peer.hang_up()
    await run(hub, peer, codec=V1)
    assert peer.received == [{"type": "message", "topic": "t", "offset": 1, "data": "x"}]


async def test_plain_mode_never_acks_and_delivers_bare_data(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(sub("t", id="s1"), pub("t", {"a": 1}, id="p1"), unsub("t", id="u1"))
    peer.hang_up()
    await run(hub, peer)
    assert peer.received == [{"a": 1}]


@pytest.mark.parametrize("codec", [PLAIN, V1])
async def test_errors_are_sent_in_both_modes(hub: Hub, codec: Codec) -> None:
    peer = MemoryPeer()
    peer.send("not json", {"action": "nope", "topic": "t", "id": "x1"}, sub("bad topic"))
    peer.hang_up()
    await run(hub, peer, codec=codec)
    got = peer.received
    assert [m["type"] for m in got] == ["error"] * 3
    assert [m["code"] for m in got] == ["bad_json", "bad_action", "invalid_topic"]
    assert "id" not in got[0]
    assert got[1]["id"] == "x1"
    assert all(isinstance(m["message"], str) and m["message"] for m in got)
    assert peer.close_code is None


@pytest.mark.parametrize("text", [
    '{"action": ["publish"], "topic": "t"}',
    '{"action": {"a": 1}, "topic": "t", "id": "h"}',
    '{"action": "publish", "topic": "t", "data": ' + "[" * 300 + "]" * 300 + "}",
])
async def test_hostile_commands_get_an_error_reply_and_the_session_goes_on(
    hub: Hub, text: str
) -> None:
    peer = MemoryPeer()
    peer.send(text, sub("after", id="ok"))
    peer.hang_up()
    await run(hub, peer, codec=V1)
    got = peer.received
    assert got[0]["type"] == "error"
    assert got[-1] == sub_ack("ok", "after")
    assert peer.close_code is None


async def test_session_publishes_reach_other_sessions(hub: Hub) -> None:
    listener, talker = MemoryPeer(), MemoryPeer()
    listener.send(sub("room", id="s"))
    listening = asyncio.create_task(
        Session(hub, listener, Settings(), codec=V1).run())
    await asyncio.wait_for(_until(lambda: hub.subscriber_count("room") == 1), 2)
    talker.send(pub("room", "hi"))
    talker.hang_up()
    await run(hub, talker)
    listener.hang_up()
    await asyncio.wait_for(listening, 2)
    assert listener.received == [sub_ack("s", "room"),
                                 {"type": "message", "topic": "room", "offset": 1, "data": "hi"}]
    assert talker.frames == []


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.005)


# -- closing rules -----------------------------------------------------------------------


async def test_policy_violation_after_max_protocol_errors(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(*(["{"] * 5), sub("late", id="z"))
    await run(hub, peer, codec=V1, max_protocol_errors=3)
    assert [m["code"] for m in peer.received] == ["bad_json"] * 3
    assert peer.close_code == CloseCode.POLICY_VIOLATION == 1008
    assert hub.topic_count == 0


async def test_errors_below_the_cap_do_not_close(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send("{", "{", sub("t", id=1))
    peer.hang_up()
    session = await run(hub, peer, codec=V1, max_protocol_errors=3)
    assert peer.close_code is None
    assert session.errors == 2
    assert peer.received[-1] == sub_ack(1, "t")


async def test_zero_max_protocol_errors_never_closes(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(*(["{"] * 150))
    peer.hang_up()
    await run(hub, peer, max_protocol_errors=0, rate_limit=0)
    assert len(peer.frames) == 150
    assert peer.close_code is None


async def test_binary_message_closes_with_1003(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(sub("t"), b'{"action":"subscribe","topic":"u"}', sub("after"))
    await run(hub, peer)
    assert peer.close_code == CloseCode.UNSUPPORTED_DATA == 1003
    assert hub.topic_count == 0  # "t" was released, "u"/"after" never subscribed


async def test_empty_token_bucket_closes_with_4029(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(*[sub(f"t{i}", id=i) for i in range(6)])
    await run(hub, peer, codec=V1, rate_limit=0.01, rate_burst=3)
    assert peer.received == [sub_ack(i, f"t{i}") for i in range(3)]
    assert peer.close_code == CloseCode.RATE_LIMITED == 4029
    assert hub.topic_count == 0


async def test_rate_limit_zero_is_unlimited(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(*[pub("t", i) for i in range(500)])
    peer.hang_up()
    await run(hub, peer, rate_limit=0, rate_burst=1)
    assert peer.close_code is None
    assert hub.stats.published == 500


def test_token_bucket_burst_then_refill_at_rate_capped_at_burst() -> None:
    bucket = TokenBucket(rate=10, burst=2)  # one token per 100 ms
    assert bucket.take()
    assert bucket.take()
    assert not bucket.take()
    time.sleep(0.35)  # 3.5 tokens' worth, but the bucket holds at most 2
    assert bucket.take()
    assert bucket.take()
    assert not bucket.take()
    time.sleep(0.15)  # 1.5 tokens
    assert bucket.take()
    assert not bucket.take()


def test_token_bucket_refused_take_spends_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    assert bucket.take()
    for _ in range(20):
        assert not bucket.take()
    time.sleep(0.12)
    assert bucket.take()


def test_token_bucket_rate_zero_never_limits() -> None:
    bucket = TokenBucket(rate=0, burst=1)
    assert all(bucket.take() for _ in range(10_000))


def test_token_bucket_burst_below_one_still_allows_one() -> None:
    bucket = TokenBucket(rate=0.001, burst=0)
    assert bucket.take()
    assert not bucket.take()


class Gcra:
    """`take_tokens` (the session's one-float rate state) with TokenBucket's interface."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst, self.full_at = rate, burst, 0.0

    def take(self, n: int = 1) -> bool:
        after = take_tokens(self.full_at, n, self.rate, self.burst)
        if after is None:
            return False
        self.full_at = after
        return True


def test_take_tokens_behaves_as_the_token_bucket() -> None:
    bucket = Gcra(rate=10, burst=2)  # one token per 100 ms
    assert bucket.take() and bucket.take() and not bucket.take()
    time.sleep(0.35)  # 3.5 tokens' worth, but the bucket holds at most 2
    assert bucket.take() and bucket.take() and not bucket.take()
    time.sleep(0.15)  # 1.5 tokens
    assert bucket.take() and not bucket.take()
    refused = bucket.full_at
    assert not bucket.take(5) and bucket.full_at == refused  # a refusal spends nothing
    tiny = Gcra(rate=0.001, burst=0)  # a burst below one still allows one
    assert tiny.take() and not tiny.take()
    many = Gcra(rate=100, burst=200)
    assert many.take(200) and not many.take(1)


def test_topics_are_a_string_for_one_and_a_set_from_two() -> None:
    topics: subscribed.Topics = None
    assert subscribed.count(topics) == 0 and subscribed.snapshot(topics) == frozenset()
    topics = subscribed.added(topics, "a")
    assert topics == "a" and subscribed.added(topics, "a") == "a"
    topics = subscribed.added(topics, "b")
    assert topics == {"a", "b"} and subscribed.count(topics) == 2
    topics = subscribed.added(topics, "c")
    topics = subscribed.discarded(subscribed.discarded(topics, "a"), "x")
    assert topics == {"b", "c"}
    topics = subscribed.discarded(topics, "c")
    assert topics == "b" and subscribed.snapshot(topics) == {"b"}
    assert subscribed.discarded(topics, "b") is None


# -- subscriptions ----------------------------------------------------------------------


async def test_subscription_cap(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(sub("a", id=1), sub("b", id=2), sub("c", id=3), sub("a", id=4),
              unsub("a", id=5), sub("c", id=6))
    peer.hang_up()
    session = await run(hub, peer, codec=V1, max_subscriptions=2)
    got = peer.received
    assert got[0] == sub_ack(1, "a")
    assert got[1] == sub_ack(2, "b")
    assert got[2]["type"] == "error"
    assert got[2]["code"] == "subscription_limit"
    assert got[2]["id"] == 3
    assert got[3:] == [sub_ack(4, "a"), {"type": "ack", "id": 5}, sub_ack(6, "c")]
    assert session.topics == set()  # released at the end


async def test_zero_subscription_cap_is_unlimited(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(*[sub(f"t{i}") for i in range(300)])
    session = Session(hub, peer, Settings(max_subscriptions=0, rate_limit=0))
    task = asyncio.create_task(session.run())
    await asyncio.wait_for(_until(lambda: hub.topic_count == 300), 2)
    assert peer.frames == []
    peer.hang_up()
    await asyncio.wait_for(task, 2)


async def test_release_unsubscribes_everything(hub: Hub) -> None:
    other = MemoryPeer()
    await hub.subscribe(other, "shared")
    peer = MemoryPeer()
    peer.send(sub("a"), sub("b"), sub("shared"))
    session = Session(hub, peer, Settings())
    task = asyncio.create_task(session.run())
    await asyncio.wait_for(_until(lambda: hub.topic_count == 3), 2)
    assert session.topics == {"a", "b", "shared"}
    peer.hang_up()
    await asyncio.wait_for(task, 2)
    assert hub.topic_count == 1
    assert hub.subscriber_count("shared") == 1
    session.on_close()  # idempotent
    await hub.unsubscribe(other, "shared")
    assert hub.topic_count == 0


async def test_run_releases_when_cancelled(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(sub("a"), sub("b"))
    task = asyncio.create_task(Session(hub, peer, Settings()).run())
    await asyncio.wait_for(_until(lambda: hub.topic_count == 2), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert hub.topic_count == 0


async def test_broker_failure_is_reported_and_not_counted(hub: Hub) -> None:
    class DownOnSubscribe(MemoryBroker):
        def subscribe_nowait(self, topic: str) -> bool:
            return False  # no inline path: the hub must await subscribe()

        async def subscribe(self, topic: str) -> None:
            raise BrokerUnavailable("down")

    down = Hub(Settings(), DownOnSubscribe())
    await down.start()
    peer = MemoryPeer()
    peer.send(sub("t", id="a"), sub("t", id="b"))
    peer.hang_up()
    session = await run(down, peer, codec=V1, max_protocol_errors=1)
    assert [(m["type"], m["code"], m["id"]) for m in peer.received] == [
        ("error", "broker_unavailable", "a"), ("error", "broker_unavailable", "b")]
    assert peer.close_code is None
    assert session.errors == 0
    assert down.topic_count == 0
    await down.close()


# -- token expiry -----------------------------------------------------------------------


async def test_closes_with_4001_when_the_token_expires(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.send(sub("t"))
    start = time.time()
    session = Session(hub, peer, Settings(), expires_at=start + 0.2)
    task = asyncio.create_task(session.run())
    await asyncio.wait_for(_until(lambda: hub.topic_count == 1), 2)
    await asyncio.wait_for(peer.closed_event.wait(), 2)
    elapsed = time.time() - start
    assert peer.close_code == CloseCode.AUTH_EXPIRED == 4001
    assert 0.15 <= elapsed < 1.5
    await asyncio.wait_for(task, 2)
    assert hub.topic_count == 0


async def test_already_expired_token_closes_at_once(hub: Hub) -> None:
    peer = MemoryPeer()
    task = asyncio.create_task(
        Session(hub, peer, Settings(), expires_at=time.time() - 5).run())
    await asyncio.wait_for(peer.closed_event.wait(), 1)
    assert peer.close_code == 4001
    await asyncio.wait_for(task, 2)


async def test_no_expiry_timer_fires_after_the_session_ended(hub: Hub) -> None:
    peer = MemoryPeer()
    peer.hang_up()
    await run(hub, peer, expires_at=time.time() + 0.05)
    await asyncio.sleep(0.1)
    assert peer.close_code is None


async def test_push_mode_keeps_order_behind_a_slow_broker(hub: Hub) -> None:
    gate = asyncio.Event()

    class SlowSubscribe(MemoryBroker):
        def subscribe_nowait(self, topic: str) -> bool:
            return False

        async def subscribe(self, topic: str) -> None:
            await gate.wait()
            MemoryBroker.subscribe_nowait(self, topic)

    slow = Hub(Settings(), SlowSubscribe())
    await slow.start()
    peer = MemoryPeer()
    session = Session(slow, peer, Settings(), codec=V1)
    session.on_message(json.dumps({"action": "subscribe", "topic": "t", "id": 1}))
    session.on_message(json.dumps({"action": "publish", "topic": "t", "data": "x", "id": 2}))
    session.on_message(json.dumps({"action": "unsubscribe", "topic": "t", "id": 3}))
    await asyncio.sleep(0.01)
    assert peer.received == []  # everything waits behind the unconfirmed subscribe
    gate.set()
    await asyncio.wait_for(_until(lambda: len(peer.received) == 4), 2)
    assert peer.received == [
        sub_ack(1, "t"),
        {"type": "message", "topic": "t", "offset": 1, "data": "x"},
        {"type": "ack", "id": 2, "offset": 1},
        {"type": "ack", "id": 3},
    ]
    session.on_close()
    assert slow.topic_count == 0
    await slow.close()


async def test_an_unexpected_broker_exception_on_subscribe_does_not_wedge_the_session() -> None:
    # a broker raising something other than BrokerError (a bug, an OSError) must still
    # give the client broker_unavailable, and the commands after it must still run
    class Broken(MemoryBroker):
        def subscribe_nowait(self, topic: str) -> bool:
            return False

        async def subscribe(self, topic: str) -> None:
            raise OSError("engine socket reset")

    broken = Hub(Settings(), Broken())
    await broken.start()
    peer = MemoryPeer()
    session = Session(broken, peer, Settings(), codec=V1)
    session.on_message(json.dumps(sub("t", id="a")))
    session.on_message(json.dumps(unsub("t", id="b")))
    await asyncio.wait_for(_until(lambda: len(peer.frames) >= 2), 2)
    got = peer.received
    assert (got[0]["type"], got[0]["code"], got[0]["id"]) == ("error", "broker_unavailable", "a")
    assert got[1] == {"type": "ack", "id": "b"}
    assert broken.topic_count == 0
    session.on_close()
    await broken.close()
