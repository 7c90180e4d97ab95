"""The built-in pub/sub endpoint in both wire modes, its rules, limits and close codes.

Every test keeps a separate publisher/subscriber pair alive and checks it still works
after the bad input, so no refusal harms other clients. The tests run on both transports
(`serve_any`), except the two that are about the native server's own counters and writes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from pubsocket import App, pubsub
from pubsocket.auth import Authenticator
from pubsocket.brokers import Publication
from tests.app.test_http import ahttp
from tests.conftest import API_KEY, SECRET, make_settings, normalize_from

V1 = ["pubsocket.v1"]


def hub_app(**changes: Any) -> App:
    app = App(make_settings(**changes))
    pubsub("/ws/chat", app=app)
    pubsub("/ws/secure", app=app, secured=True)

    @app.get("/notify/{topic}")
    async def notify(request: Any, response: Any) -> Any:
        await app.hub.publish(request.params["topic"], {"from": "route"})
        return response({"ok": True})

    return app


def cmd(action: str, topic: str, **extra: Any) -> str:
    return json.dumps({"action": action, "topic": topic, **extra})


async def recv_json(ws: ClientConnection, timeout: float = 3.0) -> Any:
    return normalize_from(json.loads(await asyncio.wait_for(ws.recv(), timeout)))


def assert_subscribe_ack(reply: Any, cmd_id: Any, topic: str, offset: int = 0) -> str:
    """A v1 subscribe ack for `topic` at `offset`; returns its epoch (a non-empty string)."""
    assert isinstance(reply, dict)
    epoch = reply.get("epoch")
    assert isinstance(epoch, str) and epoch
    assert reply == {"type": "ack", "id": cmd_id, "topic": topic, "offset": offset,
                     "epoch": epoch}
    return epoch


async def subscribed(url: str, topic: str, v1: bool = False, **kw: Any) -> ClientConnection:
    ws = await connect(url, subprotocols=V1 if v1 else None, **kw)  # type: ignore[arg-type]
    await ws.send(cmd("subscribe", topic, id="s") if v1 else cmd("subscribe", topic))
    if v1:
        assert_subscribe_ack(await recv_json(ws), "s", topic)
    else:
        await settle(ws)
    return ws


async def settle(ws: ClientConnection) -> None:
    """Round-trip through the server so earlier commands took effect (plain mode)."""
    await ws.send(cmd("subscribe", "_settle"))
    await ws.send(cmd("publish", "_settle", data="ok"))
    assert await recv_json(ws) == "ok"
    await ws.send(cmd("unsubscribe", "_settle"))


async def until(condition: Any, timeout: float = 2.0) -> None:
    """Wait (bounded) for `condition()`; fail the test if it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def bystanders_still_work(url: str) -> None:
    sub = await subscribed(url, "bystanders")
    async with connect(url) as pub:
        await pub.send(cmd("publish", "bystanders", data={"n": 1}))
        assert await recv_json(sub) == {"n": 1}
    await sub.close()


async def test_seed_protocol_plain_mode_delivers_exactly_json_data(serve_any: Any) -> None:
    srv = await serve_any(hub_app())
    url = f"{srv.ws}/ws/chat"
    a = await subscribed(url, "chatroom")
    b = await subscribed(url, "chatroom")
    await a.send(cmd("publish", "chatroom", data={"message": "Hello!"}))
    assert await b.recv() == '{"message":"Hello!"}'
    assert await recv_json(a) == {"message": "Hello!"}  # the publisher is subscribed too
    await b.send(cmd("unsubscribe", "chatroom"))
    await settle(b)
    await a.send(cmd("publish", "chatroom", data=[1, 2]))
    assert await recv_json(a) == [1, 2]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(b.recv(), 0.2)
    await a.close()
    await b.close()


async def test_v1_mode_envelopes_acks_and_correlated_errors(serve_any: Any) -> None:
    srv = await serve_any(hub_app())
    url = f"{srv.ws}/ws/chat"
    ws = await subscribed(url, "room.1", v1=True)
    assert ws.subprotocol == "pubsocket.v1"
    await ws.send(cmd("publish", "room.1", data={"x": 1}, id=7))
    replies = [await recv_json(ws), await recv_json(ws)]
    assert {"type": "ack", "id": 7, "offset": 1} in replies
    assert {"type": "message", "topic": "room.1", "offset": 1, "data": {"x": 1}} in replies
    await ws.send(cmd("publish", "bad topic!", data=1, id="p2"))
    error = await recv_json(ws)
    assert error["type"] == "error" and error["code"] == "invalid_topic" and error["id"] == "p2"
    assert "bad topic!" not in error["message"]  # never echoes input
    await ws.close()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json {", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"action": "explode", "topic": "t"}', "bad_action"),
        ('{"action": "subscribe"}', "invalid_topic"),
        ('{"action": "subscribe", "topic": ""}', "invalid_topic"),
        ('{"action": "subscribe", "topic": "' + "a" * 256 + '"}', "invalid_topic"),
        ('{"action": "subscribe", "topic": "sp ace"}', "invalid_topic"),
        ('{"action": "subscribe", "topic": 5}', "invalid_topic"),
        ('{"action": "publish", "topic": "t"}', "missing_data"),
        ('{"action": "publish", "topic": "t", "data": 1, "id": {"x": 1}}', "bad_id"),
    ],
)
async def test_bad_commands_get_fixed_error_codes(serve_any: Any, message: str, code: str) -> None:
    srv = await serve_any(hub_app())
    url = f"{srv.ws}/ws/chat"
    async with connect(url) as ws:
        await ws.send(message)
        reply = await recv_json(ws)
        assert reply == {"type": "error", "code": code, "message": reply["message"]}
        assert message not in reply["message"]
        await settle(ws)  # still open and working
    await bystanders_still_work(url)


