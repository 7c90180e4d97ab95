"""Map and shared-poll subscription types, refused with Centrifugo's codes on the raw
wire, JSON and Protobuf (centrifuge-js's own map and shared-poll subscriptions are in
tests/centrifuge_js/test_sdk_server_subs.py); the connection stays."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.centrifuge.conftest import PATH, cf_app, token
from tests.centrifuge.test_protobuf_wire import SUB, commands, connect_cmd, pb_replies

from pubsocket.protocols.centrifuge._pb import pubsocket_centrifuge_pb2 as pb  # isort: skip

SUBSCRIBE_TYPES = [(1, 103), (2, 103), (3, 103), (4, 108), (9, 107)]


@pytest.mark.parametrize(("kind", "code"), SUBSCRIBE_TYPES)
async def test_map_and_shared_poll_subscribes_are_refused_json(serve: Any, kind: int,
                                                              code: int) -> None:
    srv = await serve(cf_app())
    async with connect(srv.ws + PATH) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": token("ivy")}}))
        await ws.recv()
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "m:1", "type": kind}}))
        assert json.loads(await ws.recv())["error"]["code"] == code
        # the connection stays and a stream subscribe still works
        await ws.send(json.dumps({"id": 3, "subscribe": {"channel": "m:1"}}))
        assert json.loads(await ws.recv())["id"] == 3


@pytest.mark.parametrize(("kind", "code"), SUBSCRIBE_TYPES)
async def test_map_and_shared_poll_subscribes_are_refused_protobuf(serve: Any, kind: int,
                                                                  code: int) -> None:
    srv = await serve(cf_app())
    async with connect(srv.ws + PATH, subprotocols=[SUB]) as ws:  # type: ignore[list-item]
        await ws.send(commands(connect_cmd(), pb.Command(
            id=2, subscribe=pb.SubscribeRequest(channel="m:1", type=kind))))
        connected, refused = await pb_replies(ws, 2)
        assert connected.connect.client and refused.error.code == code
        await ws.send(commands(pb.Command(id=3, subscribe=pb.SubscribeRequest(
            channel="m:1"))))
        (reply,) = await pb_replies(ws, 1)
        assert reply.id == 3 and not reply.HasField("error")
