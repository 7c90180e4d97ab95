"""centrifuge-js 5.8.0 (npm, under Node) against a real server: connect with a JWT and
with an expired one, publish/receive, presence, refusals, batched commands, shutdown.

Each test runs the SDK in its own Node process (tests/js/centrifuge_scenarios.mjs) and
asserts on the events the SDK reported, in order.
"""

from __future__ import annotations

import asyncio
import json
import math
import time

from pubsocket.auth import Authenticator
from tests.centrifuge_js.conftest import AUTH, StartCf, cf_url, token
from tests.centrifuge_js.harness import sdk_client
from tests.centrifuge_js.proxy import client_frames, proxy_to


def expired() -> str:
    return AUTH.issue("alice", None, {"exp": int(time.time()) - 10})


async def test_connect_subscribe_publish_receive(start_cf: StartCf) -> None:
    srv = await start_cf()
    async with sdk_client(cf_url(srv.port), token=token("alice")) as sdk:
        sdk.send("connect")
        await sdk.expect("connected")
        sdk.send("sub", channel="chat:a", opts={"recoverable": True, "positioned": True})
        sub = await sdk.expect("subscribed", lambda e: e["channel"] == "chat:a")
        assert sub["recoverable"] is True and sub["positioned"] is True
        res = await sdk.request("publish", "chat:a", data={"text": "hi"})
        assert res["ok"], res
        pub = await sdk.expect("publication")
        assert pub["data"] == {"text": "hi"} and pub["offset"] == 1
        await srv.app.hub.publish("chat:a", {"from": "server"})
        pub = await sdk.expect("publication")
        assert pub["data"] == {"from": "server"} and pub["offset"] == 2
        hist = await sdk.request("history", "chat:a")
        assert hist["ok"] and hist["value"]["offsets"] == [1, 2], hist


async def test_expired_token_is_refreshed_through_get_token(start_cf: StartCf) -> None:
    srv = await start_cf()
    async with sdk_client(cf_url(srv.port), token=expired(), getToken=True) as sdk:
        sdk.send("connect")
        await sdk.expect("get_token")
        assert not sdk.seen("connected")
        sdk.send("token", token=token("alice"))
        await sdk.expect("connected")
        sdk.send("sub", channel="chat:t")
        await sdk.expect("subscribed")
        assert not sdk.seen("disconnected")


async def test_refused_connect_is_final(start_cf: StartCf) -> None:
    srv = await start_cf()
    bad = Authenticator(None, "x" * 40).issue("mallory")
    async with sdk_client(cf_url(srv.port), token=bad) as sdk:
        sdk.send("connect")
        gone = await sdk.expect("disconnected")
        assert (gone["code"], gone["reason"]) == (3500, "invalid token"), gone
        await asyncio.sleep(0.5)  # several reconnect delays: it must not try again
        assert not sdk.seen("connected")
        assert len(sdk.seen("connecting")) == 1, sdk.events


async def test_refused_subscription_leaves_the_connection_working(start_cf: StartCf) -> None:
    srv = await start_cf()
    claims = {"subscribe": ["chat:*"], "publish": ["chat:*"]}
    async with sdk_client(cf_url(srv.port), token=token("alice", topics=claims)) as sdk:
        sdk.send("connect")
        await sdk.expect("connected")
        sdk.send("sub", channel="secret:x")
        gone = await sdk.expect("unsubscribed", lambda e: e["channel"] == "secret:x")
        assert gone["code"] == 103, gone  # Centrifuge's "permission denied"
        sdk.send("sub", channel="chat:ok")
        await sdk.expect("subscribed", lambda e: e["channel"] == "chat:ok")
        res = await sdk.request("publish", "secret:y", data=1)
        assert not res["ok"] and res["code"] == 103, res
        res = await sdk.request("publish", "chat:ok", data=2)
        assert res["ok"], res
        assert (await sdk.expect("publication"))["data"] == 2
        assert not sdk.seen("disconnected")


async def test_presence_stats_and_join_leave(start_cf: StartCf) -> None:
    srv = await start_cf()
    url = cf_url(srv.port)
    async with sdk_client(url, token=token("alice")) as alice:
        alice.send("connect")
        alice.send("sub", channel="chat:p", opts={"joinLeave": True})
        await alice.expect("subscribed")
        async with sdk_client(url, token=token("bob")) as bob:
            bob.send("connect")
            bob.send("sub", channel="chat:p", opts={"joinLeave": True})
            await bob.expect("subscribed")
            join = await alice.expect("join", lambda e: e["user"] == "bob")
            assert join["client"] != alice.seen("connected")[0]["client"]
            pres = await alice.request("presence", "chat:p")
            assert pres["ok"] and pres["value"] == {"clients": 2, "users": ["alice", "bob"]}, pres
            stats = await bob.request("presence_stats", "chat:p")
            assert stats["ok"] and stats["value"] == {"numClients": 2, "numUsers": 2}, stats
        await alice.expect("leave", lambda e: e["user"] == "bob")
        stats = await alice.request("presence_stats", "chat:p")
        assert stats["value"] == {"numClients": 1, "numUsers": 1}, stats
        assert len(alice.seen("join", lambda e: e["user"] == "bob")) == 1
        assert not alice.seen("leave", lambda e: e["user"] == "alice")


