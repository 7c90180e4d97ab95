"""The Centrifuge endpoint on the wire: framing, the connect gate, pings, close codes,
subscription token expiry, a slow SDK consumer, websocat crossing protocols."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from centrifuge import Client, ClientEventHandler, SubscriptionEventHandler
from pubsocket.brokers.base import HistoryPolicy
from tests.centrifuge.conftest import PATH, cf_app, token
from tests.tools import require


def frame(*commands: dict[str, Any]) -> str:
    return "\n".join(json.dumps(c) for c in commands)


async def replies(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next `count` JSON objects (a frame may hold several, one per line)."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while len(out) < count:
            message = await ws.recv()
            assert isinstance(message, str)
            out += [json.loads(line) for line in message.split("\n") if line]
    return out


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    async with asyncio.timeout(5):
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason


async def test_the_rate_limit_counts_commands_not_frames(serve: Any) -> None:
    # 100 commands/s, burst 200: one frame of 150 publishes passes, one more frame of
    # 150 right behind it is over the limit (3013, reconnect) however few frames it took.
    srv = await serve(cf_app(rate_limit=100, rate_burst=200))
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame({"id": 1, "connect": {"token": token("alice")}}))
        await replies(ws, 1)
        batch = [{"id": n, "publish": {"channel": "chat:r", "data": n}}
                 for n in range(2, 152)]
        await ws.send(frame(*batch))
        assert len(await replies(ws, 150)) == 150
        await ws.send(frame(*batch))
        assert await closed_with(ws) == (3013, "too many requests")


async def test_several_commands_in_one_frame_run_in_order(serve: Any) -> None:
    srv = await serve(cf_app())
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame(
            {"id": 1, "connect": {"token": token("alice"), "name": "raw"}},
            {"id": 2, "subscribe": {"channel": "chat:f"}},
            {"id": 3, "publish": {"channel": "chat:f", "data": {"n": 1}}},
            {"id": 4, "history": {"channel": "chat:f", "limit": -1}},
            {"id": 5, "unsubscribe": {"channel": "chat:f"}},
            {"id": 6, "subscribe": {"channel": "bad topic!"}},
            {}))
        got = await replies(ws, 7)
    ids = [r.get("id") for r in got]
    assert ids == [1, 2, None, 3, 4, 5, 6]  # the delivery precedes the publish reply
    assert got[0]["connect"]["ping"] == 25 and got[0]["connect"]["pong"] is True
    assert got[1]["subscribe"]["offset"] == 0 and got[1]["subscribe"]["recoverable"]
    me = {"user": "alice", "client": got[0]["connect"]["client"]}  # the publisher: this one
    assert got[2] == {"push": {"channel": "chat:f", "pub": {"data": {"n": 1}, "offset": 1,
                                                            "info": me}}}
    assert got[4]["history"]["publications"] == [{"data": {"n": 1}, "offset": 1, "info": me}]
    assert got[5] == {"id": 5, "unsubscribe": {}}
    assert got[6] == {"id": 6, "error": {"code": 102, "message": "unknown channel"}}


@pytest.mark.parametrize("first", [
    {"id": 1, "subscribe": {"channel": "chat:1"}},  # nothing before connect
    {"id": 1, "bogus": {}},  # no such method
    "not json",
])
async def test_bad_requests_close_3501(serve: Any, first: Any) -> None:
    srv = await serve(cf_app())
    async with connect(srv.ws + PATH) as ws:
        await ws.send(first if isinstance(first, str) else json.dumps(first))
        assert await closed_with(ws) == (3501, "bad request")


async def test_secured_endpoint_without_token_closes_3500(serve: Any) -> None:
    srv = await serve(cf_app())
    async with connect(srv.ws + PATH) as ws:  # the upgrade itself needs no token
        await ws.send(json.dumps({"id": 1, "connect": {}}))
        assert await closed_with(ws) == (3500, "invalid token")


async def test_pings_come_from_one_sweep_and_pongs_are_ignored(serve_any: Any) -> None:
    srv = await serve_any(cf_app(centrifuge_ping=0.3))
    async with connect(srv.ws + PATH) as a, connect(srv.ws + PATH) as b:
        for ws in (a, b):
            await ws.send(json.dumps({"id": 1, "connect": {"token": token("alice")}}))
            assert (await replies(ws, 1))[0]["connect"]["ping"] == 1
        for _ in range(2):
            for ws in (a, b):
                assert await replies(ws, 1) == [{}]
                await ws.send("{}")  # the pong: no reply
        await a.send(json.dumps({"id": 2, "presence_stats": {"channel": "room:z"}}))
        got = await replies(a, 1)
        while got == [{}]:
            got = await replies(a, 1)
        assert got == [{"id": 2, "presence_stats": {"num_clients": 0, "num_users": 0}}]


async def test_expired_connection_token_closes_3005(serve: Any) -> None:
    srv = await serve(cf_app(token_grace=0.1))
    async with connect(srv.ws + PATH) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": token("alice", ttl=2)}}))
        connected = (await replies(ws, 1))[0]["connect"]  # exp is whole seconds: 1-2 s left
        assert connected["expires"] is True and connected["ttl"] in (0, 1, 2)
        assert await closed_with(ws) == (3005, "connection expired")


async def test_subscription_token_expiry_and_sub_refresh(serve: Any) -> None:
    srv = await serve(cf_app(token_grace=0.1))
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame(
            {"id": 1, "connect": {"token": token("alice", topics={"subscribe": []})}},
            {"id": 2, "subscribe": {"channel": "vip:a",
                                    "token": token("alice", ttl=1, channel="vip:a")}},
            {"id": 3, "subscribe": {"channel": "vip:b",
                                    "token": token("alice", ttl=1, channel="vip:b")}},
            {"id": 4, "sub_refresh": {"channel": "vip:b",
                                      "token": token("alice", ttl=60, channel="vip:b")}},
            {"id": 5, "subscribe": {"channel": "vip:c",
                                    "token": token("bob", channel="vip:c")}}))
        got = await replies(ws, 5)
        assert got[1]["subscribe"]["expires"] is True
        assert got[3]["sub_refresh"]["expires"] is True
        assert got[3]["sub_refresh"]["ttl"] in (59, 60)
        assert got[4]["error"]["code"] == 103  # another user's token
        push = (await replies(ws, 1))[0]  # vip:a was not refreshed
        assert push == {"push": {"channel": "vip:a", "unsubscribe": {
            "code": 2501, "reason": "subscription expired"}}}
        await ws.send(json.dumps({"id": 6, "subscribe": {
            "channel": "vip:a", "token": token("alice", ttl=-5, channel="vip:a")}}))
        assert (await replies(ws, 1))[0]["error"]["code"] == 109


async def test_disconnect_user_closes_3503(serve: Any) -> None:
    app = cf_app()
    srv = await serve(app)
    async with connect(srv.ws + PATH) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": token("alice")}}))
        await replies(ws, 1)
        await app.hub.disconnect_user("alice")
        assert await closed_with(ws) == (3503, "force disconnect")


async def test_websocat_both_ways(serve: Any) -> None:
    websocat = require("websocat", "a websocat client on /ws/chat")
    srv = await serve(cf_app())
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame({"id": 1, "connect": {"token": token("alice")}},
                            {"id": 2, "subscribe": {"channel": "chat:w"}}))
        await replies(ws, 2)
        proc = await asyncio.create_subprocess_exec(
            websocat, f"ws://127.0.0.1:{srv.port}/ws/chat", stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write((json.dumps({"action": "subscribe", "topic": "chat:w"}) + "\n"
                              + json.dumps({"action": "publish", "topic": "chat:w",
                                            "data": {"via": "websocat"}}) + "\n").encode())
            await proc.stdin.drain()
            assert (await replies(ws, 1))[0]["push"]["pub"]["data"] == {"via": "websocat"}
            async with asyncio.timeout(5):
                assert json.loads(await proc.stdout.readline()) == {"via": "websocat"}
                await ws.send(json.dumps({"id": 3, "publish": {
                    "channel": "chat:w", "data": {"via": "centrifuge"}}}))
                assert json.loads(await proc.stdout.readline()) == {"via": "centrifuge"}
        finally:
            proc.kill()
            await proc.wait()


async def test_slow_sdk_consumer_is_closed_3008_and_recovers(serve: Any) -> None:
    total = 1500
    # The recovery replays 1500 publications of 8 KB in one reply: over the default
    # history reply caps (which would answer recovered: false) and the per-topic history
    # byte cap, so they are lifted here. Compression off: the SDK offers
    # permessage-deflate, which shrinks each padded publication to ~100 bytes (the
    # budget would not be reached).
    app = cf_app(outbound_budget=64 * 1024, rate_limit=0, publish_byte_rate=0,
                 compression="off",
                 history_topic_max_bytes=0, history_reply_limit=0,
                 history_reply_bytes=0, reply_backlog=0,
                 history={"slow:*": HistoryPolicy(total + 10, 120)})
    srv = await serve(app)
    url = srv.ws + PATH
    received: list[int] = []
    codes: list[int] = []
    ready, unblock, done = threading.Event(), threading.Event(), threading.Event()

    class Sub(SubscriptionEventHandler):  # type: ignore[misc]
        async def on_subscribed(self, ctx: Any) -> None:
            ready.set()

        async def on_publication(self, ctx: Any) -> None:
            received.append(ctx.pub.offset)
            if len(received) == 1:
                unblock.wait(30)  # blocks the client's loop: its socket is not read
            if ctx.pub.offset == total:
                done.set()

    class Events(ClientEventHandler):  # type: ignore[misc]
        async def on_connecting(self, ctx: Any) -> None:
            codes.append(ctx.code)

    def run_client() -> None:
        async def main() -> None:
            client = Client(url, events=Events(), token=token("alice"),
                            min_reconnect_delay=0.05, max_reconnect_delay=0.2)
            await client.connect()
            sub = client.new_subscription("slow:1", events=Sub(), recoverable=True)
            await sub.subscribe()
            for _ in range(600):  # bounded: 60 s
                if done.is_set():
                    break
                await asyncio.sleep(0.1)
            await client.disconnect()
            # The SDK closes its socket in a task it does not await (`_close_transport`);
            # asyncio.run would cancel that close mid-handshake and leave the socket
            # open (CI: "unclosed transport" at teardown), so it is let finish first.
            closing = asyncio.all_tasks() - {asyncio.current_task()}
            if closing:
                await asyncio.wait(closing, timeout=5)

        asyncio.run(main())

    thread = threading.Thread(target=run_client, daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 10)
        pad = "x" * 8000
        stats = srv.server.state.stats
        for i in range(total):
            await app.hub.publish("slow:1", {"i": i, "pad": pad})
            if i % 50 == 0:
                await asyncio.sleep(0)
        for _ in range(100):  # bounded: 10 s
            if stats.slow_closes:
                break
            await asyncio.sleep(0.1)
        assert stats.slow_closes >= 1
    finally:
        unblock.set()
    assert await asyncio.to_thread(done.wait, 30)
    await asyncio.to_thread(thread.join, 10)
    assert 3008 in codes
    assert received == list(range(1, total + 1))  # recovered: none missing, none twice


async def test_a_connection_without_connect_is_closed_as_stale(serve_any: Any) -> None:
    # 0.5 s: the connected one must send its connect within a sweep even on a busy box.
    srv = await serve_any(cf_app(centrifuge_ping=0.5))
    async with connect(srv.ws + PATH) as idle, connect(srv.ws + PATH) as ok:
        await ok.send(json.dumps({"id": 1, "connect": {"token": token("alice")}}))
        await replies(ok, 1)
        assert await closed_with(idle) == (3502, "stale")  # after one to two sweeps
        assert await replies(ok, 1) == [{}]  # the connected one is pinged, not closed


async def quiet(ws: ClientConnection, within: float) -> list[dict[str, Any]]:
    """Whatever arrives within `within` seconds (expected: nothing)."""
    out: list[dict[str, Any]] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(within):
            while True:
                message = await ws.recv()
                assert isinstance(message, str)
                out += [json.loads(line) for line in message.split("\n") if line]
    return out


async def test_a_refused_resubscribe_keeps_the_subscription_token_expiry(serve: Any) -> None:
    # A re-subscribe that is refused (no permission, an expired or a foreign token)
    # changes nothing: the token-held subscription still ends at its token's expiry.
    srv = await serve(cf_app(token_grace=0.1))
    expired = token("alice", ttl=-10, channel="vip:a")
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame(
            {"id": 1, "connect": {"token": token("alice", topics={"subscribe": []})}},
            {"id": 2, "subscribe": {"channel": "vip:a",
                                    "token": token("alice", ttl=1, channel="vip:a")}},
            {"id": 3, "subscribe": {"channel": "vip:a"}},
            {"id": 4, "subscribe": {"channel": "vip:a", "token": expired}},
            {"id": 5, "subscribe": {"channel": "vip:a",
                                    "token": token("alice", channel="vip:b")}}))
        got = await replies(ws, 5)
        assert "subscribe" in got[1]
        assert [r["error"]["code"] for r in got[2:]] == [103, 109, 103]
        assert await replies(ws, 1) == [{"push": {"channel": "vip:a", "unsubscribe": {
            "code": 2501, "reason": "subscription expired"}}}]
        await srv.app.hub.publish("vip:a", {"secret": 1})
        assert await quiet(ws, 0.5) == []


async def test_a_connection_refresh_keeps_subscriptions_granted_by_tokens(serve: Any) -> None:
    # The topics claim allows none of them; the subscription tokens (one with exp, one
    # without) granted them, and a connection refresh must not take them away.
    srv = await serve(cf_app())
    none = {"subscribe": []}
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame(
            {"id": 1, "connect": {"token": token("alice", topics=none)}},
            {"id": 2, "subscribe": {"channel": "vip:a",
                                    "token": token("alice", channel="vip:a")}},
            {"id": 3, "subscribe": {"channel": "vip:b",
                                    "token": token("alice", None, channel="vip:b")}}))
        assert ["subscribe" in r for r in await replies(ws, 3)] == [False, True, True]
        await ws.send(frame({"id": 4, "refresh": {"token": token("alice", topics=none)}}))
        assert list((await replies(ws, 1))[0]) == ["id", "refresh"]  # no unsubscribe push
        await srv.app.hub.publish("vip:a", 1)
        await srv.app.hub.publish("vip:b", 2)
        pubs = await replies(ws, 2)
        assert [(p["push"]["channel"], p["push"]["pub"]["data"]) for p in pubs] == [
            ("vip:a", 1), ("vip:b", 2)]


async def test_a_subscribe_over_the_cap_holds_no_token_clock(serve: Any) -> None:
    srv = await serve(cf_app(max_subscriptions=1))
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame(
            {"id": 1, "connect": {"token": token("alice", topics={"subscribe": []})}},
            *({"id": 2 + i, "subscribe": {"channel": f"vip:{i}",
                                          "token": token("alice", channel=f"vip:{i}")}}
              for i in range(5))))
        got = await replies(ws, 6)
        assert [r.get("error", {}).get("code") for r in got[2:]] == [106] * 4
        (session,) = srv.app.hub.registry._users["alice"]  # the one connection's session
        assert session.topics == {"vip:0"} and set(session.hook.sub_clocks) == {"vip:0"}


@pytest.mark.parametrize("ping", [0, 25])
async def test_the_connect_deadline_does_not_wait_for_pings(serve: Any, ping: float) -> None:
    # Pings off (0) or rare (25 s): a connection that never connects is still closed
    # within the connect timeout (connect_timeout).
    srv = await serve(cf_app(centrifuge_ping=ping, connect_timeout=0.3))
    async with connect(srv.ws + PATH) as idle, connect(srv.ws + PATH) as ok:
        await ok.send(json.dumps({"id": 1, "connect": {"token": token("alice")}}))
        await replies(ok, 1)
        async with asyncio.timeout(2):
            assert await closed_with(idle) == (3502, "stale")
        assert await quiet(ok, 0.2) == []  # connected in time: not closed, no ping yet


async def test_history_without_since_reads_from_the_oldest_kept(serve: Any) -> None:
    # Centrifugo reads its stream from the front: without `since` the oldest `limit`;
    # reversed, the newest `limit`, newest first.
    srv = await serve(cf_app())
    for n in range(1, 5):
        await srv.app.hub.publish("chat:h", n)
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame(
            {"id": 1, "connect": {"token": token("alice")}},
            {"id": 2, "history": {"channel": "chat:h", "limit": 2}},
            {"id": 3, "history": {"channel": "chat:h", "limit": 2, "reverse": True}},
            {"id": 4, "history": {"channel": "chat:h", "limit": -1}}))
        got = await replies(ws, 4)
        assert [[p["offset"] for p in r["history"]["publications"]] for r in got[1:]] == [
            [1, 2], [4, 3], [1, 2, 3, 4]]


async def test_an_unsubscribe_ends_the_token_hold(serve: Any) -> None:
    # Token-held, unsubscribed, then subscribed on the topics claim: the old token's
    # expiry must not end the new subscription.
    srv = await serve(cf_app(token_grace=0.1))
    async with connect(srv.ws + PATH) as ws:
        await ws.send(frame(
            {"id": 1, "connect": {"token": token("alice", topics={"subscribe": ["vip:*"]})}},
            {"id": 2, "subscribe": {"channel": "vip:a",
                                    "token": token("alice", ttl=1, channel="vip:a")}},
            {"id": 3, "unsubscribe": {"channel": "vip:a"}},
            {"id": 4, "subscribe": {"channel": "vip:a"}}))
        assert [next(iter(r.keys() - {"id"})) for r in await replies(ws, 4)] == [
            "connect", "subscribe", "unsubscribe", "subscribe"]
        assert await quiet(ws, 1.6) == []  # past the old token's exp + grace
        await srv.app.hub.publish("vip:a", 1)
        assert (await replies(ws, 1))[0]["push"]["pub"]["data"] == 1
