"""Centrifugo's server API, driven by the official Python client (PyPI ``cent``), sync and
async, against a real server on port 0, while a live centrifuge-python client observes
the effect of each call."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    CentApiResponseError,
    CentUnauthorizedError,
    ChannelsRequest,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)
from cent import (
    Client as SyncClient,
)

from centrifuge import Client, ClientEventHandler
from tests.app.test_http import ahttp
from tests.centrifuge.conftest import PATH, Events, _recorder, cf_app, sub_events, token
from tests.centrifuge.test_sdk import subscribed
from tests.conftest import API_KEY

server_events = _recorder(ClientEventHandler, (
    "connected", "disconnected", "subscribed", "unsubscribed", "publication"))


@asynccontextmanager
async def observer(url: str, user: str = "alice") -> AsyncIterator[tuple[Client, Events]]:
    """A connected centrifuge-python client of `user`, recording its events."""
    events = Events()
    client = Client(url, events=server_events(events), token=token(user), timeout=5,
                    min_reconnect_delay=5, max_reconnect_delay=10)
    await client.connect()
    await events.next("connected")
    try:
        yield client, events
    finally:
        await client.disconnect()


async def test_publish_is_delivered_with_the_offset_it_answered(serve: Any) -> None:
    srv = await serve(cf_app())
    async with observer(srv.ws + PATH) as (client, _), AsyncClient(
            srv.http + "/api", API_KEY, timeout=5) as api:
        _sub, events = await subscribed(client, "chat:pub")
        await events.next("subscribed")
        result = await api.publish(PublishRequest(channel="chat:pub", data={"n": 1}))
        pub = (await events.next("publication")).pub
        assert (pub.data, pub.offset) == ({"n": 1}, result.offset) and result.offset == 1
        assert result.epoch
        # the sync client (requests) works the same, off the event loop
        with SyncClient(srv.http + "/api", API_KEY, timeout=5) as sync:
            second = await asyncio.to_thread(
                sync.publish, PublishRequest(channel="chat:pub", data={"n": 2}))
        pub = (await events.next("publication")).pub
        assert (pub.data, pub.offset, second.offset) == ({"n": 2}, 2, 2)


async def test_idempotent_publish_retried_answers_the_first_and_delivers_once(
        serve: Any) -> None:
    srv = await serve(cf_app())
    async with observer(srv.ws + PATH) as (client, _), AsyncClient(
            srv.http + "/api", API_KEY, timeout=5) as api:
        _sub, events = await subscribed(client, "chat:idem")
        await events.next("subscribed")
        request = PublishRequest(channel="chat:idem", data={"x": 1}, idempotency_key="k1")
        first = await api.publish(request)
        again = await api.publish(request)
        assert (again.offset, again.epoch) == (first.offset, first.epoch)
        await api.publish(PublishRequest(channel="chat:idem", data={"x": 2}))
        offsets = [(await events.next("publication")).pub.offset for _ in range(2)]
        assert offsets == [1, 2]  # the retry was not delivered again


async def test_subscribe_unsubscribe_disconnect_act_on_the_users_connections(
        serve: Any) -> None:
    srv = await serve(cf_app())
    async with observer(srv.ws + PATH) as (_, events), AsyncClient(
            srv.http + "/api", API_KEY, timeout=5) as api:
        await api.subscribe(SubscribeRequest(user="alice", channel="room:srv"))
        ctx = await events.next("subscribed")
        assert ctx.channel == "room:srv"
        result = await api.publish(PublishRequest(channel="room:srv", data="hello"))
        pub = await events.next("publication")
        assert (pub.channel, pub.pub.data, pub.pub.offset) == ("room:srv", "hello",
                                                               result.offset)
        presence = await api.presence(PresenceRequest(channel="room:srv"))
        assert [c.user for c in presence.presence.values()] == ["alice"]
        stats = await api.presence_stats(PresenceStatsRequest(channel="room:srv"))
        assert (stats.num_clients, stats.num_users) == (1, 1)
        await api.unsubscribe(UnsubscribeRequest(user="alice", channel="room:srv"))
        assert (await events.next("unsubscribed")).channel == "room:srv"
        stats = await api.presence_stats(PresenceStatsRequest(channel="room:srv"))
        assert stats.num_clients == 0
        await api.disconnect(DisconnectRequest(user="alice"))
        await events.next("disconnected")
        # a user with no connection: nothing to act on, still a success
        await api.disconnect(DisconnectRequest(user="nobody"))


async def test_history_positions_removal_channels_info_and_batch(serve: Any) -> None:
    srv = await serve(cf_app())
    async with observer(srv.ws + PATH) as (client, _), AsyncClient(
            srv.http + "/api", API_KEY, timeout=5) as api:
        for n in range(1, 5):
            await api.publish(PublishRequest(channel="chat:h", data={"n": n}))
        top = await api.history(HistoryRequest(channel="chat:h"))
        assert (top.offset, top.publications) == (4, [])  # no limit: the position only
        page = await api.history(HistoryRequest(channel="chat:h", limit=2))
        assert [p.data for p in page.publications] == [{"n": 1}, {"n": 2}]
        back = await api.history(HistoryRequest(channel="chat:h", limit=2, reverse=True))
        assert [p.offset for p in back.publications] == [4, 3]
        after = await api.history(HistoryRequest(
            channel="chat:h", limit=10, since=StreamPosition(offset=2, epoch=top.epoch)))
        assert [p.offset for p in after.publications] == [3, 4]
        with pytest.raises(CentApiResponseError) as stale:
            await api.history(HistoryRequest(
                channel="chat:h", limit=10, since=StreamPosition(offset=2, epoch="other")))
        assert stale.value.code == 112

        await api.history_remove(HistoryRemoveRequest(channel="chat:h"))
        gone = await api.history(HistoryRequest(channel="chat:h", limit=10))
        assert (gone.publications, gone.offset, gone.epoch) == ([], 4, top.epoch)
        nxt = await api.publish(PublishRequest(channel="chat:h", data={"n": 5}))
        assert (nxt.offset, nxt.epoch) == (5, top.epoch)  # the top offset was kept

        events = Events()
        for channel in ("chat:a", "chat:b", "news:c"):
            await client.new_subscription(channel, events=sub_events(events)).subscribe()
            await events.next("subscribed")
        everything = await api.channels(ChannelsRequest())
        assert set(everything.channels) == {"chat:a", "chat:b", "news:c"}
        chats = await api.channels(ChannelsRequest(pattern="chat:*"))
        assert {k: v.num_clients for k, v in chats.channels.items()} == {
            "chat:a": 1, "chat:b": 1}

        info = await api.info(InfoRequest())
        (node,) = info.nodes
        assert (node.num_clients, node.num_channels, node.num_users) == (1, 3, 1)

        batch = await api.batch(BatchRequest(requests=[
            PublishRequest(channel="chat:a", data=1),
            BroadcastRequest(channels=["chat:a", "chat:b"], data=2),
            PresenceStatsRequest(channel="room:none"),
        ]))
        published, broadcast, stats = batch.replies
        assert published.offset == 1
        assert [r.result.offset for r in broadcast.responses] == [2, 1]
        assert (stats.num_clients, stats.num_users) == (0, 0)
    # A failing command answers its own error; the others still run (raw: `cent`
    # cannot parse an error inside a batch).
    body = {"commands": [{"presence": {"channel": "chat:a"}},
                         {"history": {"channel": "chat:a"}},
                         {"nope": {}}, {"publish": {"channel": "chat:a"}}]}
    _, _, reply = await ahttp("POST", srv.http + "/api/batch", json.dumps(body).encode(),
                              {"X-API-Key": API_KEY})
    replies = json.loads(reply)["replies"]
    assert [r.get("error", {}).get("code") for r in replies] == [108, None, 104, 107]
    assert replies[1]["history"]["offset"] == 2


async def test_errors_have_centrifugos_codes(serve: Any) -> None:
    srv = await serve(cf_app())
    async with AsyncClient(srv.http + "/api", API_KEY, timeout=5) as api:
        with pytest.raises(CentApiResponseError) as bad:
            await api.publish(PublishRequest(channel="bad channel", data=1))
        assert bad.value.code == 107
        with pytest.raises(CentApiResponseError) as off:
            await api.presence(PresenceRequest(channel="chat:no-presence"))
        assert off.value.code == 108
    async with AsyncClient(srv.http + "/api", "wrong key", timeout=5) as wrong:
        with pytest.raises(CentUnauthorizedError):
            await wrong.info(InfoRequest())
    headers = {"X-API-Key": API_KEY}
    status, _, reply = await ahttp("POST", srv.http + "/api/block_user",
                                   b'{"user": "x"}', headers)  # Centrifugo PRO's
    assert (status, json.loads(reply)["error"]["code"]) == (200, 104)
    status, _, _ = await ahttp("POST", srv.http + "/api/no_such_method", b"{}", headers)
    assert status == 404  # not a Centrifugo method: the app's path space
    status, _, reply = await ahttp("POST", srv.http + "/api/publish", b"[1]", headers)
    assert json.loads(reply)["error"]["code"] == 107
    auth = {"Authorization": f"apikey {API_KEY}"}  # Centrifugo's other header
    status, _, reply = await ahttp("POST", srv.http + "/api/publish",
                                   b'{"channel": "chat:x", "data": {}}', auth)
    assert (status, json.loads(reply)) == (200, {"result": {
        "offset": 1, "epoch": json.loads(reply)["result"]["epoch"]}})
    status, _, _ = await ahttp("POST", srv.http + "/api/info", b"{}", {})
    assert status == 401


async def test_batch_over_its_cap_is_refused_before_any_command_runs(serve: Any) -> None:
    srv = await serve(cf_app(server_api_batch_max=3))
    commands = [{"publish": {"channel": "chat:cap", "data": n}} for n in range(4)]
    _, _, reply = await ahttp("POST", srv.http + "/api/batch",
                              json.dumps({"commands": commands}).encode(),
                              {"X-API-Key": API_KEY})
    assert json.loads(reply) == {"error": {"code": 106, "message": "limit exceeded"}}
    async with AsyncClient(srv.http + "/api", API_KEY, timeout=5) as api:
        top = await api.history(HistoryRequest(channel="chat:cap"))
    assert top.offset == 0  # nothing was published


async def test_both_dialects_share_api_publish(serve_any: Any) -> None:
    """Ours: Bearer + {topic, data} -> {ok, offset, epoch}; Centrifugo's: X-API-Key +
    {channel, data} -> {result: {offset, epoch}}; one topic, one offset sequence (on the
    native server and under uvicorn)."""
    srv = await serve_any(cf_app())
    ours = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    status, _, reply = await ahttp("POST", srv.http + "/api/publish",
                                   b'{"topic": "chat:d", "data": 1}', ours)
    assert status == 200 and json.loads(reply)["offset"] == 1 and json.loads(reply)["ok"]
    status, _, reply = await ahttp("POST", srv.http + "/api/publish",
                                   b'{"channel": "chat:d", "data": 2}', {"X-API-Key": API_KEY})
    assert status == 200 and json.loads(reply)["result"]["offset"] == 2
    status, _, reply = await ahttp("POST", srv.http + "/api/publish",
                                   b'{"topic": "chat:d", "data": 1}',
                                   {"Content-Type": "application/json"})
    assert status == 401
    # ours takes an idempotency key too: a retry answers the first offset
    keyed = b'{"topic": "chat:d", "data": 3, "idempotency_key": "once"}'
    answers = [json.loads((await ahttp("POST", srv.http + "/api/publish", keyed, ours))[2])
               for _ in range(2)]
    assert answers[0] == answers[1] and answers[0]["offset"] == 3
    _, _, reply = await ahttp("POST", srv.http + "/api/history", b'{"channel": "chat:d"}',
                              {"X-API-Key": API_KEY})
    assert json.loads(reply)["result"]["offset"] == 3


async def test_user_commands_reach_every_node_through_redis(serve: Any,
                                                            redis_url: str) -> None:
    """Two nodes on one Redis: the API call goes to node A, the user is connected to
    node B, and B's connection is subscribed, sees the publication, is unsubscribed and
    disconnected; presence is shared; `channels` lists every node's channels on either."""
    url = redis_url + f"?prefix=api-{uuid.uuid4().hex[:8]}:"
    node_a, node_b = await serve(cf_app(broker=url)), await serve(cf_app(broker=url))
    async with observer(node_b.ws + PATH, user="bob") as (_, events), AsyncClient(
            node_a.http + "/api", API_KEY, timeout=5) as api:
        await api.subscribe(SubscribeRequest(user="bob", channel="room:x"))
        assert (await events.next("subscribed")).channel == "room:x"
        result = await api.publish(PublishRequest(channel="room:x", data={"to": "bob"}))
        pub = await events.next("publication")
        assert (pub.pub.data, pub.pub.offset) == ({"to": "bob"}, result.offset)
        stats = await api.presence_stats(PresenceStatsRequest(channel="room:x"))
        assert (stats.num_clients, stats.num_users) == (1, 1)
        on_a = await api.channels(ChannelsRequest())  # B's channel, asked of A
        async with AsyncClient(node_b.http + "/api", API_KEY, timeout=5) as api_b:
            on_b = await api_b.channels(ChannelsRequest())
        for found in (on_a, on_b):
            assert {k: v.num_clients for k, v in found.channels.items()} == {"room:x": 1}
        await api.unsubscribe(UnsubscribeRequest(user="bob", channel="room:x"))
        assert (await events.next("unsubscribed")).channel == "room:x"
        await api.disconnect(DisconnectRequest(user="bob"))
        await events.next("disconnected")


