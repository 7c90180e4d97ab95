"""centrifuge-python with ``use_protobuf=True`` (the real SDK) against a real server:
the Centrifuge Protobuf variant end to end, beside JSON and plain clients on one hub.
(Presence and join/leave, token refresh: test_sdk's tests, run in both variants.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from centrifuge import ReplyError
from tests.centrifuge.conftest import PATH, cf_app, token
from tests.centrifuge.test_sdk import sdk, subscribed
from tests.centrifuge_js.proxy import proxy_to


def pb_sdk(url: str, **kwargs: Any) -> Any:
    return sdk(url, use_protobuf=True, **kwargs)


def js(value: Any) -> bytes:
    """A payload as a Protobuf client sends and receives it: JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


async def test_connect_subscribe_publish_history(serve_any: Any) -> None:
    srv = await serve_any(cf_app())
    async with pb_sdk(srv.ws + PATH, token=token("alice", info={"n": 1})) as (client, ev):
        ctx = await ev.next("connected")
        assert ctx.client and ctx.version.startswith("pubsocket")
        sub, sub_ev = await subscribed(client, "chat:pb", recoverable=True)
        first = await sub_ev.next("subscribed")
        assert first.recoverable and first.stream_position.offset == 0
        await sub.publish(js({"text": "hi"}))
        pub = (await sub_ev.next("publication")).pub
        assert (json.loads(pub.data), pub.offset) == ({"text": "hi"}, 1)
        assert (pub.info.user, json.loads(pub.info.conn_info)) == ("alice", {"n": 1})
        spaced = b'{"a": [1, 2], "b": "x"}'  # not re-encoded: the subscriber gets these bytes
        await sub.publish(spaced)
        assert (await sub_ev.next("publication")).pub.data == spaced
        history = await sub.history(limit=10)
        assert [p.data for p in history.publications] == [js({"text": "hi"}), spaced]
        assert history.offset == 2 and history.epoch == first.stream_position.epoch
        newest = await sub.history(limit=1, reverse=True)
        assert [p.offset for p in newest.publications] == [2]


async def test_recovery_after_a_network_drop(serve: Any) -> None:
    app = cf_app()
    srv = await serve(app)
    async with proxy_to(srv.port) as proxy, \
            pb_sdk(f"ws://127.0.0.1:{proxy.port}{PATH}", token=token("alice")) as (client, _):
        sub, sub_ev = await subscribed(client, "chat:pbr", recoverable=True)
        await sub_ev.next("subscribed")
        for i in range(3):
            await sub.publish(js(i))
        got = [(await sub_ev.next("publication")).pub.offset for _ in range(3)]
        proxy.cut()  # no close frame: an abnormal close, the SDK reconnects
        for i in range(3, 8):
            await app.hub.publish("chat:pbr", i)
        proxy.resume()
        again = await sub_ev.next("subscribed", within=10)
        assert again.was_recovering and again.recovered
        pubs = [(await sub_ev.next("publication")).pub for _ in range(5)]
        assert got + [p.offset for p in pubs] == list(range(1, 9))  # each once, in order
        assert [json.loads(p.data) for p in pubs] == [3, 4, 5, 6, 7]


async def test_json_protobuf_and_plain_clients_share_a_channel(serve: Any) -> None:
    srv = await serve(cf_app())
    url = srv.ws + PATH
    async with pb_sdk(url, token=token("pb")) as (pb_client, _), \
            sdk(url, token=token("json")) as (json_client, _), \
            connect(srv.ws + "/ws/chat") as plain:
        pb_sub, pb_ev = await subscribed(pb_client, "chat:x")
        json_sub, json_ev = await subscribed(json_client, "chat:x")
        await plain.send(json.dumps({"action": "subscribe", "topic": "chat:x"}))
        await asyncio.sleep(0.1)  # plain mode sends no ack
        await plain.send(json.dumps({"action": "publish", "topic": "chat:x",
                                     "data": {"from": "plain"}}))
        await pb_sub.publish(js({"from": "protobuf"}))
        await json_sub.publish({"from": "json"})
        want = [{"from": "plain"}, {"from": "protobuf"}, {"from": "json"}]
        assert [json.loads((await pb_ev.next("publication")).pub.data)
                for _ in range(3)] == want
        assert [(await json_ev.next("publication")).pub.data for _ in range(3)] == want
        async with asyncio.timeout(5):
            assert [json.loads(await plain.recv()) for _ in range(3)] == want
        # Protobuf bytes with line breaks: re-encoded, so the JSON wire's
        # newline-delimited frame still parses as one reply
        await pb_sub.publish(b'{\n  "lines": [1,\r\n 2]\n}')
        assert (await json_ev.next("publication")).pub.data == {"lines": [1, 2]}
        assert json.loads(await plain.recv()) == {"lines": [1, 2]}


async def test_data_that_is_not_json_is_refused_and_the_connection_stays(
        serve: Any) -> None:
    srv = await serve(cf_app())
    async with pb_sdk(srv.ws + PATH, token=token("alice")) as (client, events):
        sub, sub_ev = await subscribed(client, "chat:bin")
        with pytest.raises(ReplyError) as refused:
            await sub.publish(b"\xff\x00 not json")
        assert refused.value.code == 107
        await sub.publish(js("after"))  # same connection, still subscribed
        assert json.loads((await sub_ev.next("publication")).pub.data) == "after"
        assert not [n for n, _ in events.seen if n == "disconnected"]


async def test_a_refused_token_closes_3500_as_in_json(serve: Any) -> None:
    # (An expired token refreshed through get_token: test_sdk's test, in both variants.)
    srv = await serve(cf_app())
    async with pb_sdk(srv.ws + PATH, token="not-a-jwt") as (_client, events):
        ctx = await events.next("disconnected")
        assert (ctx.code, ctx.reason) == (3500, "invalid token")


async def test_rpc_data_is_json_bytes_both_ways(serve: Any) -> None:
    async def hook(principal: Any, method: str, data: Any) -> Any:
        return {"method": method, "echo": data}

    srv = await serve(cf_app(rpc=hook))
    async with pb_sdk(srv.ws + PATH, token=token("alice")) as (client, _):
        result = await client.rpc("sum", js([1, 2]))
        assert json.loads(result.data) == {"method": "sum", "echo": [1, 2]}
        with pytest.raises(ReplyError) as refused:
            await client.rpc("sum", b"\x00 not json")
        assert refused.value.code == 107
