"""The server API ``subscribe``'s options (``data``/``b64data``, ``info``/``b64info``,
``override``), sent by the official ``cent`` client to a real server on port 0 while a
real centrifuge-python SDK (JSON and Protobuf) or raw JSON frames watch: the SDK's
server-side ``subscribed`` event has the data, presence and joins have the channel info,
the overrides narrow presence and join/leave as the token's ``subs`` claim's do, a
malformed option is 107 and changes nothing, and the options reach another node."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cent import AsyncClient, PresenceRequest, SubscribeRequest
from cent.dto import BoolValue, ChannelOptionsOverride
from websockets.asyncio.client import connect

from tests.app.test_http import ahttp
from tests.centrifuge.conftest import PATH, cf_app
from tests.centrifuge.test_config_file import file_app, file_token
from tests.centrifuge.test_sdk import sdk
from tests.centrifuge.test_server_api import observer
from tests.centrifuge.test_sub_options import (
    BAD_OPTIONS,
    OPTIONS_CONFIG,
    b64,
    connected,
    events_of,
    present,
    recv,
)
from tests.conftest import API_KEY

FILE_KEY = OPTIONS_CONFIG["http_api"]["key"]  # a config file's key is the server API's


def _json(value: Any) -> Any:
    """What the Protobuf SDK hands over as bytes, decoded (JSON values stay)."""
    return json.loads(value) if isinstance(value, bytes) and value else (value or None)


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_data_and_info_reach_the_sdk_and_presence(serve: Any, tmp_path: Path,
                                                        protobuf: bool) -> None:
    app = file_app(tmp_path, OPTIONS_CONFIG)
    srv = await serve(app)
    tok = file_token("ann")
    async with sdk(srv.ws + PATH, events_of, token=tok, use_protobuf=protobuf) as (
            client, events), AsyncClient(srv.http + "/api", FILE_KEY, timeout=5) as api:
        await events.next("connected")
        await api.subscribe(SubscribeRequest(user="ann", channel="room:1",
                                             data={"welcome": "ann"}, info={"seat": 7}))
        first = await events.next("subscribed")
        await api.subscribe(SubscribeRequest(user="ann", channel="room:2",
                                             b64data=b64({"n": 2}), b64info=b64("two")))
        second = await events.next("subscribed")
        await api.subscribe(SubscribeRequest(user="ann", channel="room:3"))
        third = await events.next("subscribed")
        got = {ctx.channel: _json(ctx.data) for ctx in (first, second, third)}
        assert got == {"room:1": {"welcome": "ann"}, "room:2": {"n": 2}, "room:3": None}
        await present(app, "room:3", 1)
        chan_info = {}
        for channel in ("room:1", "room:2", "room:3"):
            (info,) = (await client.presence(channel)).clients.values()
            assert info.user == "ann"
            chan_info[channel] = _json(info.chan_info)
            (entry,) = (await api.presence(PresenceRequest(channel=channel))
                        ).presence.values()  # the server API's presence has it too
            assert entry.chan_info == chan_info[channel]
        assert chan_info == {"room:1": {"seat": 7}, "room:2": "two", "room:3": None}


async def test_the_wire_carries_data_and_overrides_narrow_join_leave(
        serve: Any, tmp_path: Path) -> None:
    """The subscribe push has ``data``; a watcher's join push has ``chan_info``;
    ``join_leave`` false announces nothing, ``presence`` false keeps the client out of
    presence, ``force_push_join_leave`` false withholds the join pushes."""
    app = file_app(tmp_path, OPTIONS_CONFIG)
    srv = await serve(app)
    async with connect(srv.ws + PATH) as watcher, connect(srv.ws + PATH) as q, \
            connect(srv.ws + PATH) as g, connect(srv.ws + PATH) as lou, \
            AsyncClient(srv.http + "/api", FILE_KEY, timeout=5) as api:
        await connected(watcher, "wes", {"room:1": {}})
        await present(app, "room:1", 1)
        assert (await recv(watcher))["push"]["join"]["info"]["user"] == "wes"  # its own
        quiet_id = (await connected(q, "quinn", {}))["client"]
        await connected(g, "gus", {})
        lou_id = (await connected(lou, "lou", {}))["client"]
        await api.subscribe(SubscribeRequest(user="quinn", channel="room:1", data=[1],
                                             override=ChannelOptionsOverride(
            join_leave=BoolValue(value=False),
            force_push_join_leave=BoolValue(value=False))))
        assert await recv(q) == {"push": {"channel": "room:1", "subscribe": {
            "data": [1]}}}
        await present(app, "room:1", 2)  # recorded, but not announced
        await api.subscribe(SubscribeRequest(user="gus", channel="room:1",
                                             override=ChannelOptionsOverride(
            presence=BoolValue(value=False))))
        assert await recv(g) == {"push": {"channel": "room:1", "subscribe": {}}}
        await api.subscribe(SubscribeRequest(user="lou", channel="room:1",
                                             info={"seat": 3}))
        assert await recv(lou) == {"push": {"channel": "room:1", "subscribe": {}}}
        clients = await present(app, "room:1", 3)  # gus is not in presence
        assert {c.user for c in clients.values()} == {"wes", "quinn", "lou"}
        join = await recv(watcher)  # lou's: not quinn's, not gus's
        assert join == {"push": {"channel": "room:1", "join": {"info": {
            "user": "lou", "client": lou_id, "chan_info": {"seat": 3}}}}}
        await app.hub.publish("room:1", "after")
        # gus has the namespace's join pushes (lou's); quinn has none
        assert (await recv(g))["push"]["join"]["info"]["client"] == lou_id
        for ws in (q, g, watcher):
            assert (await recv(ws))["push"]["pub"]["data"] == "after"
        await q.close()
        await present(app, "room:1", 2)
        await lou.close()
        leave = (await recv(watcher))["push"]["leave"]["info"]  # lou's, not quinn's
        assert leave["client"] == lou_id != quiet_id


async def test_malformed_options_are_107_and_change_nothing(serve: Any,
                                                           tmp_path: Path) -> None:
    app = file_app(tmp_path, OPTIONS_CONFIG)
    srv = await serve(app)
    too_big = {"data": "x" * app.settings.connect_message_size}
    cases = {name: opts for name, opts in BAD_OPTIONS.items() if isinstance(opts, dict)}
    cases["data and info over connect_message_size"] = too_big
    async with connect(srv.ws + PATH) as ws, AsyncClient(
            srv.http + "/api", FILE_KEY, timeout=5) as api:
        await connected(ws, "mal", {})
        for name, opts in cases.items():
            # raw JSON: cent's models would refuse some of these before sending
            body = json.dumps({"user": "mal", "channel": "room:9", **opts}).encode()
            status, _, reply = await ahttp("POST", srv.http + "/api/subscribe", body,
                                           {"X-API-Key": FILE_KEY})
            assert (status, json.loads(reply)) == (200, {"error": {
                "code": 107, "message": "bad request"}}), name
        assert app.hub.subscriber_count("room:9") == 0
        # the next frame the client hears is the first accepted subscribe's
        await api.subscribe(SubscribeRequest(user="mal", channel="room:8", data={"ok": 1}))
        assert await recv(ws) == {"push": {"channel": "room:8", "subscribe": {
            "data": {"ok": 1}}}}
        assert app.hub.subscriber_count("room:9") == 0


async def test_the_options_reach_the_node_holding_the_user(serve: Any,
                                                           redis_url: str) -> None:
    """Two nodes on one Redis: the call goes to node A, bob is connected to node B, and
    B's SDK sees the data; A's presence (shared) has the channel info."""
    url = redis_url + f"?prefix=apiopt-{uuid.uuid4().hex[:8]}:"
    node_a, node_b = await serve(cf_app(broker=url)), await serve(cf_app(broker=url))
    async with observer(node_b.ws + PATH, user="bob") as (_, events), AsyncClient(
            node_a.http + "/api", API_KEY, timeout=5) as api:
        await api.subscribe(SubscribeRequest(user="bob", channel="room:x",
                                             data={"to": "bob"}, b64info=b64({"seat": 1})))
        ctx = await events.next("subscribed")
        assert (ctx.channel, ctx.data) == ("room:x", {"to": "bob"})
        (entry,) = (await api.presence(PresenceRequest(channel="room:x"))).presence.values()
        assert (entry.user, entry.chan_info) == ("bob", {"seat": 1})
