"""centrifuge-js's protobuf build (subprotocol ``centrifuge-protobuf``) against a real
server: the session, recovery after a network drop, and one channel shared with the
JSON build, centrifuge-python in Protobuf mode and a /ws/chat client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from tests.centrifuge.test_sdk import sdk, subscribed
from tests.centrifuge_js.conftest import StartCf, cf_url, token
from tests.centrifuge_js.harness import missed_while_cut, sdk_client
from tests.centrifuge_js.proxy import proxy_to

RECOVER = {"recoverable": True, "positioned": True}


async def test_connect_subscribe_publish_history_presence(start_cf: StartCf) -> None:
    srv = await start_cf()
    async with sdk_client(cf_url(srv.port), token=token("alice"), protobuf=True) as js, \
            sdk_client(cf_url(srv.port), token=token("bob"), protobuf=True) as bob:
        js.send("connect")
        assert (await js.expect("connected"))["transport"] == "websocket"
        js.send("sub", channel="chat:p", opts={**RECOVER, "joinLeave": True})
        first = await js.expect("subscribed")
        assert first["recoverable"] and first["streamPosition"]["offset"] == 0
        published = await js.request("publish", "chat:p", data={"text": "hi"})
        assert published["ok"], published
        pub = await js.expect("publication")
        assert (pub["data"], pub["offset"]) == ({"text": "hi"}, 1)
        assert pub["info"]["user"] == "alice"
        bob.send("connect")
        bob.send("sub", channel="chat:p", opts={"joinLeave": True})
        await bob.expect("subscribed")
        assert (await js.expect("join", lambda e: e["user"] == "bob"))["client"]
        history = await js.request("history", "chat:p")
        assert history["value"]["offsets"] == [1] and history["value"]["epoch"]
        presence = await js.request("presence", "chat:p")
        assert presence["value"] == {"clients": 2, "users": ["alice", "bob"]}
        stats = await js.request("presence_stats", "chat:p")
        assert stats["value"] == {"numClients": 2, "numUsers": 2}


async def test_drop_then_reconnect_recovers_missed_publications(start_cf: StartCf) -> None:
    srv = await start_cf()
    hub = srv.app.hub
    async with proxy_to(srv.port) as proxy, sdk_client(
            cf_url(proxy.port), token=token("alice"), protobuf=True) as js:
        js.send("connect")
        js.send("sub", channel="chat:r", opts=RECOVER)
        assert (await js.expect("subscribed"))["wasRecovering"] is False
        for i in range(3):
            await hub.publish("chat:r", {"i": i})
        for _ in range(3):
            await js.expect("publication")
        await missed_while_cut(proxy, js, hub, "chat:r", ({"i": i} for i in range(3, 8)))
        again = await js.expect("subscribed")
        assert again["wasRecovering"] is True and again["recovered"] is True, again
        for _ in range(5):
            await js.expect("publication")
        pubs = js.publications("chat:r")
        assert [e["offset"] for e in pubs] == list(range(1, 9))
        assert [e["data"]["i"] for e in pubs] == list(range(8))


async def test_every_kind_of_client_gets_every_other_kinds_messages(
        start_cf: StartCf) -> None:
    srv = await start_cf()
    url = cf_url(srv.port)
    async with sdk_client(url, token=token("pbjs"), protobuf=True) as pb_js, \
            sdk_client(url, token=token("jsonjs")) as json_js, \
            sdk(url, token=token("pbpy"), use_protobuf=True) as (pb_py, _), \
            connect(srv.ws + "/ws/chat") as plain:
        for js in (pb_js, json_js):
            js.send("connect")
            js.send("sub", channel="chat:all")
            await js.expect("subscribed")
        py_sub, py_ev = await subscribed(pb_py, "chat:all")
        await plain.send(json.dumps({"action": "subscribe", "topic": "chat:all"}))
        await asyncio.sleep(0.1)  # plain mode sends no ack
        assert (await pb_js.request("publish", "chat:all", data={"from": "pbjs"}))["ok"]
        assert (await json_js.request("publish", "chat:all", data={"from": "jsonjs"}))["ok"]
        await py_sub.publish(json.dumps({"from": "pbpy"}).encode())
        await plain.send(json.dumps({"action": "publish", "topic": "chat:all",
                                     "data": {"from": "plain"}}))
        senders = ["pbjs", "jsonjs", "pbpy", "plain"]
        for js in (pb_js, json_js):
            got: list[Any] = [(await js.expect("publication"))["data"] for _ in senders]
            assert sorted(d["from"] for d in got) == sorted(senders)
        got = [json.loads((await py_ev.next("publication")).pub.data) for _ in senders]
        assert sorted(d["from"] for d in got) == sorted(senders)
        async with asyncio.timeout(5):
            got = [json.loads(await plain.recv()) for _ in senders]
        assert sorted(d["from"] for d in got) == sorted(senders)


async def test_data_that_is_not_json_is_refused_with_107(start_cf: StartCf) -> None:
    srv = await start_cf()
    async with sdk_client(cf_url(srv.port), token=token("alice"), protobuf=True) as js:
        js.send("connect")
        js.send("sub", channel="chat:raw")
        await js.expect("subscribed")
        refused = await js.request("publish", "chat:raw", raw="not json at all")
        assert (refused["ok"], refused["code"]) == (False, 107), refused
        assert (await js.request("publish", "chat:raw", raw='{"ok": 1}'))["ok"]
        assert (await js.expect("publication"))["data"] == {"ok": 1}
        assert not js.seen("disconnected")