async def test_several_commands_in_one_frame(start_cf: StartCf) -> None:
    """What the SDK puts in one frame (connect + the subscribes it already has; three
    publishes between startBatching/stopBatching) is all answered; the proxy's copy of
    the client's bytes shows those frames really carried several commands."""
    srv = await start_cf()
    async with proxy_to(srv.port) as proxy, sdk_client(cf_url(proxy.port), "batch",
                                                      token=token("alice")) as sdk:
        sdk.send("sub", channel="chat:b1")
        sdk.send("sub", channel="chat:b2")
        sdk.send("connect")
        await sdk.expect("connected")
        got = {(await sdk.expect("subscribed"))["channel"] for _ in range(2)}
        assert got == {"chat:b1", "chat:b2"}
        sdk.send("batch", ops=[{"op": "publish", "channel": "chat:b2", "data": i, "id": i}
                               for i in range(3)])
        results = [await sdk.expect("result", lambda e, i=i: e["id"] == i) for i in range(3)]
        assert all(r["ok"] for r in results), results
        pubs = [await sdk.expect("publication") for _ in range(3)]
        assert [(p["data"], p["offset"]) for p in pubs] == [(0, 1), (1, 2), (2, 3)]
        frames = [[next((k for k in json.loads(line) if k != "id"), "pong")
                   for line in f.splitlines()]
                  for f in client_frames(bytes(proxy.sent[0]))]
        assert frames[0] == ["connect", "subscribe", "subscribe"], frames
        assert ["publish"] * 3 in frames, frames


async def test_shutdown_sends_the_reconnect_code(start_cf: StartCf) -> None:
    srv = await start_cf()
    async with sdk_client(cf_url(srv.port), token=token("alice"), minReconnectDelay=2000,
                          maxReconnectDelay=2000) as sdk:
        sdk.send("connect")
        sdk.send("sub", channel="chat:s")
        await sdk.expect("subscribed")
        await srv.server.shutdown()
        again = await sdk.expect("connecting", lambda e: e["code"] != 0)
        assert 3000 <= again["code"] < 3500, again  # a reconnect code, not a 1006 drop
        assert not sdk.seen("disconnected")


async def test_live_token_is_refreshed_before_it_expires(start_cf: StartCf) -> None:
    srv = await start_cf(token_grace=0.5)
    exp = math.ceil(time.time() + 2)
    async with sdk_client(cf_url(srv.port), token=AUTH.issue("alice", None, {"exp": exp}),
                          getToken=True) as sdk:
        sdk.send("connect")
        sdk.send("sub", channel="chat:live")
        await sdk.expect("subscribed")
        await sdk.expect("get_token", timeout=5)  # asked ahead of the expiry
        sdk.send("token", token=token("alice"))
        await asyncio.sleep(max(0.0, exp - time.time()) + 1.5)  # past exp and the grace
        await srv.app.hub.publish("chat:live", "after expiry")
        assert (await sdk.expect("publication"))["data"] == "after expiry"
        assert not sdk.seen("disconnected")
        assert not sdk.seen("connecting", lambda e: e["code"] != 0), sdk.events


async def test_subscription_token_grants_and_is_refreshed(start_cf: StartCf) -> None:
    """The connection's `topics` claim refuses private:*; a subscription token for the
    channel grants it. An expired one makes the SDK ask its getToken for a new one."""
    srv = await start_cf()
    conn = token("alice", topics={"subscribe": ["chat:*"]})
    stale = AUTH.issue("alice", None, {"channel": "private:a", "exp": int(time.time()) - 10})
    async with sdk_client(cf_url(srv.port), token=conn) as sdk:
        sdk.send("connect")
        sdk.send("sub", channel="private:a", opts={"token": stale, "getToken": True})
        await sdk.expect("get_sub_token")
        sdk.send("sub_token", channel="private:a",
                 token=AUTH.issue("alice", 60, {"channel": "private:a"}))
        await sdk.expect("subscribed", lambda e: e["channel"] == "private:a")
        await srv.app.hub.publish("private:a", "secret")
        assert (await sdk.expect("publication"))["data"] == "secret"
        wrong = AUTH.issue("alice", 60, {"channel": "private:other"})
        sdk.send("sub", channel="private:b", opts={"token": wrong})
        gone = await sdk.expect("unsubscribed", lambda e: e["channel"] == "private:b")
        assert gone["code"] == 103, gone
