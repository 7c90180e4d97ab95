"""Reconnect, resubscribe, recovery, refresh and backoff against a real server.

Drops are real: the server aborts its TCP connections (the client sees 1006), or the
server shuts down (1001) and a new one starts on the same port.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from pubsocket import Server
from pubsocket import client as pc
from pubsocket.client import Gap, Message
from tests.client.helpers import (
    RecordingBackoff,
    chat_app,
    drop_all,
    exp_token,
    take,
    token,
    until,
    url,
)
from tests.conftest import API_KEY


async def test_drops_while_publishing_lose_nothing_and_repeat_nothing(serve: Any) -> None:
    srv = await serve(chat_app())
    backoff = RecordingBackoff(0.02)
    states: list[str] = []
    total = 300
    async with pc.connect(url(srv), token=API_KEY, backoff=backoff,
                          on_state=states.append) as client:
        sub = await client.subscribe("room")

        async def publisher() -> None:
            for i in range(total):
                await srv.app.hub.publish("room", {"i": i})
                if i % 10 == 0:
                    await asyncio.sleep(0.005)
                if i in (60, 150, 240):
                    await until(lambda: client.state == "connected")  # back from the last
                    assert drop_all(srv) == 1

        task = asyncio.create_task(publisher())
        events = await take(sub, total, timeout=10)
        await task
    assert all(isinstance(e, Message) for e in events), [e for e in events if
                                                          isinstance(e, Gap)]
    assert [e.offset for e in events] == list(range(1, total + 1))
    assert [e.data for e in events] == [{"i": i} for i in range(total)]  # type: ignore[union-attr]
    assert states.count("reconnecting") == 3
    assert backoff.attempts == [1, 2, 3]  # each drop came < 1 s after the reconnect


async def test_every_topic_is_resubscribed_and_recovered(serve: Any) -> None:
    srv = await serve(chat_app())
    backoff = RecordingBackoff(0.2)  # long enough to publish while it is away
    async with pc.connect(url(srv), token=API_KEY, backoff=backoff) as client:
        subs = {t: await client.subscribe(t) for t in ("a", "b", "c")}
        for t in subs:
            await client.publish(t, f"{t}1")
        drop_all(srv)
        await until(lambda: client.state == "reconnecting")
        for t in subs:
            await srv.app.hub.publish(t, f"{t}2")  # while the client is away
        await until(lambda: client.state == "connected")
        for t in subs:
            await client.publish(t, f"{t}3")
        for t, sub in subs.items():
            got = await take(sub, 3)
            assert got == [Message(t, f"{t}{i}", i) for i in (1, 2, 3)]


async def test_more_missed_than_history_holds_is_a_not_recovered_gap(serve: Any) -> None:
    srv = await serve(chat_app())  # "small" keeps 5 publications
    backoff = RecordingBackoff(0.3)
    async with pc.connect(url(srv), token=API_KEY, backoff=backoff) as client:
        sub = await client.subscribe("small")
        await client.publish("small", "seen")
        assert await take(sub, 1) == [Message("small", "seen", 1)]
        epoch = sub.epoch
        drop_all(srv)
        await until(lambda: client.state == "reconnecting")
        for i in range(10):  # offsets 2..11 while the client is away
            await srv.app.hub.publish("small", i)
        await until(lambda: client.state == "connected")
        await client.publish("small", "live")
        gap, live = await take(sub, 2)
        assert gap == Gap("small", 11, epoch, "not_recovered")
        assert live == Message("small", "live", 12)


async def test_a_topic_without_history_says_it_may_have_lost_some(serve: Any) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=API_KEY, backoff=RecordingBackoff(0.2)) as client:
        sub = await client.subscribe("nohist")
        assert await client.publish("nohist", "a") is None
        assert await take(sub, 1) == [Message("nohist", "a", None)]
        drop_all(srv)
        await until(lambda: client.state == "reconnecting")
        await srv.app.hub.publish("nohist", "lost")  # nobody can recover this one
        await until(lambda: client.state == "connected")
        await client.publish("nohist", "b")
        gap, live = await take(sub, 2)
        assert isinstance(gap, Gap) and (gap.reason, gap.offset) == ("not_recovered", None)
        assert live == Message("nohist", "b", None)


async def test_publish_during_a_reconnect_waits_and_is_sent_once(serve: Any) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=API_KEY, backoff=RecordingBackoff(0.2)) as client:
        sub = await client.subscribe("room")
        drop_all(srv)
        await until(lambda: client.state == "reconnecting")
        assert await client.publish("room", "queued", timeout=5) == 1
        await client.publish("room", "after")
        assert await take(sub, 2) == [Message("room", "queued", 1),
                                      Message("room", "after", 2)]
        with pytest.raises(pc.Timeout):  # waiting for a connection is bounded too
            drop_all(srv)
            await until(lambda: client.state == "reconnecting")
            await client.publish("room", "late", timeout=0.05)


async def test_an_async_token_callable_refreshes_before_expiry(serve: Any) -> None:
    srv = await serve(chat_app(token_grace=0.3))
    calls: list[float] = []
    first = exp_token("alice", 1.0)

    async def get_token() -> str:
        calls.append(time.time())
        await asyncio.sleep(0)
        return first if len(calls) == 1 else token("alice")

    states: list[str] = []
    async with pc.connect(url(srv), token=get_token, on_state=states.append,
                          backoff=RecordingBackoff(0.01)) as client:
        sub = await client.subscribe("room")
        await until(lambda: len(calls) == 2)  # "expiring" came at once (< 30 s left)
        await asyncio.sleep(2.4 + 0.3 + 0.2 - (time.time() - calls[0]))  # past exp + grace
        await client.publish("room", "still here")
        [got] = await take(sub, 1)
        assert (got.data, got.offset) == ("still here", 1)
        assert got.publisher is not None and got.publisher.user == "alice"  # the refreshed token
    assert states == ["connecting", "connected", "closed"]  # never dropped
    assert len(calls) == 2


async def test_a_string_token_that_expires_gives_up_with_auth_error(serve: Any) -> None:
    srv = await serve(chat_app(token_grace=0.2))
    backoff = RecordingBackoff(0.01)
    async with pc.connect(url(srv), token=exp_token("alice", 0.5), backoff=backoff,
                          max_auth_failures=3) as client:
        sub = await client.subscribe("room")
        with pytest.raises(pc.AuthError, match="3 times"):
            await take(sub, 1, timeout=5)  # closed 4001, then three 401s
        assert client.state == "closed"
        assert backoff.attempts == [1, 2, 3]
        with pytest.raises(pc.AuthError):
            await client.publish("room", 1)


async def test_a_token_callable_is_asked_again_on_reconnect(serve: Any) -> None:
    srv = await serve(chat_app())
    issued: list[str] = []

    def get_token() -> str:
        issued.append(token("alice"))
        return issued[-1]

    async with pc.connect(url(srv), token=get_token, backoff=RecordingBackoff()) as client:
        await client.subscribe("room")
        drop_all(srv)
        await until(lambda: client.state == "reconnecting")
        await until(lambda: client.state == "connected")
        assert len(issued) == 2


async def test_the_injected_backoff_is_asked_and_its_delays_are_waited(serve: Any) -> None:
    app = chat_app()
    srv = await serve(app)
    port = srv.port
    backoff = RecordingBackoff(0.15)
    async with pc.connect(url(srv), token=API_KEY, backoff=backoff, max_attempts=3) as client:
        sub = await client.subscribe("room")
        await srv.server.shutdown()  # 1001, and nothing listens any more
        with pytest.raises(pc.ClientClosed, match="3 attempts"):
            await take(sub, 1)
    assert backoff.attempts == [1, 2, 3]
    times = [t for _, _, t in backoff.asked]
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(times))

    # Reset only after a healthy connection (resubscribed and up 1 s): a new server on
    # the same port; a drop right after reconnecting escalates, a later one does not.
    again = RecordingBackoff(0.01)
    server = Server(chat_app(), "127.0.0.1", port)
    await server.start()
    try:
        async with pc.connect(f"ws://127.0.0.1:{port}/ws/chat", token=API_KEY,
                              backoff=again) as client:
            await client.subscribe("room")
            for pause in (0.0, 0.0, 1.3):
                await asyncio.sleep(pause)
                for conn in list(server.state.websockets):  # type: ignore[union-attr]
                    conn.abort()
                await until(lambda: client.state == "reconnecting")
                await until(lambda: client.state == "connected")
        assert again.attempts == [1, 2, 1]
    finally:
        await server.shutdown()


async def test_4003_is_final_auth_error(serve: Any) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=token("alice"), backoff=RecordingBackoff()) as c:
        sub = await c.subscribe("room")
        await srv.app.hub.disconnect_user("alice")
        with pytest.raises(pc.AuthError, match="4003"):
            await take(sub, 1)
        assert c.state == "closed"
