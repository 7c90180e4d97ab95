"""`pubsocket.client` against a real server: commands, errors, subscriptions, callbacks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.typing import Subprotocol

from pubsocket import client as pc
from pubsocket.client import Gap, Message
from tests.client.helpers import RecordingBackoff, chat_app, take, token, until, url
from tests.conftest import API_KEY, free_port


async def test_publish_is_acked_and_delivered_with_topic_data_offset(serve: Any) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=API_KEY) as client:
        assert client.state == "connected"
        sub = await client.subscribe("room")
        assert (sub.offset, sub.confirmed) == (0, True) and sub.epoch
        assert await client.publish("room", {"n": 1}) == 1
        assert await client.publish("room", None) == 2
        assert await take(sub, 2) == [Message("room", {"n": 1}, 1), Message("room", None, 2)]
        assert sub.offset == 2
    assert client.state == "closed"
    assert not sub.active


async def test_history_presence_and_stats(serve: Any) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=token("alice", info={"name": "A"})) as alice, \
            pc.connect(url(srv), token=lambda: token("bob")) as bob:
        await alice.subscribe("room")
        await bob.subscribe("room")
        for i in range(4):
            await bob.publish("room", i)
        page = await alice.history("room", limit=2)
        assert [(m.offset, m.data) for m in page.messages] == [(3, 2), (4, 3)]
        assert page.offset == 4 and page.epoch
        after = await alice.history("room", since=(1, page.epoch))
        assert [m.data for m in after.messages] == [1, 2, 3]
        members = await bob.presence("room")
        assert sorted(members.values(), key=lambda m: str(m.user)) == [
            pc.Member("alice", {"name": "A"}), pc.Member("bob", None)]
        assert await alice.presence_stats("room") == pc.PresenceStats(2, 2)
        with pytest.raises(pc.CommandError) as err:
            await alice.history("room", since=(1, "another-epoch"))
        assert err.value.code == "unrecoverable_position"


async def test_a_refused_token_raises_auth_error_from_connect(serve: Any) -> None:
    srv = await serve(chat_app())
    states: list[str] = []
    client = pc.connect(url(srv), token="not-a-token", on_state=states.append)
    with pytest.raises(pc.AuthError, match="401"):
        async with client:
            pytest.fail("connected with a bad token")
    assert states == ["connecting", "closed"]


async def test_an_unreachable_server_raises_connect_failed() -> None:
    with pytest.raises(pc.ConnectFailed, match="cannot connect"):
        async with pc.connect(f"ws://127.0.0.1:{free_port()}/ws/chat", open_timeout=2):
            pass


async def test_forbidden_topics_raise_forbidden_and_the_connection_stays(serve: Any) -> None:
    srv = await serve(chat_app())
    tok = token("alice", topics={"subscribe": ["chat:*"], "publish": ["chat:*"]})
    async with pc.connect(url(srv), token=tok) as client:
        with pytest.raises(pc.Forbidden):
            await client.subscribe("secret")
        with pytest.raises(pc.Forbidden):
            await client.publish("secret", 1)
        with pytest.raises(pc.Forbidden):
            await client.presence("chat:x")
        sub = await client.subscribe("chat:x")  # the same connection still works
        await client.publish("chat:x", "ok")
        [got] = await take(sub, 1)
        assert (got.topic, got.data, got.offset) == ("chat:x", "ok", 1)
        assert got.publisher is not None and got.publisher.user == "alice"
        # the refused topic is not held: subscribing it again is refused again, not "already"
        with pytest.raises(pc.Forbidden):
            await client.subscribe("secret")


async def test_a_silent_server_times_out_with_timeout() -> None:
    async def silent(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with ws_serve(silent, "127.0.0.1", 0,
                        subprotocols=[Subprotocol("pubsocket.v1")]) as server:
        port = server.sockets[0].getsockname()[1]
        # heartbeat=0: not asking for pings, a silence is not taken as a dead link here
        async with pc.connect(f"ws://127.0.0.1:{port}/", timeout=0.2, heartbeat=0) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(pc.Timeout) as err:
                await client.publish("room", 1)
            assert isinstance(err.value, TimeoutError)
            # < 2 s: slack for a loaded box; the default timeout (10 s) still fails it.
            assert 0.2 <= loop.time() - started < 2.0
            with pytest.raises(TimeoutError):
                await client.subscribe("room", timeout=0.05)
            assert client.state == "connected"


async def test_a_server_without_the_v1_subprotocol_is_refused() -> None:
    async def plain(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with ws_serve(plain, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(pc.ConnectFailed, match=r"pubsocket\.v1"):
            async with pc.connect(f"ws://127.0.0.1:{port}/"):
                pass


async def test_callbacks_sync_and_async_in_order(serve: Any) -> None:
    srv = await serve(chat_app())
    seen: list[Any] = []
    done = asyncio.Event()

    async def on_message(message: Message) -> None:
        await asyncio.sleep(0)
        seen.append(message.data)
        if len(seen) == 3:
            done.set()

    async with pc.connect(url(srv), token=API_KEY) as client:
        await client.subscribe("room", on_message=on_message, on_gap=seen.append)
        for i in range(3):
            await client.publish("room", i)
        async with asyncio.timeout(5):
            await done.wait()
    assert seen == [0, 1, 2]


async def test_subscribe_since_that_cannot_recover_starts_with_a_gap(serve: Any) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=API_KEY) as client:
        await client.publish("room", "old")
        sub = await client.subscribe("room", since=(0, "not-the-epoch"))
        await client.publish("room", "new")
        first, second = await take(sub, 2)
        assert isinstance(first, Gap) and first.reason == "not_recovered"
        assert (first.offset, first.epoch) == (1, sub.epoch)
        assert second == Message("room", "new", 2)


async def test_unsubscribe_ends_iteration_and_subscribing_twice_is_refused(serve: Any
                                                                          ) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=API_KEY) as client:
        sub = await client.subscribe("room")
        with pytest.raises(pc.ClientError, match="already subscribed"):
            await client.subscribe("room")
        await client.publish("room", 1)
        await sub.unsubscribe()
        await sub.unsubscribe()  # idempotent
        await client.publish("room", 2)
        assert await take(sub, 5) == [Message("room", 1, 1)]  # then it ends
        again = await client.subscribe("room")
        await client.publish("room", 3)
        assert await take(again, 1) == [Message("room", 3, 3)]


async def test_a_full_queue_ends_the_subscription_with_overflow(serve: Any) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=API_KEY, queue_size=3) as client:
        sub = await client.subscribe("room")
        for i in range(5):
            await client.publish("room", i)
        got: list[Any] = []
        with pytest.raises(pc.Overflow):
            async with asyncio.timeout(5):
                async for event in sub:
                    got.append(event)
        assert [m.data for m in got] == [0, 1, 2]  # what fitted, then the error
        assert not sub.active
        again = await client.subscribe("room")  # the topic can be followed again
        await client.publish("room", "x")
        assert (await take(again, 1))[0].data == "x"


async def test_the_server_ending_a_subscription_raises_unsubscribed(serve: Any) -> None:
    srv = await serve(chat_app())
    async with pc.connect(url(srv), token=token("alice")) as client:
        sub = await client.subscribe("ops")
        await srv.app.hub.unsubscribe_user("alice", "ops")
        with pytest.raises(pc.Unsubscribed) as err:
            await take(sub, 1)
        assert err.value.topic == "ops"


async def test_calls_after_close_raise_client_closed(serve: Any) -> None:
    srv = await serve(chat_app())
    client = pc.connect(url(srv), token=API_KEY)
    async with client:
        pass
    with pytest.raises(pc.ClientClosed):
        await client.publish("room", 1)
    await client.close()  # idempotent


def test_exponential_backoff_with_and_without_jitter() -> None:
    plain = pc.ExponentialBackoff(initial=0.5, factor=2, maximum=3, jitter="none")
    assert [plain.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert plain.delay(10_000) == 3.0
    half = pc.ExponentialBackoff(initial=1, factor=3, maximum=30, random=lambda: 0.5)
    assert [half.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 13.5]
    with pytest.raises(ValueError, match="factor"):
        pc.ExponentialBackoff(factor=0.5)


async def test_a_publish_whose_ack_is_lost_raises_client_closed_and_is_not_resent() -> None:
    received: list[dict[str, Any]] = []
    connections = 0

    async def drop_after_one(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            received.append(json.loads(await ws.recv()))
            await ws.close(1011)  # the command arrived; its ack never will
        else:
            async for raw in ws:
                received.append(json.loads(raw))

    async with ws_serve(drop_after_one, "127.0.0.1", 0,
                        subprotocols=[Subprotocol("pubsocket.v1")]) as server:
        port = server.sockets[0].getsockname()[1]
        backoff = RecordingBackoff(0.01)
        async with pc.connect(f"ws://127.0.0.1:{port}/", backoff=backoff,
                              heartbeat=0) as client:  # so only the publish is sent
            with pytest.raises(pc.ClientClosed, match="may or may not"):
                await client.publish("room", "once")
            await until(lambda: connections == 2 and client.state == "connected")
            await asyncio.sleep(0.1)  # room for a (wrong) resend to arrive
    assert [r["action"] for r in received] == ["publish"]
    assert backoff.attempts == [1]
