"""The pubsocket.v1 HTTP fallback on a real server (web/http_fallback.py), read raw:
POST P?transport=http_stream opens a stream of JSON lines, POST P?transport=emulation
hands commands to its session, replies come on the stream; refusals (401, 404, 413,
429, 400) and the close line."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from pubsocket import App, pubsub
from tests.centrifuge_js.conftest import token
from tests.conftest import make_settings
from tests.fallback.client import HttpStream, request

P = "/ws/chat"
OPEN = P + "?transport=http_stream"
EMULATE = P + "?transport=emulation"


def v1_app(secured: bool = True, **settings: Any) -> App:
    app = App(make_settings(**settings))
    pubsub(P, app=app, secured=secured)
    return app


def bearer(sub: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub)}", "Content-Type": "application/json"}


async def open_stream(port: int, commands: list[Any] | None = None,
                      sub: str = "alice") -> tuple[HttpStream, dict[str, Any]]:
    stream = await HttpStream.post(port, OPEN, orjson.dumps(commands or []), bearer(sub))
    assert stream.status == 200, await stream.body()
    first = await stream.line()
    assert first["type"] == "transport" and first["transport"] == "http_stream", first
    return stream, first


async def emulate(port: int, hello: dict[str, Any], data: list[Any],
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return await request(port, EMULATE, {"session": hello["session"],
                                         "node": hello["node"], "data": data}, headers)


async def test_open_command_reply_on_the_stream(serve: Any) -> None:
    srv = await serve(v1_app())
    stream, hello = await open_stream(srv.port, [{"action": "subscribe", "topic": "room",
                                                  "id": 1}])
    assert stream.headers["content-type"] == "application/x-ndjson"
    assert stream.headers["cache-control"] == "no-store"
    assert stream.headers["x-accel-buffering"] == "no"
    assert hello["node"] == srv.app.hub.relay.node and len(hello["session"]) >= 20
    await stream.until({"type": "ack", "id": 1})
    status, _, body = await emulate(srv.port, hello, [
        {"action": "publish", "topic": "room", "data": {"text": "hi"}, "id": 2}])
    assert (status, body) == (204, b"")
    msg, _ = await stream.until({"type": "message"})
    assert msg["topic"] == "room" and msg["data"] == {"text": "hi"}, msg
    await srv.app.hub.publish("room", {"from": "server"})
    msg, _ = await stream.until({"type": "message"})
    assert msg["data"] == {"from": "server"}
    await stream.close()


async def test_refusals_before_the_stream(serve: Any) -> None:
    srv = await serve(v1_app())
    client = await HttpStream.post(srv.port, OPEN, b"[]", {"Content-Type": "application/json"})
    assert client.status == 401
    assert orjson.loads(await client.body())["error"]
    await client.close()
    for body, code in [(b"{}", "bad_json"), (b"not json", "bad_json")]:
        status, _, raw = await request(srv.port, OPEN, body, bearer())
        assert (status, orjson.loads(raw)["error"]) == (400, code)
    status, _, raw = await request(srv.port, P + "?transport=poll", b"[]", bearer())
    assert status == 400


async def test_unknown_session_is_404_and_bad_bodies_400(serve: Any) -> None:
    srv = await serve(v1_app())
    stream, hello = await open_stream(srv.port)
    status, _, body = await emulate(srv.port, {**hello, "session": "nope"}, [])
    assert status == 404 and orjson.loads(body)["error"] == "unknown_session"
    for bad in [b"[]", b"{", {"session": 1, "node": hello["node"], "data": []},
                {"session": hello["session"], "node": hello["node"], "data": "x"}]:
        status, _, body = await request(srv.port, EMULATE, bad)
        assert status == 400, (bad, body)
    await stream.close()
    # The stream is gone: its session id no longer reaches anything.
    for _ in range(50):
        status, _, _ = await emulate(srv.port, hello, [])
        if status == 404:
            break
        await asyncio.sleep(0.02)
    assert status == 404


async def test_too_large_is_413(serve: Any) -> None:
    srv = await serve(v1_app(max_message_size=1024))
    status, _, _ = await request(srv.port, OPEN, b"[" + b" " * 1100 + b"]", bearer())
    assert status == 413
    stream, hello = await open_stream(srv.port)
    big = {"session": hello["session"], "node": hello["node"],
           "data": [{"action": "publish", "topic": "a", "data": "x" * 7000}]}
    status, _, _ = await request(srv.port, EMULATE, big)
    assert status == 413
    # Under the body limit but over the message size: the relay refuses it before the
    # session sees it (413), and the session stays open.
    status, _, _ = await emulate(srv.port, hello, [
        {"action": "publish", "topic": "a", "data": "x" * 2000}])
    assert status == 413
    status, _, _ = await emulate(srv.port, hello,
                                 [{"action": "subscribe", "topic": "a", "id": 7}])
    assert status == 204
    await stream.until({"type": "ack", "id": 7})
    await stream.close()


async def test_posts_are_rate_limited_429(serve: Any) -> None:
    srv = await serve(v1_app(http_rate_limit=0.01, http_rate_burst=3))
    stream, hello = await open_stream(srv.port)  # one of alice's tokens
    statuses = [(await emulate(srv.port, hello, []))[:2] for _ in range(4)]  # the address's
    assert [s for s, _ in statuses] == [204, 204, 204, 429], statuses
    assert int(statuses[-1][1]["retry-after"]) >= 1
    await stream.close()


async def test_command_flood_closes_the_session_like_a_websocket(serve: Any) -> None:
    srv = await serve(v1_app(rate_limit=1, rate_burst=5))
    stream, hello = await open_stream(srv.port)
    status, _, _ = await emulate(srv.port, hello, [
        {"action": "subscribe", "topic": f"t{i}"} for i in range(10)])
    assert status == 204
    close, _ = await stream.until({"type": "close"})
    assert close["code"] == 4029, close
    await stream.close()


async def test_session_end_closes_the_stream_with_its_reason(serve: Any) -> None:
    srv = await serve(v1_app())
    stream, _ = await open_stream(srv.port, sub="bob")
    await srv.app.hub.disconnect_user("bob")
    close, _ = await stream.until({"type": "close"})
    assert close["code"] == 4003, close
    with pytest.raises(EOFError):
        await stream.line()
    await stream.close()
    assert not srv.server.state.streams


async def test_heartbeat_pings_on_the_stream(serve: Any) -> None:
    srv = await serve(v1_app(heartbeat=0.2))
    stream, _ = await open_stream(srv.port, [{"action": "heartbeat", "id": 1}])
    ack, _ = await stream.until({"type": "ack", "id": 1})
    assert ack["interval"] == 0.2
    await stream.until({"type": "ping"}, timeout=2.0)
    await stream.close()


async def test_open_hub_without_token_and_connection_cap(serve: Any) -> None:
    srv = await serve(v1_app(secured=False, max_connections=1))
    first = await HttpStream.post(srv.port, OPEN, b"[]", {"Content-Type": "application/json"})
    assert first.status == 200
    assert (await first.line())["type"] == "transport"
    second = await HttpStream.post(srv.port, OPEN, b"[]",
                                   {"Content-Type": "application/json"})
    assert second.status == 503
    await first.close()
    await second.close()


async def test_asgi_answers_the_stream_501(serve_any: Any) -> None:
    srv = await serve_any(v1_app())
    stream = await HttpStream.post(srv.port, OPEN, b"[]", bearer())
    assert stream.status == (200 if srv.kind == "native" else 501)
    await stream.close()


async def test_posts_past_the_held_bound_close_a_busy_session(serve: Any) -> None:
    """While a slow command holds the session (here: the app's authorize hook), the
    commands behind it queue up to MAX_QUEUED, then reading pauses: POSTed batches wait
    at the stream, at most MAX_HELD of them; one more closes the session with 4029."""
    from pubsocket.hub.session import MAX_QUEUED
    from pubsocket.server.sse import MAX_HELD

    gate = asyncio.Event()

    async def slow(principal: Any, action: Any, topic: str) -> bool:
        await gate.wait()
        return True

    app = App(make_settings(rate_limit=0, http_rate_limit=0))
    pubsub(P, app=app, secured=True, authorize=slow)
    srv = await serve(app)
    stream, hello = await open_stream(srv.port, [{"action": "subscribe", "topic": "a"}])
    publish = {"action": "publish", "topic": "b", "data": 1}
    assert (await emulate(srv.port, hello, [publish] * MAX_QUEUED))[0] == 204
    for _ in range(MAX_HELD):  # held at the stream, in order
        assert (await emulate(srv.port, hello, [publish]))[0] == 204
    assert not [line async for line in _lines(stream, 0.2) if line.get("type") == "close"]
    assert (await emulate(srv.port, hello, [publish]))[0] == 204
    close, _ = await stream.until({"type": "close"})
    assert close["code"] == 4029, close
    gate.set()
    await stream.close()


async def _lines(stream: HttpStream, timeout: float) -> Any:
    """The lines that arrive within `timeout` seconds of each other."""
    for _ in range(1000):
        try:
            yield await stream.line(timeout)
        except TimeoutError:
            return


async def test_held_batches_run_in_order_once_the_session_catches_up(serve: Any) -> None:
    """Batches held while reading is paused are passed on, in order, when it resumes:
    every publish is acked, ids ascending, and the session stays open."""
    from pubsocket.hub.session import MAX_QUEUED

    gate = asyncio.Event()

    async def slow(principal: Any, action: Any, topic: str) -> bool:
        if action == "subscribe":
            await gate.wait()
        return True

    app = App(make_settings(rate_limit=0, http_rate_limit=0))
    pubsub(P, app=app, secured=True, authorize=slow)
    srv = await serve(app)
    stream, hello = await open_stream(srv.port, [{"action": "subscribe", "topic": "a",
                                                  "id": 0}])
    ids = iter(range(1, 10_000))
    batches = [[{"action": "publish", "topic": "b", "data": 1, "id": next(ids)}
                for _ in range(MAX_QUEUED)]] + [
        [{"action": "publish", "topic": "b", "data": 1, "id": next(ids)}] for _ in range(10)]
    for batch in batches:
        assert (await emulate(srv.port, hello, batch))[0] == 204
    held = [s._held for s in srv.server.state.streams]  # the last 10 wait at the stream
    assert [len(h) if h is not None else None for h in held] == [10], held
    gate.set()
    total = MAX_QUEUED + 10
    last, seen = await stream.until({"type": "ack", "id": total})
    acked = [m["id"] for m in seen if m.get("type") == "ack"] + [last["id"]]
    assert acked == list(range(total + 1)), acked
    assert not [m for m in seen if m.get("type") == "close"]
    await stream.close()