async def test_topic_alphabet_and_length_edges(serve_any: Any) -> None:
    srv = await serve_any(hub_app())
    topic = "A-z_0.9:@/" + "x" * 245
    assert len(topic) == 255
    ws = await subscribed(f"{srv.ws}/ws/chat", topic, v1=True)
    await ws.close()


async def test_binary_frames_close_with_1003(serve_any: Any) -> None:
    srv = await serve_any(hub_app())
    async with connect(f"{srv.ws}/ws/chat") as ws:
        await ws.send(b"\x01\x02")
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 1003
    await bystanders_still_work(f"{srv.ws}/ws/chat")


async def test_hundred_protocol_errors_close_with_1008(serve_any: Any) -> None:
    srv = await serve_any(hub_app())
    async with connect(f"{srv.ws}/ws/chat") as ws:
        for _ in range(100):
            await ws.send("nope")
        errors = 0
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                assert (await recv_json(ws))["code"] == "bad_json"
                errors += 1
    assert errors == 100 and ws.close_code == 1008
    await bystanders_still_work(f"{srv.ws}/ws/chat")


async def test_subscription_cap(serve_any: Any) -> None:
    srv = await serve_any(hub_app(max_subscriptions=3))
    async with connect(f"{srv.ws}/ws/chat", subprotocols=V1) as ws:  # type: ignore[list-item]
        for i in range(4):
            await ws.send(cmd("subscribe", f"t{i}", id=i))
        replies = [await recv_json(ws) for _ in range(4)]
        for i in range(3):
            assert_subscribe_ack(replies[i], i, f"t{i}")
        assert replies[3]["code"] == "subscription_limit" and replies[3]["id"] == 3
        await ws.send(cmd("subscribe", "t0", id="again"))  # re-subscribing is not a new one
        assert_subscribe_ack(await recv_json(ws), "again", "t0")


async def test_rate_limit_closes_with_4029(serve_any: Any) -> None:
    srv = await serve_any(hub_app(rate_limit=10, rate_burst=20))
    async with connect(f"{srv.ws}/ws/chat") as ws:
        for _ in range(40):
            await ws.send(cmd("unsubscribe", "t"))
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await ws.recv()
    assert ws.close_code == 4029
    await bystanders_still_work(f"{srv.ws}/ws/chat")


async def test_rate_limit_zero_turns_it_off(serve_any: Any) -> None:
    srv = await serve_any(hub_app(rate_limit=0, rate_burst=1))
    async with connect(f"{srv.ws}/ws/chat") as ws:
        for _ in range(300):
            await ws.send(cmd("unsubscribe", "t"))
        await settle(ws)