async def test_server_side_subscribe_respects_max_subscriptions(serve: Any) -> None:
    srv = await serve(cf_app(max_subscriptions=1))
    async with observer(srv.ws + PATH) as (client, events), AsyncClient(
            srv.http + "/api", API_KEY, timeout=5) as api:
        own = Events()
        await client.new_subscription("chat:own", events=sub_events(own)).subscribe()
        await own.next("subscribed")
        await api.subscribe(SubscribeRequest(user="alice", channel="room:over"))
        await api.subscribe(SubscribeRequest(user="alice", channel="chat:own"))  # has it
        await api.publish(PublishRequest(channel="room:over", data="no"))
        await api.publish(PublishRequest(channel="chat:own", data="yes"))
        assert (await own.next("publication")).pub.data == "yes"
        seen = [name for name, _ in events.seen]
        assert "subscribed" not in seen and "publication" not in seen
        assert "disconnected" not in seen and client.state.value == "connected"


async def test_an_apps_own_api_routes_keep_working_beside_it(serve: Any) -> None:
    """The server API mounts one static route per method, so an app's own
    ``POST /api/{name}`` (registered before or after) neither clashes nor is shadowed
    for other names."""
    from pubsocket import App, pubsub
    from tests.conftest import make_settings

    for before in (True, False):
        app = App(make_settings())

        async def mine(request: Any, response: Any) -> Any:
            return response({"mine": request.path_params["name"]})

        if before:
            app.post("/api/{name}")(mine)
        pubsub(PATH, app=app, protocol="centrifuge", secured=True)
        if not before:
            app.post("/api/{name}")(mine)
        srv = await serve(app)
        bearer = {"Authorization": f"Bearer {API_KEY}"}
        status, _, reply = await ahttp("POST", srv.http + "/api/orders", b"{}", bearer)
        assert (status, json.loads(reply)) == (200, {"mine": "orders"})
        _, _, reply = await ahttp("POST", srv.http + "/api/info", b"{}",
                                  {"X-API-Key": API_KEY})
        assert ("result" in json.loads(reply)) is not before  # the app's came first
