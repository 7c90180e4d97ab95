"""Where a subscription's position stands after `Overflow`, what the server is told when
the client drops a subscription, and how reconnecting behaves when new connections
do not last (backoff, `max_attempts`, the server's rate limit)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from pubsocket import App, pubsub
from pubsocket import client as pc
from pubsocket.auth import Action
from pubsocket.client import Message
from tests.client.helpers import RecordingBackoff, chat_app, drop_all, take, token, until, url
from tests.conftest import make_settings


async def test_resuming_after_overflow_from_its_position_loses_nothing(serve: Any) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=token(), queue_size=3) as client:
        sub = await client.subscribe("room")
        for i in range(1, 6):
            await client.publish("room", i)
        await until(lambda: not sub.active)
        got = []
        with pytest.raises(pc.Overflow):
            async for event in sub:
                got.append(event)
        assert [e.offset for e in got] == [1, 2, 3]
        assert sub.offset == 3  # the last queued, not the one that did not fit
        assert sub.epoch is not None
        again = await client.subscribe("room", since=(sub.offset, sub.epoch))
        await client.publish("room", 6)
        assert [e.data for e in await take(again, 3)] == [4, 5, 6]  # type: ignore[union-attr]


async def members(client: pc.Client, topic: str) -> int:
    return len(await client.presence(topic))


async def test_dropped_subscriptions_are_unsubscribed_on_the_server(serve: Any) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=token("watcher")) as watcher, \
            pc.connect(url(srv), token=token(), queue_size=2) as client:
        sub = await client.subscribe("room")
        for i in range(4):
            await client.publish("room", i)
        await until(lambda: not sub.active)
        async with asyncio.timeout(5):
            while await members(watcher, "room"):  # the best-effort unsubscribe lands
                await asyncio.sleep(0.02)

        # Subscribing again at once: the unsubscribe of the old one goes first.
        for i in range(4):
            await client.publish("room", i)
        await until(lambda: "room" not in client._router.subs)
        fresh = await client.subscribe("room")
        assert await members(watcher, "room") == 1
        await client.publish("room", "live")
        [live] = await take(fresh, 1)
        assert isinstance(live, Message) and live.data == "live"


async def test_a_subscribe_cancelled_after_it_was_sent_is_undone_on_the_server(
        serve: Any) -> None:
    # The server holds subscribes to "held" in its authorize hook until released, so
    # the cancel lands for sure after the command left and before its ack.
    asked, release, granted = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def authorize(principal: Any, action: Any, topic: str) -> bool:
        if topic == "held" and action == Action.SUBSCRIBE:
            asked.set()
            await release.wait()
            granted.set()  # the session subscribes in this same step, right after
        return True

    app = App(make_settings())
    pubsub("/ws/chat", app=app, secured=True, presence=["*"], authorize=authorize)
    srv = await serve(app)
    async with pc.connect(url(srv), token=token("watcher")) as watcher, \
            pc.connect(url(srv), token=token()) as client:
        task = asyncio.create_task(client.subscribe("held"))
        async with asyncio.timeout(5):
            await asked.wait()  # the subscribe is on the server, unanswered
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        release.set()  # the server subscribes now, then reads the client's unsubscribe
        async with asyncio.timeout(5):
            await granted.wait()
            while await members(watcher, "held"):
                await asyncio.sleep(0.02)
        assert "held" not in client._router.subs
        await app.hub.publish("held", "not for the cancelled one")
        assert await members(watcher, "held") == 0


async def test_connections_that_drop_at_once_escalate_and_give_up(serve: Any) -> None:
    srv = await serve(chat_app())
    backoff = RecordingBackoff(0.02)

    async def storm() -> None:  # every connection is cut right after the handshake
        for _ in range(500):
            drop_all(srv)
            await asyncio.sleep(0.01)

    async with pc.connect(url(srv), token=token(), backoff=backoff, max_attempts=4) as client:
        sub = await client.subscribe("room")
        cutting = asyncio.create_task(storm())
        try:
            with pytest.raises(pc.ClientClosed, match="4 attempts"):
                await take(sub, 1, timeout=5)
        finally:
            cutting.cancel()
    assert backoff.attempts == [1, 2, 3, 4]


async def test_resubscribing_many_topics_stays_within_the_rate_limit(serve: Any) -> None:
    srv = await serve(chat_app(max_subscriptions=300))  # rate: 100/s, burst 200
    topics = [f"t{i}" for i in range(250)]
    backoff = RecordingBackoff(0.01)
    states: list[str] = []
    async with pc.connect(url(srv), token=token(), backoff=backoff,
                          on_state=states.append) as client:
        first = await asyncio.gather(*(client.subscribe(t) for t in topics[:125]))
        await asyncio.sleep(1.3)  # let the server's bucket refill
        subs = first + await asyncio.gather(*(client.subscribe(t) for t in topics[125:]))
        drop_all(srv)
        await until(lambda: client.state == "reconnecting")
        await until(lambda: client.state == "connected")
        await asyncio.sleep(1.5)  # all resubscribed (two chunks, a second apart)
        assert client.state == "connected"
        await client.publish(topics[-1], "still here")
        [got] = await take(subs[-1], 1)
        assert isinstance(got, Message) and got.data == "still here"
    assert states.count("reconnecting") == 1
    assert backoff.attempts == [1]
