"""The publisher's identity on publications, end to end on real servers: a v1 client with
a token publishes; pubsocket.v1 receivers get ``from``, centrifuge-python gets
``pub.info``, live, in history and in recovery replays, on memory and across two nodes
sharing a real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from pubsocket import App, pubsub
from pubsocket import client as pc
from pubsocket.auth import Principal
from pubsocket.client import Message, Sender
from tests.centrifuge.conftest import PATH, token
from tests.centrifuge.test_sdk import drop_every_connection, sdk, subscribed
from tests.conftest import API_KEY, make_settings

ALICE_INFO = {"name": "Alice"}
V1: Any = ["pubsocket.v1"]


def secured_app(**settings: Any) -> App:
    """Both protocols on one hub, both secured: a token names who publishes."""
    app = App(make_settings(**settings))
    pubsub("/ws/chat", app=app, secured=True)
    pubsub(PATH, app=app, protocol="centrifuge", secured=True)
    return app


@asynccontextmanager
async def v1(srv: Any, bearer: str) -> AsyncIterator[ClientConnection]:
    async with connect(srv.ws + "/ws/chat", subprotocols=V1,
                       additional_headers={"Authorization": f"Bearer {bearer}"}) as ws:
        yield ws


async def command(ws: ClientConnection, **cmd: Any) -> dict[str, Any]:
    """Send `cmd` (with an id) and return its reply; nothing else may come first."""
    await ws.send(json.dumps(cmd))
    async with asyncio.timeout(5):
        reply: dict[str, Any] = json.loads(await ws.recv())
    assert reply.get("id") == cmd["id"], reply
    return reply


async def recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(5):
        got: dict[str, Any] = json.loads(await ws.recv())
    return got


@pytest.fixture(params=["memory", "redis"])
async def nodes(request: pytest.FixtureRequest, serve: Any) -> tuple[Any, Any]:
    """(publishing node, receiving node): one server on memory, or two on one Redis."""
    if request.param == "memory":
        srv = await serve(secured_app())
        return srv, srv
    url = request.getfixturevalue("redis_url") + f"?prefix=pub-{uuid.uuid4().hex[:8]}:"
    return await serve(secured_app(broker=url)), await serve(secured_app(broker=url))


async def test_client_publish_carries_the_publisher_everywhere(nodes: tuple[Any, Any]) -> None:
    home, away = nodes
    topic = "chat:who"
    async with sdk(away.ws + PATH, token=token("carol")) as (cf, _), \
            pc.connect(away.ws + "/ws/chat", token=token("bob")) as bob, \
            v1(home, token("alice", info=ALICE_INFO)) as alice:
        sub, sub_ev = await subscribed(cf, topic, recoverable=True)
        await sub_ev.next("subscribed")
        bob_sub = await bob.subscribe(topic)
        ack = await command(alice, action="publish", topic=topic, data={"text": "hi"}, id=1)
        assert ack == {"type": "ack", "id": 1, "offset": 1}

        got = await asyncio.wait_for(anext(bob_sub), 5)
        assert isinstance(got, Message) and isinstance(got.publisher, Sender)
        sender = got.publisher
        assert (got.data, sender.user, sender.info) == ({"text": "hi"}, "alice", ALICE_INFO)
        assert sender.client  # the publishing connection's id

        pub = (await sub_ev.next("publication")).pub
        assert pub.data == {"text": "hi"} and pub.info is not None
        assert (pub.info.user, pub.info.client, pub.info.conn_info) == (
            "alice", sender.client, ALICE_INFO)

        history = await sub.history(limit=10)
        assert [(p.info.user, p.info.conn_info) for p in history.publications] == [
            ("alice", ALICE_INFO)]
        py_history = await bob.history(topic, limit=10)
        assert [m.publisher for m in py_history.messages] == [sender]

        # A v1 history read and a recovery replay carry `from` as well.
        async with v1(away, token("dave")) as dave:
            page = await command(dave, action="history", topic=topic, id=1)
            assert page["publications"][0]["from"] == {
                "user": "alice", "client": sender.client, "info": ALICE_INFO}
            reply = await command(dave, action="subscribe", topic=topic, id=2,
                                  since={"offset": 0, "epoch": page["epoch"]})
            assert reply["recovered"] is True
            replayed = await recv(dave)
            assert (replayed["offset"], replayed["from"]["user"]) == (1, "alice")


async def test_recovery_replay_after_reconnect_carries_publisher_info(
        nodes: tuple[Any, Any]) -> None:
    home, away = nodes
    topic = "chat:rec"
    # hub.publish(principal=p) publishes on p's behalf: the publications carry p.
    alice = Principal.from_claims({"sub": "alice", "info": ALICE_INFO})
    async with sdk(away.ws + PATH, token=token("carol")) as (cf, _):
        _sub, sub_ev = await subscribed(cf, topic, recoverable=True)
        await sub_ev.next("subscribed")
        await home.app.hub.publish(topic, 0, principal=alice)
        assert (await sub_ev.next("publication")).pub.offset == 1
        drop_every_connection(away)
        for i in (1, 2):  # while the SDK is away: only recovery can bring these
            await home.app.hub.publish(topic, i, principal=alice)
        again = await sub_ev.next("subscribed", within=10)
        assert again.was_recovering and again.recovered
        replay = [(await sub_ev.next("publication")).pub for _ in range(2)]
        assert [p.offset for p in replay] == [2, 3]
        assert [(p.info.user, p.info.client, p.info.conn_info) for p in replay] == [
            ("alice", alice.client_id, ALICE_INFO)] * 2


async def test_server_side_and_api_key_publishes_carry_no_publisher(serve: Any) -> None:
    srv = await serve(secured_app())
    async with v1(srv, API_KEY) as backend, v1(srv, token("erin")) as erin:
        assert (await command(erin, action="subscribe", topic="news", id=1))["type"] == "ack"
        await command(backend, action="publish", topic="news", data=1, id=1)
        await srv.app.hub.publish("news", 2)
        for n in (1, 2):
            got = await recv(erin)
            assert got["data"] == n and "from" not in got
