"""centrifuge-python (the real SDK from PyPI) against a real server on port 0."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect

from centrifuge import Client, ReplyError, StreamPosition, SubscriptionState
from pubsocket.auth import Principal
from pubsocket.brokers.base import HistoryPolicy, Position
from tests.centrifuge.conftest import PATH, Events, cf_app, client_events, sub_events, token
from tests.integration.spawn import ROOT, spawn


@asynccontextmanager
async def sdk(url: str, recorder: Callable[[Events], Any] = client_events,
              **kwargs: Any) -> AsyncIterator[tuple[Client, Events]]:
    """A connecting centrifuge-python client and its events (as `recorder` records
    them); disconnected at the end."""
    events = Events()
    client = Client(url, events=recorder(events), timeout=5,
                    min_reconnect_delay=0.05, max_reconnect_delay=0.3, **kwargs)
    await client.connect()
    try:
        yield client, events
    finally:
        await client.disconnect()


def drop_every_connection(srv: Any) -> None:
    """The server closes every WebSocket it holds with 1001 (3001 for Centrifuge)."""
    for conn in list(srv.server.state.websockets):
        conn.close_nowait(1001, "going away")


async def subscribed(client: Client, channel: str, **kwargs: Any) -> tuple[Any, Events]:
    events = Events()
    sub = client.new_subscription(channel, events=sub_events(events), **kwargs)
    await sub.subscribe()
    return sub, events


async def test_connect_with_jwt_subscribe_publish_receive(serve: Any) -> None:
    srv = await serve(cf_app())
    async with sdk(srv.ws + PATH, token=token("alice")) as (client, events):
        ctx = await events.next("connected")
        assert ctx.client and ctx.version.startswith("pubsocket")
        sub, sub_ev = await subscribed(client, "chat:1", recoverable=True)
        first = await sub_ev.next("subscribed")
        assert first.recoverable and first.stream_position.offset == 0
        await sub.publish({"text": "hi"})
        pub = (await sub_ev.next("publication")).pub
        assert (pub.data, pub.offset) == ({"text": "hi"}, 1)
        history = await sub.history(limit=10)
        assert [p.data for p in history.publications] == [{"text": "hi"}]
        newest = await sub.history(limit=1, reverse=True)
        assert newest.offset == 1 and len(newest.publications) == 1


async def test_history_reverse_with_since_reads_backwards_from_a_position(serve: Any) -> None:
    srv = await serve(cf_app())
    async with sdk(srv.ws + PATH, token=token("alice")) as (client, _):
        sub, sub_ev = await subscribed(client, "chat:back", recoverable=True)
        await sub_ev.next("subscribed")
        for n in range(1, 7):
            await sub.publish({"n": n})
        epoch = (await sub.history(limit=0)).epoch
        page = await sub.history(limit=2, since=StreamPosition(5, epoch), reverse=True)
        assert [p.offset for p in page.publications] == [4, 3]
        assert [p.data for p in page.publications] == [{"n": 4}, {"n": 3}]
        start = await sub.history(limit=10, since=StreamPosition(3, epoch), reverse=True)
        assert [p.offset for p in start.publications] == [2, 1]
        with pytest.raises(ReplyError) as refused:
            await sub.history(limit=2, since=StreamPosition(5, "another"), reverse=True)
        assert refused.value.code == 112


@pytest.mark.parametrize("use_protobuf", [False, True], ids=["json", "protobuf"])
async def test_expired_jwt_is_refreshed_through_get_token(serve: Any,
                                                          use_protobuf: bool) -> None:
    srv = await serve(cf_app())
    calls = 0

    async def get_token() -> str:
        nonlocal calls
        calls += 1
        return token("alice", ttl=2)  # short: the SDK must refresh it in-band too

    async with sdk(srv.ws + PATH, token=token("alice", ttl=-10), get_token=get_token,
                   use_protobuf=use_protobuf) as (client, events):
        err = await events.next("error")
        assert isinstance(err.error, ReplyError) and err.error.code == 109
        await events.next("connected")
        assert calls == 1
        # ttl from the connect reply: the SDK refreshes before the server's 3005 close
        await asyncio.sleep(3.5)
        assert calls >= 2
        assert not any(name == "disconnected" for name, _ in events.seen)
        assert client.state.value == "connected"


@pytest.mark.parametrize("tok", ["not-a-jwt", "", "subscription token"])
async def test_refused_connect_closes_3500_without_reconnect(serve: Any, tok: str) -> None:
    if tok == "subscription token":  # grants one channel, never a connection
        tok = token("alice", channel="chat:1")
    srv = await serve(cf_app())
    async with sdk(srv.ws + PATH, token=tok) as (_client, events):
        ctx = await events.next("disconnected")
        assert (ctx.code, ctx.reason) == (3500, "invalid token")
        await asyncio.sleep(0.5)
        assert [n for n, _ in events.seen].count("connecting") == 1  # no reconnect


async def test_anonymous_connect_on_an_unsecured_endpoint(serve: Any) -> None:
    srv = await serve(cf_app(secured=False))
    async with sdk(srv.ws + PATH) as (client, events):
        await events.next("connected")
        sub, sub_ev = await subscribed(client, "chat:anon")
        await sub.publish(1)
        assert (await sub_ev.next("publication")).pub.data == 1


async def test_server_drop_reconnects_and_recovers_without_duplicates(serve: Any) -> None:
    app = cf_app()
    srv = await serve(app)
    async with sdk(srv.ws + PATH, token=token("alice")) as (client, events):
        sub, sub_ev = await subscribed(client, "chat:r", recoverable=True)
        await sub_ev.next("subscribed")
        for i in range(3):
            await sub.publish(i)
        got = [(await sub_ev.next("publication")).pub.offset for _ in range(3)]
        # the server closes every connection with a reconnect code (3001 shutdown) and
        # publishes while the client is away
        drop_every_connection(srv)
        for i in range(3, 8):
            await app.hub.publish("chat:r", i)
        again = await sub_ev.next("subscribed", within=10)
        assert again.was_recovering and again.recovered
        got += [(await sub_ev.next("publication")).pub.offset for _ in range(5)]
        assert got == list(range(1, 9))  # every offset once, in order
        await sub.publish(8)
        assert (await sub_ev.next("publication")).pub.offset == 9
        codes = [ctx.code for n, ctx in events.seen if n == "connecting"]
        assert 3001 in codes


async def test_gap_beyond_history_is_recovered_false(serve: Any) -> None:
    app = cf_app(history={"short:*": HistoryPolicy(3, 60)})
    srv = await serve(app)
    async with sdk(srv.ws + PATH, token=token("alice")) as (client, _events):
        sub, sub_ev = await subscribed(client, "short:1", recoverable=True)
        await sub_ev.next("subscribed")
        await sub.publish("a")
        await sub_ev.next("publication")
        drop_every_connection(srv)
        for i in range(10):
            await app.hub.publish("short:1", i)
        again = await sub_ev.next("subscribed", within=10)
        assert again.was_recovering and not again.recovered
        assert again.stream_position.offset == 11
        await sub.publish("b")
        assert (await sub_ev.next("publication")).pub.offset == 12


async def test_a_live_gap_makes_the_sdk_resubscribe_and_recover(serve: Any) -> None:
    app = cf_app()
    srv = await serve(app)
    async with sdk(srv.ws + PATH, token=token("alice")) as (client, _events):
        sub, sub_ev = await subscribed(client, "chat:g", recoverable=True)
        await sub_ev.next("subscribed")
        await sub.publish("a")
        await sub_ev.next("publication")
        # the hub announces a hole it could not fill (what Redis loss or overflow does)
        app.hub._gap("chat:g", app.hub._topics["chat:g"], Position(1, "ignored"))
        resub = await sub_ev.next("subscribing")
        assert (resub.code, resub.reason) == (2500, "insufficient state")
        again = await sub_ev.next("subscribed")
        assert again.was_recovering and again.recovered  # history had it all
        await sub.publish("b")
        assert (await sub_ev.next("publication")).pub.offset == 2
        assert app.hub.subscriber_count("chat:g") == 1  # restarted, not doubled


@pytest.mark.parametrize("use_protobuf", [False, True], ids=["json", "protobuf"])
async def test_presence_stats_and_join_leave(serve: Any, use_protobuf: bool) -> None:
    srv = await serve(cf_app())
    url = srv.ws + PATH
    async with sdk(url, token=token("alice", info={"name": "Alice"}),
                   use_protobuf=use_protobuf) as (alice, _):
        sub_a, ev_a = await subscribed(alice, "room:p", join_leave=True)
        async with sdk(url, token=token("bob"), use_protobuf=use_protobuf) as (bob, _):
            sub_b, _ev_b = await subscribed(bob, "room:p", join_leave=True)
            joined = await ev_a.next("join", where=lambda c: c.info.user == "bob")
            assert joined.info.client == bob.client_id
            who = await sub_a.presence()
            assert sorted(c.user for c in who.clients.values()) == ["alice", "bob"]
            info = who.clients[alice.client_id].conn_info  # Protobuf: the JSON's bytes
            assert (json.loads(info) if use_protobuf else info) == {"name": "Alice"}
            stats = await sub_b.presence_stats()
            assert (stats.num_clients, stats.num_users) == (2, 2)
        left = await ev_a.next("leave", where=lambda c: c.info.user == "bob")
        assert left.info.client == bob.client_id


async def test_subscription_refused_by_the_topics_claim(serve: Any) -> None:
    srv = await serve(cf_app())
    tok = token("alice", topics={"subscribe": ["room:*"], "publish": ["room:*"]})
    async with sdk(srv.ws + PATH, token=tok) as (client, _):
        events = Events()
        sub = client.new_subscription("secret:1", events=sub_events(events))
        await sub.subscribe()
        ctx = await events.next("unsubscribed")
        assert (ctx.code, ctx.reason) == (103, "permission denied")
        assert sub.state == SubscriptionState.UNSUBSCRIBED
        ok, ok_ev = await subscribed(client, "room:1")
        await ok.publish("allowed")
        assert (await ok_ev.next("publication")).pub.data == "allowed"
        with pytest.raises(ReplyError) as info:
            await client.publish("secret:1", 1)
        assert info.value.code == 103


async def test_subscription_token_grants_a_channel(serve: Any) -> None:
    app = cf_app()
    srv = await serve(app)
    tok = token("alice", topics={"subscribe": []})  # no topic permission at all

    async def sub_token(channel: str) -> str:
        return token("alice", ttl=60, channel=channel)

    async with sdk(srv.ws + PATH, token=tok) as (client, _):
        _sub, ev = await subscribed(client, "vip:1", get_token=sub_token)
        assert (await ev.next("subscribed")).channel == "vip:1"
        await app.hub.publish("vip:1", "for members")
        assert (await ev.next("publication")).pub.data == "for members"
        wrong = Events()
        other = client.new_subscription("vip:2", events=sub_events(wrong),
                                        token=token("alice", channel="vip:1"))
        await other.subscribe()
        assert (await wrong.next("unsubscribed")).code == 103


async def test_rpc_hook_and_errors(serve: Any) -> None:
    async def hook(principal: Principal, method: str, data: Any) -> Any:
        if method == "boom":
            raise RuntimeError("secret detail")
        return {"user": principal.sub, "method": method, "echo": data}

    srv = await serve(cf_app(rpc=hook))
    async with sdk(srv.ws + PATH, token=token("alice")) as (client, _):
        result = await client.rpc("sum", [1, 2])
        assert result.data == {"user": "alice", "method": "sum", "echo": [1, 2]}
        with pytest.raises(ReplyError) as info:
            await client.rpc("boom", None)
        assert (info.value.code, info.value.message) == (100, "internal server error")
    srv2 = await serve(cf_app())
    async with sdk(srv2.ws + PATH, token=token("alice")) as (client, _):
        with pytest.raises(ReplyError) as info:
            await client.rpc("sum", 1)
        assert info.value.code == 108


async def test_publications_cross_protocols_both_ways(serve: Any) -> None:
    srv = await serve(cf_app())
    async with sdk(srv.ws + PATH, token=token("alice")) as (client, _), \
            connect(srv.ws + "/ws/chat") as plain:
        sub, ev = await subscribed(client, "chat:x")
        await plain.send(json.dumps({"action": "subscribe", "topic": "chat:x"}))
        await asyncio.sleep(0.1)  # plain mode sends no ack
        await plain.send(json.dumps({"action": "publish", "topic": "chat:x",
                                     "data": {"from": "plain"}}))
        assert (await ev.next("publication")).pub.data == {"from": "plain"}
        async with asyncio.timeout(5):
            assert json.loads(await plain.recv()) == {"from": "plain"}
            await sub.publish({"from": "centrifuge"})
            assert json.loads(await plain.recv()) == {"from": "centrifuge"}


async def test_shutdown_closes_with_3001_and_the_sdk_reconnects(serve: Any) -> None:
    app = cf_app()
    srv = await serve(app)
    async with sdk(srv.ws + PATH, token=token("alice")) as (_client, events):
        await events.next("connected")
        await srv.server.shutdown()
        ctx = await events.next("connecting", within=10, where=lambda c: c.code != 0)
        assert (ctx.code, ctx.reason) == (3001, "shutdown")


async def test_the_chat_example_serves_both_protocols_on_one_hub() -> None:
    with spawn(ROOT / "examples/chat") as proc:
        url = f"ws://127.0.0.1:{proc.port}"
        async with sdk(url + PATH, token=token("alice")) as (client, _), \
                connect(url + "/ws/chat", additional_headers={
                    "Authorization": f"Bearer {token('bob')}"}) as plain:
            sub, ev = await subscribed(client, "chatroom", recoverable=True, join_leave=True)
            assert (await ev.next("subscribed")).recoverable
            await plain.send(json.dumps({"action": "subscribe", "topic": "chatroom"}))
            await plain.send(json.dumps({"action": "publish", "topic": "chatroom",
                                         "data": {"message": "Hello!"}}))
            assert (await ev.next("publication")).pub.data == {"message": "Hello!"}
            who = await sub.presence()
            assert {c.user for c in who.clients.values()} == {"alice", "bob"}