async def test_token_expiry_closes_with_4001(serve_any: Any) -> None:
    srv = await serve_any(hub_app())
    token = Authenticator(None, SECRET).issue("alice", ttl=2)  # whole seconds: 1-2 s left
    async with connect(f"{srv.ws}/ws/secure",
                       additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        started = time.monotonic()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4001
    assert time.monotonic() - started < 4


async def test_secured_endpoint_needs_a_token(serve_any: Any) -> None:
    srv = await serve_any(hub_app())
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(f"{srv.ws}/ws/secure"):
            pass
    assert info.value.response.status_code == 401


async def test_topic_state_goes_with_its_last_subscriber(serve_any: Any) -> None:
    app = hub_app()
    srv = await serve_any(app)
    url = f"{srv.ws}/ws/chat"
    async with connect(url) as pub:
        await pub.send(cmd("publish", "nobody-here", data=1))
        await settle(pub)
        await until(lambda: app.hub.topic_count == 0)  # a publish to no one creates no state
        subs = [await subscribed(url, f"topic{i % 3}") for i in range(6)]
        await until(lambda: app.hub.topic_count == 3 and app.hub.subscription_count == 6)
        for ws in subs:
            await ws.close()
        await until(lambda: app.hub.topic_count == 0 and app.hub.subscription_count == 0)


async def test_http_publish_api(serve_any: Any) -> None:
    srv = await serve_any(hub_app())
    ws = await subscribed(f"{srv.ws}/ws/chat", "news")
    body = json.dumps({"topic": "news", "data": {"headline": "hi"}}).encode()
    status, _, reply = await ahttp("POST", f"{srv.http}/api/publish", body,
                                   {"Content-Type": "application/json",
                                    "Authorization": f"Bearer {API_KEY}"})
    answer = json.loads(reply)
    assert status == 200
    assert isinstance(answer.get("epoch"), str) and answer["epoch"]
    assert answer == {"ok": True, "offset": 1, "epoch": answer["epoch"]}
    assert await recv_json(ws) == {"headline": "hi"}
    status, _, _ = await ahttp("POST", f"{srv.http}/api/publish", body,
                               {"Content-Type": "application/json"})
    assert status == 401
    for bad, code in ((b'{"topic": "bad topic", "data": 1}', "invalid_topic"),
                      (b'{"topic": "news"}', "missing_data"), (b"[1]", "bad_json")):
        status, _, reply = await ahttp("POST", f"{srv.http}/api/publish", bad,
                                       {"Content-Type": "application/json",
                                        "Authorization": f"Bearer {API_KEY}"})
        assert (status, json.loads(reply)["error"]) == (400, code)
    await ws.close()


async def test_server_side_publish_from_route_and_thread(serve_any: Any) -> None:
    app = hub_app()
    srv = await serve_any(app)
    ws = await subscribed(f"{srv.ws}/ws/chat", "alerts")
    status, _, _ = await ahttp("GET", f"{srv.http}/notify/alerts")
    assert status == 200
    assert await recv_json(ws) == {"from": "route"}
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(
            app.hub.publish_threadsafe("alerts", {"from": "thread"}).result(5)))
    thread.start()
    assert await recv_json(ws) == {"from": "thread"}
    await asyncio.to_thread(thread.join, 5)
    assert len(result) == 1 and isinstance(result[0], Publication)
    assert result[0].offset == 2  # after the route's publish (offset 1) on the same topic
    assert json.loads(result[0].payload) == {"from": "thread"}
    with pytest.raises(ValueError, match="invalid topic"):
        await app.hub.publish("no spaces allowed", 1)
    await ws.close()


async def test_metrics_are_scraped_in_prometheus_format(serve: Any) -> None:
    # Native only: the transport counters (messages in, bytes out) are the native
    # server's; under ASGI the server owns the socket and /metrics shows the hub's.
    from prometheus_client.parser import text_string_to_metric_families

    srv = await serve(hub_app())
    ws = await subscribed(f"{srv.ws}/ws/chat", "m1", v1=True)
    await ws.send(cmd("subscribe", "m2", id=2))
    await ws.send(cmd("publish", "m1", data={"x": 1}, id=3))
    replies = [await recv_json(ws) for _ in range(3)]
    assert {"type": "ack", "id": 3, "offset": 1} in replies
    status, headers, body = await ahttp("GET", f"{srv.http}/metrics",
                                        headers={"Authorization": f"Bearer {API_KEY}"})
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    samples = {s.name: s.value for family in text_string_to_metric_families(body.decode())
               for s in family.samples}
    assert samples["pubsocket_connections"] == 1
    assert samples["pubsocket_subscriptions"] == 2
    assert samples["pubsocket_topics"] == 2
    assert samples["pubsocket_published_total"] >= 1
    assert samples["pubsocket_deliveries_total"] >= 1
    assert samples["pubsocket_messages_in_total"] >= 3
    assert samples["pubsocket_bytes_out_total"] > 0
    assert samples["pubsocket_slow_consumer_closes_total"] == 0
    assert "pubsocket_broker_reconnects_total" in samples
    await ws.close()


async def test_stalled_writes_are_aborted_after_the_write_timeout(serve: Any) -> None:
    # Native only: WRITE_TIMEOUT applies to the native server's socket writes; under
    # ASGI the server owns them (OUTBOUND_BUDGET still bounds the adapter's queue).
    from tests.integration.test_slow_consumer import raw_subscriber

    app = hub_app(outbound_budget=0, write_timeout=0.5, rate_limit=0, publish_byte_rate=0)
    srv = await serve(app)
    _reader, writer = await raw_subscriber(srv.port, "stall")  # never reads
    await until(lambda: app.hub.subscriber_count("stall") == 1)
    async with connect(f"{srv.ws}/ws/chat") as pub:
        for _ in range(800):  # ~8 MiB: past the socket buffers (tcp_wmem max 4 MiB here)
            await pub.send(cmd("publish", "stall", data="x" * 10_000))
        started = time.monotonic()
        await until(lambda: app.hub.subscriber_count("stall") == 0, timeout=5)
        assert time.monotonic() - started < 3
        await settle(pub)  # the publisher never waited for the stalled one
    writer.close()
