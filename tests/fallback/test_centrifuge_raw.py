"""Centrifugo's emulation routes read raw on a real server (web/emulation.py): the
http_stream reply's framing and the connect reply's session/node, a command POSTed to
/emulation answered on the stream, and the refusals (400, 404, 413, 429)."""

from __future__ import annotations

from typing import Any

import orjson

from pubsocket import App, pubsub
from tests.centrifuge_js.conftest import token
from tests.conftest import make_settings
from tests.fallback.client import HttpStream, request

STREAM = "/connection/http_stream"


def cf_app(**settings: Any) -> App:
    app = App(make_settings(**settings))
    pubsub("/connection/websocket", app=app, protocol="centrifuge", secured=True)
    return app


async def connect(port: int) -> tuple[HttpStream, dict[str, Any]]:
    body = orjson.dumps({"id": 1, "connect": {"token": token("alice")}})
    stream = await HttpStream.post(port, STREAM, body, {"Content-Type": "application/json"})
    assert stream.status == 200
    assert stream.headers["x-accel-buffering"] == "no"
    reply = await stream.line()
    assert reply["id"] == 1, reply
    return stream, reply["connect"]


async def test_connect_reply_names_session_and_node(serve: Any) -> None:
    srv = await serve(cf_app())
    stream, connected = await connect(srv.port)
    assert connected["node"] == srv.app.hub.relay.node
    assert len(connected["session"]) >= 20 and connected["session"] != connected["client"]
    data = orjson.dumps({"id": 2, "subscribe": {"channel": "news"}}).decode()
    status, _, _ = await request(srv.port, "/emulation", {
        "session": connected["session"], "node": connected["node"], "data": data})
    assert status == 204
    reply, _ = await stream.until({"id": 2})
    assert "subscribe" in reply, reply
    await srv.app.hub.publish("news", {"n": 1})
    push, _ = await stream.until({})
    assert push["push"]["channel"] == "news" and push["push"]["pub"]["data"] == {"n": 1}
    await stream.close()


async def test_emulation_refusals(serve: Any) -> None:
    srv = await serve(cf_app(max_message_size=1024, http_rate_limit=0.01,
                             http_rate_burst=8))
    stream, connected = await connect(srv.port)
    ok = {"session": connected["session"], "node": connected["node"], "data": "{}"}
    assert (await request(srv.port, "/emulation", {**ok, "session": "x"}))[0] == 404
    assert (await request(srv.port, "/emulation", {**ok, "data": 5}))[0] == 400
    assert (await request(srv.port, "/emulation", b"\xff"))[0] == 400
    big = {**ok, "data": " " * 7000}
    assert (await request(srv.port, "/emulation", big))[0] == 413
    statuses = [(await request(srv.port, "/emulation", ok))[0] for _ in range(6)]
    assert statuses[-1] == 429 and 204 in statuses, statuses
    await stream.close()


async def test_sse_needs_cf_connect(serve: Any) -> None:
    srv = await serve(cf_app())
    client = await HttpStream.post(srv.port, "/connection/sse", method="GET")
    assert client.status == 400
    await client.body()
    await client.close()
