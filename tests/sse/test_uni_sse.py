"""Unidirectional SSE at /connection/uni_sse on a real server, read with a raw client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pubsocket.web import uni_sse
from tests.centrifuge_js.conftest import cf_app
from tests.sse.client import SseClient, query


def sse_app(**settings: Any) -> Any:
    app = cf_app(**settings)
    uni_sse("/connection/uni_sse", app=app, secured=True)
    return app


async def test_connect_subscribe_and_publications(serve: Any) -> None:
    srv = await serve(sse_app())
    hub = srv.app.hub
    stream = await SseClient.open(srv.port, query({"news": {}}))
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    first = await stream.next()
    assert set(first.data) == {"connect"} and first.data["connect"]["client"]
    sub = await stream.next()
    assert sub.data["channel"] == "news" and sub.data["subscribe"]["recoverable"]
    assert sub.id is not None
    await hub.publish("news", {"n": 1})
    pub = await stream.until(lambda d: "pub" in d)
    assert pub.data == {"channel": "news", "pub": {"data": {"n": 1}, "offset": 1}}
    assert pub.id is not None and pub.id.endswith(f";1:{sub.data['subscribe']['epoch']}")
    await stream.close()


async def _pubs(stream: SseClient, count: int) -> list[Any]:
    return [await stream.until(lambda d: "pub" in d) for _ in range(count)]


async def test_last_event_id_resumes_every_channel_exactly(serve: Any) -> None:
    srv = await serve(sse_app())
    hub = srv.app.hub
    path = query({"a": {}, "b": {}, "c": {}})
    stream = await SseClient.open(srv.port, path)
    await hub.publish("a", 1)
    await hub.publish("b", 1)
    seen = await _pubs(stream, 2)
    last = seen[-1].id
    await stream.close()
    for n in (2, 3):  # published while the client is away
        await hub.publish("a", n)
        await hub.publish("c", n)
    again = await SseClient.open(srv.port, path, last_id=last)
    events = [await again.until(lambda d: "subscribe" in d or "pub" in d)
              for _ in range(7)]
    assert [(e.data["channel"], e.data["subscribe"]["recovered"]
             if "subscribe" in e.data else e.data["pub"]["data"]) for e in events] == [
        ("a", True), ("a", 2), ("a", 3), ("b", True), ("c", True), ("c", 2), ("c", 3)]
    # Each replayed event's id names all three channels, this one advanced.
    assert events[2].id is not None and events[2].id.count(";") == 3
    await hub.publish("b", 2)  # live again, and nothing more was replayed
    live = await again.until(lambda d: "pub" in d)
    assert (live.data["channel"], live.data["pub"]["data"]) == ("b", 2)
    await again.close()


async def test_a_resume_history_cannot_serve_is_told_so(serve: Any) -> None:
    srv = await serve(sse_app(history_size=2))
    hub = srv.app.hub
    path = query({"a": {}, "b": {}})
    stream = await SseClient.open(srv.port, path)
    await hub.publish("a", 1)
    last = (await stream.until(lambda d: "pub" in d)).id
    await stream.close()
    for n in range(2, 6):  # more than history keeps
        await hub.publish("a", n)
    again = await SseClient.open(srv.port, path, last_id=last)
    a = await again.until(lambda d: "subscribe" in d)
    b = await again.until(lambda d: "subscribe" in d)
    assert a.data["subscribe"]["was_recovering"] and not a.data["subscribe"]["recovered"]
    assert b.data["subscribe"]["recovered"]  # b lost nothing
    # An id from another channel list resumes nothing and says so.
    other = await SseClient.open(srv.port, query({"a": {}}), last_id=last)
    told = await other.until(lambda d: "subscribe" in d)
    assert told.data["subscribe"] == {**told.data["subscribe"], "was_recovering": True,
                                      "recovered": False}
    await hub.publish("a", 6)
    assert (await other.until(lambda d: "pub" in d)).data["pub"]["data"] == 6
    await again.close()
    await other.close()


async def test_no_blank_line_before_the_first_event(serve: Any) -> None:
    """Node's eventsource 2.x drops an event that shares a chunk with a leading CRLF."""
    srv = await serve(sse_app())
    stream = await SseClient.open(srv.port, query({"a": {}}))
    await stream.next()
    assert bytes(stream.raw).startswith(b"data: {\"connect\"")
    await stream.close()


