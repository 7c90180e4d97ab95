"""The options of the connection token's ``subs`` claim (``data``, ``info``, their
base64 twins, ``override``): the real centrifuge-python SDK (JSON and Protobuf) and raw
JSON frames against a real server on port 0 configured by a Centrifugo config file;
malformed options refuse the connect cleanly and leave everyone else alone."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from centrifuge import ClientEventHandler
from pubsocket import App
from tests.centrifuge.conftest import PATH, _recorder
from tests.centrifuge.test_config_file import CONFIG, file_app, file_token
from tests.centrifuge.test_sdk import sdk

events_of = _recorder(ClientEventHandler, ("connected", "disconnected", "subscribed",
                                           "publication", "join", "leave"))

# room: presence and join/leave, pushed to subscribers with the presence permission;
# hush: the same without that permission (only force_push_join_leave pushes them).
OPTIONS_CONFIG: dict[str, Any] = copy.deepcopy(CONFIG)
OPTIONS_CONFIG["channel"]["namespaces"] = [
    {"name": "room", "presence": True, "join_leave": True,
     "allow_subscribe_for_client": True, "allow_presence_for_subscriber": True},
    {"name": "hush", "presence": True, "join_leave": True,
     "allow_subscribe_for_client": True},
]


def b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


async def recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(5):
        got: dict[str, Any] = json.loads(await ws.recv())
        return got


async def connected(ws: ClientConnection, sub: str, subs: Any) -> dict[str, Any]:
    """Connect `ws` as `sub` with the ``subs`` claim `subs`; the connect result."""
    await ws.send(json.dumps({"id": 1, "connect": {"token": file_token(sub, subs=subs)}}))
    reply = await recv(ws)
    assert "connect" in reply, reply
    result: dict[str, Any] = reply["connect"]
    return result


async def present(app: App, topic: str, count: int) -> dict[str, Any]:
    """The presence of `topic` once it has `count` clients (bounded wait): joins are
    recorded after the connect reply."""
    store = app.hub.presence.store
    assert store is not None
    async with asyncio.timeout(5):
        while len(clients := await store.get(topic)) != count:
            await asyncio.sleep(0.01)
    return clients


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_data_and_info_reach_the_sdk(serve: Any, tmp_path: Path,
                                           protobuf: bool) -> None:
    app = file_app(tmp_path, OPTIONS_CONFIG)
    srv = await serve(app)
    subs = {"room:1": {"data": {"welcome": "ann"}, "info": {"seat": 7}},
            "room:2": {"b64data": b64({"n": 2}), "b64info": b64("two")},
            "room:3": {}}
    tok = file_token("ann", subs=subs)
    async with sdk(srv.ws + PATH, events_of, token=tok, use_protobuf=protobuf) as (
            client, events):
        got = {}
        for _ in range(3):
            ctx = await events.next("subscribed")
            got[ctx.channel] = ctx.data
        if protobuf:  # the SDK hands bytes over as they came
            got = {k: None if v is None else json.loads(v) for k, v in got.items()}
        assert got == {"room:1": {"welcome": "ann"}, "room:2": {"n": 2}, "room:3": None}
        await present(app, "room:3", 1)
        chan_info = {}
        for channel in ("room:1", "room:2", "room:3"):
            clients = (await client.presence(channel)).clients
            (info,) = clients.values()
            assert info.user == "ann"
            value = info.chan_info
            chan_info[channel] = json.loads(value) if isinstance(value, bytes) and value \
                else (value or None)
        assert chan_info == {"room:1": {"seat": 7}, "room:2": "two", "room:3": None}


async def test_the_wire_carries_data_and_chan_info(serve: Any, tmp_path: Path) -> None:
    """The connect reply's ``subs`` entry has ``data``; a watcher's join push and the
    presence reply have ``chan_info`` beside the client (and only for that client)."""
    app = file_app(tmp_path, OPTIONS_CONFIG)
    srv = await serve(app)
    async with connect(srv.ws + PATH) as watcher, connect(srv.ws + PATH) as ann:
        await connected(watcher, "wes", {})
        await watcher.send(json.dumps({"id": 2, "subscribe": {"channel": "room:1"}}))
        assert await recv(watcher) == {"id": 2, "subscribe": {}}
        await present(app, "room:1", 1)
        reply = await connected(ann, "ann", {"room:1": {"data": {"welcome": "ann"},
                                                        "info": {"seat": 7}}})
        assert reply["subs"] == {"room:1": {"data": {"welcome": "ann"}}}
        assert (await recv(watcher))["push"]["join"]["info"]["user"] == "wes"  # its own
        join = await recv(watcher)
        assert join == {"push": {"channel": "room:1", "join": {"info": {
            "user": "ann", "client": reply["client"], "chan_info": {"seat": 7}}}}}
        await watcher.send(json.dumps({"id": 3, "presence": {"channel": "room:1"}}))
        presence = (await recv(watcher))["presence"]["presence"]
        assert presence[reply["client"]]["chan_info"] == {"seat": 7}
        (other,) = (c for cid, c in presence.items() if cid != reply["client"])
        assert other["user"] == "wes" and "chan_info" not in other


async def test_overrides_narrow_presence_and_join_leave(serve: Any, tmp_path: Path) -> None:
    """``join_leave`` false: neither join nor leave announced; ``presence`` false: not
    in presence, nothing announced; ``force_push_join_leave`` false: no join pushes
    despite the presence permission, true: join pushes without it."""
    app = file_app(tmp_path, OPTIONS_CONFIG)
    srv = await serve(app)
    quiet = {"room:2": {"override": {"join_leave": {"value": False},
                                     "force_push_join_leave": {"value": False}}}}
    ghost = {"room:2": {"override": {"presence": {"value": False}}}}
    async with connect(srv.ws + PATH) as watcher, connect(srv.ws + PATH) as q, \
            connect(srv.ws + PATH) as g, connect(srv.ws + PATH) as loud:
        await connected(watcher, "wes", {"room:2": {}})
        await present(app, "room:2", 1)
        quiet_id = (await connected(q, "quinn", quiet))["client"]
        await present(app, "room:2", 2)  # recorded, but not announced
        await connected(g, "gus", ghost)
        loud_id = (await connected(loud, "lou", {"room:2": {}}))["client"]
        clients = await present(app, "room:2", 3)  # the ghost is not in presence
        assert {c.user for c in clients.values()} == {"wes", "quinn", "lou"}
        assert (await recv(watcher))["push"]["join"]["info"]["user"] == "wes"  # its own
        join = (await recv(watcher))["push"]["join"]["info"]  # then lou's: not quinn's
        assert join["client"] == loud_id
        await app.hub.publish("room:2", "after")
        for ws in (q, g):  # quinn: no join pushes; gus has the namespace's (lou's join)
            if ws is g:
                assert (await recv(g))["push"]["join"]["info"]["client"] == loud_id
            assert (await recv(ws))["push"]["pub"]["data"] == "after"
        assert (await recv(watcher))["push"]["pub"]["data"] == "after"
        await q.close()
        await present(app, "room:2", 2)
        await loud.close()
        leave = (await recv(watcher))["push"]["leave"]["info"]  # lou's, not quinn's
        assert leave["client"] == loud_id != quiet_id
    # force_push_join_leave true where the client has no presence permission
    pushed = {"hush:1": {"override": {"force_push_join_leave": {"value": True}}}}
    async with connect(srv.ws + PATH) as fay, connect(srv.ws + PATH) as eve, \
            connect(srv.ws + PATH) as gil:
        await connected(fay, "fay", {"hush:1": {}})
        await connected(eve, "eve", pushed)
        await present(app, "hush:1", 2)
        gil_id = (await connected(gil, "gil", {"hush:1": {}}))["client"]
        assert (await recv(eve))["push"]["join"]["info"]["user"] == "eve"  # its own
        assert (await recv(eve))["push"]["join"]["info"]["client"] == gil_id
        await present(app, "hush:1", 3)
        await app.hub.publish("hush:1", "after")
        assert (await recv(fay))["push"]["pub"]["data"] == "after"  # no joins for fay


BAD_OPTIONS = {
    "not an object": "room:1",
    "deep info": {"info": json.loads("[" * 300 + "]" * 300)},
    "b64data not base64": {"b64data": "not base64!"},
    "b64info not JSON": {"b64info": base64.b64encode(b"\xff\x00 binary").decode()},
    "b64data not a string": {"b64data": 5},
    "override not an object": {"override": ["presence"]},
    "override flag not an object": {"override": {"presence": True}},
    "override value not a bool": {"override": {"join_leave": {"value": "yes"}}},
}


async def test_malformed_options_are_refused_and_bystanders_unaffected(
        serve: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = file_app(tmp_path, OPTIONS_CONFIG)
    srv = await serve(app)
    async with connect(srv.ws + PATH) as bystander:
        await connected(bystander, "bea", {"room:1": {"info": {"ok": True}}})
        for name, options in BAD_OPTIONS.items():
            async with connect(srv.ws + PATH) as ws:
                await ws.send(json.dumps({"id": 1, "connect": {
                    "token": file_token("mal", subs={"room:1": {}, "room:9": options})}}))
                assert await recv(ws) == {"id": 1, "error": {
                    "code": 102, "message": "unknown channel"}}, name
                # refused before anything was subscribed
        assert app.hub.subscriber_count("room:9") == 0
        assert app.hub.subscriber_count("room:1") == 1
        # unknown keys are ignored, as Centrifugo ignores them
        async with connect(srv.ws + PATH) as ws:
            reply = await connected(ws, "ok", {"room:1": {
                "colour": "red", "override": {"colour": {"value": 1}}}})
            assert reply["subs"] == {"room:1": {}}
        await app.hub.publish("room:1", "still here")
        push = await recv(bystander)
        while "pub" not in push["push"]:  # the accepted client's join/leave first
            push = await recv(bystander)
        assert push["push"]["pub"]["data"] == "still here"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_subscription_tokens_info_and_override(serve: Any, tmp_path: Path) -> None:
    """A subscription token's ``info`` (or ``b64info``) is the client's channel info in
    presence and its join; its ``override`` narrows them (join_leave false: no join
    announced); malformed options make the token invalid (103), nothing subscribed."""
    app = file_app(tmp_path, OPTIONS_CONFIG)
    srv = await serve(app)
    async with connect(srv.ws + PATH) as watcher, connect(srv.ws + PATH) as ann:
        await connected(watcher, "wes", {"room:5": {}})
        await present(app, "room:5", 1)
        assert (await recv(watcher))["push"]["join"]["info"]["user"] == "wes"  # its own
        await connected(ann, "ann", {})
        bad = file_token("ann", channel="room:5", override={"presence": True})
        await ann.send(json.dumps({"id": 2, "subscribe": {"channel": "room:5", "token": bad}}))
        assert await recv(ann) == {"id": 2, "error": {"code": 103,
                                                      "message": "permission denied"}}
        assert app.hub.subscriber_count("room:5") == 1
        quiet = file_token("ann", channel="room:5", b64info=b64({"seat": 9}),
                           override={"join_leave": {"value": False}})
        await ann.send(json.dumps({"id": 3, "subscribe": {"channel": "room:5",
                                                          "token": quiet}}))
        assert "subscribe" in await recv(ann)
        clients = await present(app, "room:5", 2)
        (mine,) = (c for c in clients.values() if c.user == "ann")
        assert mine.chan_info == {"seat": 9}
        await app.hub.publish("room:5", "after")  # no join for ann came before it
        assert (await recv(watcher))["push"]["pub"]["data"] == "after"
