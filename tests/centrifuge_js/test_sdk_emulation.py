"""centrifuge-js 5.8.0 (npm, under Node) over Centrifugo's bidirectional emulation on a
real server: HTTP-streaming (JSON and Protobuf) and SSE, each with commands POSTed to
/emulation. The SDK connects, subscribes, publishes, reads history and presence, and
recovers what it missed after its stream is cut.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pubsocket.server import Server
from tests.centrifuge_js.conftest import StartCf, token
from tests.centrifuge_js.harness import connected_with_one, recovers_one, sdk_client

MODES = [("http_stream", False), ("sse", False), ("http_stream", True)]
IDS = ["http_stream-json", "sse-json", "http_stream-protobuf"]


def transports(port: int, name: str) -> list[dict[str, str]]:
    return [{"transport": name, "endpoint": f"http://127.0.0.1:{port}/connection/{name}"}]


def args(port: int, name: str, protobuf: bool, **more: Any) -> dict[str, Any]:
    return {"transports": transports(port, name), "protobuf": protobuf,
            "token": token("alice"), **more}


@pytest.mark.parametrize(("name", "protobuf"), MODES, ids=IDS)
async def test_connect_subscribe_publish_history_presence(
        start_cf: StartCf, name: str, protobuf: bool) -> None:
    srv = await start_cf()
    async with sdk_client("unused", **args(srv.port, name, protobuf)) as sdk:
        sdk.send("connect")
        connected = await sdk.expect("connected")
        assert connected["transport"] == name, connected
        sdk.send("sub", channel="chat:e", opts={"recoverable": True, "positioned": True})
        sub = await sdk.expect("subscribed", lambda e: e["channel"] == "chat:e")
        assert sub["recoverable"] is True, sub
        res = await sdk.request("publish", "chat:e", data={"text": "hi"})
        assert res["ok"], res
        pub = await sdk.expect("publication")
        assert pub["data"] == {"text": "hi"} and pub["offset"] == 1, pub
        await srv.app.hub.publish("chat:e", {"from": "server"})
        pub = await sdk.expect("publication")
        assert pub["data"] == {"from": "server"} and pub["offset"] == 2, pub
        hist = await sdk.request("history", "chat:e")
        assert hist["ok"] and hist["value"]["offsets"] == [1, 2], hist
        presence = await sdk.request("presence", "chat:e")
        assert presence["ok"], presence
        assert presence["value"] == {"clients": 1, "users": ["alice"]}, presence


@pytest.mark.parametrize(("name", "protobuf"), MODES, ids=IDS)
async def test_recovers_after_its_stream_is_cut(start_cf: StartCf, name: str,
                                                protobuf: bool) -> None:
    srv = await start_cf()
    async with sdk_client("unused", **args(srv.port, name, protobuf)) as sdk:
        await connected_with_one(sdk, srv.app.hub, "chat:r")
        assert isinstance(srv.server, Server) and srv.server.state is not None
        streams = list(srv.server.state.streams)
        assert len(streams) == 1
        streams[0]._transport.abort()  # the stream is cut (no disconnect push)
        await recovers_one(sdk, srv.app.hub, "chat:r")
        await srv.app.hub.publish("chat:r", {"n": 3})
        await sdk.expect("publication", lambda e: e["data"] == {"n": 3})
        assert [p["data"]["n"] for p in sdk.publications("chat:r")] == [1, 2, 3]


async def test_server_disconnect_reaches_the_sdk(start_cf: StartCf) -> None:
    """A disconnect push ends the stream; the SDK reads the code (no reconnect)."""
    srv = await start_cf()
    async with sdk_client("unused", **args(srv.port, "http_stream", False)) as sdk:
        sdk.send("connect")
        await sdk.expect("connected")
        await srv.app.hub.disconnect_user("alice")
        gone = await sdk.expect("disconnected")
        assert gone["code"] >= 3000, gone
        await asyncio.sleep(0.3)
        assert len(sdk.seen("connected")) == 1