async def test_refusals_before_the_stream(serve: Any) -> None:
    srv = await serve(sse_app(max_subscriptions=2, max_connections=3))
    bad = await SseClient.open(srv.port, query({"a": {}}, tok="not-a-token"))
    assert bad.status == 401
    huge = await SseClient.open(srv.port, query({"a" * 200: {}, "x": {"pad": "y" * 5000}}))
    assert huge.status == 400 and b"connect_too_large" in await huge.body()
    many = await SseClient.open(srv.port, query({"a": {}, "b": {}, "c": {}}))
    assert many.status == 400 and b"subscription_limit" in await many.body()
    topic = await SseClient.open(srv.port, query({"bad topic": {}}))
    assert topic.status == 400
    open_ = [await SseClient.open(srv.port, query({"a": {}})) for _ in range(3)]
    assert [s.status for s in open_] == [200, 200, 200]
    full = await SseClient.open(srv.port, query({"a": {}}))
    assert full.status == 503  # streams count against MAX_CONNECTIONS
    for s in [bad, huge, many, topic, full, *open_]:
        await s.close()


async def test_a_client_that_does_not_read_is_cut(serve: Any) -> None:
    srv = await serve(sse_app(outbound_budget=64 * 1024, publish_byte_rate=0))
    stream = await SseClient.open(srv.port, query({"a": {}}))
    await stream.until(lambda d: "subscribe" in d)
    payload = "x" * 8192
    for _ in range(2000):  # up to 16 MiB at a client that reads nothing (kernel buffers
        # on loopback take several MiB before the server holds any)
        await srv.app.hub.publish("a", payload)
        await asyncio.sleep(0.001)
        if srv.server.state.stats.slow_closes:
            break
    assert srv.server.state.stats.slow_closes == 1
    assert not srv.server.state.streams
    await stream.close()


async def test_asgi_answers_a_stream_501(serve_any: Any) -> None:
    srv = await serve_any(sse_app())
    stream = await SseClient.open(srv.port, query({"a": {}}))
    assert stream.status == (200 if srv.kind == "native" else 501)
    await stream.close()


async def test_a_live_gap_ends_the_stream_to_be_resumed(serve: Any) -> None:
    """The hub's gap notice (the live stream lost publications) becomes a 3010
    disconnect and the end of the stream: the client reconnects with its last id."""
    from pubsocket.brokers.base import Position
    from pubsocket.protocols.centrifuge.uni_sse import UNI_SSE

    srv = await serve(sse_app())
    stream = await SseClient.open(srv.port, query({"a": {}}))
    await stream.until(lambda d: "subscribe" in d)
    (server_side,) = srv.server.state.streams
    wire = server_side.wires(UNI_SSE)
    server_side.deliver(wire.frame(UNI_SSE.gap("a", Position(3, "e"))))
    told = await stream.until(lambda d: "join" not in d)
    assert told.data == {"disconnect": {"code": 3010, "reason": "insufficient state",
                                        "reconnect": True}}
    with pytest.raises(EOFError):
        await stream.next()
    await stream.close()


async def test_an_expired_token_ends_the_stream(serve: Any) -> None:
    from tests.centrifuge_js.conftest import token

    srv = await serve(sse_app(token_grace=0))
    # exp is whole seconds: a ttl of 2 leaves at least 1 s to open the stream on a busy box.
    stream = await SseClient.open(srv.port, query({"a": {}}, tok=token(ttl=2)))
    try:
        told = await stream.until(lambda d: "disconnect" in d, timeout=6)
        assert told.data["disconnect"]["code"] == 3005
        with pytest.raises(EOFError):
            await stream.next()
    finally:
        await stream.close()
