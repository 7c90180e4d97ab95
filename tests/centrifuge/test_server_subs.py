"""Server-side subscriptions at connect (the personal channel, the token's ``subs``
claim), recovered through the connect command's ``subs`` after a dropped connection,
their caps and gaps, and the server API's subscribe: the real centrifuge-python SDK
(JSON and Protobuf) and ``cent`` against a real server on port 0, and the raw wire
where an ordering must be seen message by message."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import jwt
import pytest
from cent import AsyncClient, StreamPosition, SubscribeRequest
from websockets.asyncio.client import connect

from centrifuge import Client, ClientEventHandler
from pubsocket.brokers.base import HistoryPolicy, Position
from pubsocket.centrifugo_config import settings_from
from pubsocket.errors import ConfigError
from tests.centrifuge.conftest import PATH, Events, _recorder, cf_app, token
from tests.centrifuge.test_config_file import file_app
from tests.centrifuge.test_sdk import drop_every_connection, sdk
from tests.centrifuge.test_wire import closed_with
from tests.centrifuge_js.proxy import proxy_to
from tests.conftest import API_KEY

server_events = _recorder(ClientEventHandler, (
    "connecting", "connected", "disconnected", "subscribing", "subscribed",
    "unsubscribed", "publication"))


def client_of(url: str, tok: str, **kwargs: Any
              ) -> AbstractAsyncContextManager[tuple[Client, Events]]:
    """`sdk` with `tok`, recording the server-side subscriptions' events too."""
    return sdk(url, server_events, token=tok, **kwargs)


def data_of(ctx: Any) -> Any:
    data = ctx.pub.data
    return json.loads(data) if isinstance(data, bytes) else data


async def test_the_personal_channel_and_the_subs_claim(serve: Any) -> None:
    app = cf_app(personal_channel=True)
    srv = await serve(app)
    tok = token("alice", subs={"news:1": {}, "news:2": {"override": {}}})
    async with client_of(srv.ws + PATH, tok) as (_client, events):
        got = {(await events.next("subscribed")).channel for _ in range(3)}
        assert got == {"#alice", "news:1", "news:2"}
        assert app.hub.subscriber_count("#alice") == 1
        for channel in ("#alice", "news:2"):
            await app.hub.publish(channel, {"to": channel})
            pub = await events.next("publication")
            assert (pub.channel, data_of(pub), pub.pub.offset) == (
                channel, {"to": channel}, 1)
    async with asyncio.timeout(5):  # gone with the connection (the server sees the close)
        while app.hub.subscriber_count("#alice"):
            await asyncio.sleep(0.01)


async def test_every_connection_of_a_user_gets_its_personal_channel(serve: Any) -> None:
    app = cf_app(personal_channel=True, personal_channel_namespace="personal")
    srv = await serve(app)
    async with client_of(srv.ws + PATH, token("bob")) as (_one, ev1), \
            client_of(srv.ws + PATH, token("bob")) as (_two, ev2):
        for events in (ev1, ev2):
            assert (await events.next("subscribed")).channel == "personal:#bob"
        await app.hub.publish("personal:#bob", "hi")
        for events in (ev1, ev2):
            assert data_of(await events.next("publication")) == "hi"


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_a_dropped_connection_recovers_server_side_subscriptions(
        serve: Any, protobuf: bool) -> None:
    """Publications on the personal channel and a ``subs`` channel while the client is
    away arrive after it reconnects, in the connect reply's ``subs`` (recovered): each
    offset once, in order, then live ones continue."""
    app = cf_app(personal_channel=True)
    srv = await serve(app)
    tok = token("carol", subs={"feed:c": {}})
    async with proxy_to(srv.port) as proxy, client_of(
            f"ws://127.0.0.1:{proxy.port}{PATH}", tok, use_protobuf=protobuf) as (_, events):
        first = {(await events.next("subscribed")).channel for _ in range(2)}
        assert first == {"#carol", "feed:c"}
        offsets: dict[str, list[int]] = {"#carol": [], "feed:c": []}
        for i in range(2):
            for channel in offsets:
                await app.hub.publish(channel, i)
        for _ in range(4):
            pub = await events.next("publication")
            offsets[pub.channel].append(pub.pub.offset)
        proxy.cut()  # no close frame: an abnormal close, the SDK reconnects
        for i in range(2, 6):
            for channel in offsets:
                await app.hub.publish(channel, i)
        proxy.resume()
        again = [await events.next("subscribed", within=10) for _ in range(2)]
        assert {c.channel for c in again} == set(offsets)
        assert all(c.was_recovering and c.recovered for c in again)
        data: dict[str, list[Any]] = {"#carol": [], "feed:c": []}
        for _ in range(8):
            pub = await events.next("publication")
            offsets[pub.channel].append(pub.pub.offset)
            data[pub.channel].append(data_of(pub))
        await app.hub.publish("feed:c", "live")
        pub = await events.next("publication")
        assert (pub.channel, pub.pub.offset) == ("feed:c", 7)
        for channel, seen in offsets.items():
            assert seen == list(range(1, 7)), channel  # every offset once, in order
            assert data[channel] == [2, 3, 4, 5]
        assert app.hub.subscriber_count("feed:c") == 1  # taken over, not doubled


async def test_history_that_no_longer_holds_the_gap_is_recovered_false(serve: Any) -> None:
    app = cf_app(history={"short:*": HistoryPolicy(3, 60)})
    srv = await serve(app)
    async with client_of(srv.ws + PATH, token("dan", subs={"short:d": {}})) as (_, events):
        await events.next("subscribed")
        await app.hub.publish("short:d", "a")
        assert (await events.next("publication")).pub.offset == 1
        drop_every_connection(srv)
        for i in range(10):
            await app.hub.publish("short:d", i)
        again = await events.next("subscribed", within=10)
        assert again.was_recovering and not again.recovered  # told, not silently skipped
        assert again.stream_position.offset == 11
        await app.hub.publish("short:d", "b")
        assert (await events.next("publication")).pub.offset == 12


async def test_recovered_replay_stays_within_the_reply_caps(serve: Any) -> None:
    """Two channels each missed 4 publications; the connect may replay at most 5 in
    all: one channel is recovered, the other told recovered: false (never partly)."""
    app = cf_app(history_reply_limit=5)
    srv = await serve(app)
    tok = token("erin", subs={"cap:1": {}, "cap:2": {}})
    async with client_of(srv.ws + PATH, tok) as (_, events):
        for _ in range(2):
            await events.next("subscribed")
        drop_every_connection(srv)
        for i in range(4):
            for channel in ("cap:1", "cap:2"):
                await app.hub.publish(channel, i)
        again = {c.channel: c for c in [await events.next("subscribed", within=10)
                                        for _ in range(2)]}
        assert sorted(c.recovered for c in again.values()) == [False, True]
        assert all(c.was_recovering for c in again.values())
        recovered = next(ch for ch, c in again.items() if c.recovered)
        told = next(c for c in again.values() if not c.recovered)
        assert told.stream_position.offset == 4  # live delivery goes on from the top
        pubs = [await events.next("publication") for _ in range(4)]
        assert [(p.channel, p.pub.offset) for p in pubs] == [(recovered, i) for i in
                                                             range(1, 5)]


async def test_a_gap_on_a_server_side_subscription_reconnects_and_recovers(
        serve: Any) -> None:
    """The SDK cannot resubscribe a server-side subscription: a hole the hub could not
    fill is a 3010 disconnect push, and the reconnect's recovery fills it."""
    app = cf_app()
    srv = await serve(app)
    async with client_of(srv.ws + PATH, token("finn", subs={"g:1": {}})) as (_, events):
        await events.next("subscribed")
        await app.hub.publish("g:1", "a")
        await events.next("publication")
        app.hub._gap("g:1", app.hub._topics["g:1"], Position(1, "ignored"))
        connecting = await events.next("connecting", within=10)
        assert (connecting.code, connecting.reason) == (3010, "insufficient state")
        again = await events.next("subscribed", within=10)
        assert again.was_recovering and again.recovered
        await app.hub.publish("g:1", "b")
        assert (await events.next("publication")).pub.offset == 2
        assert app.hub.subscriber_count("g:1") == 1


async def test_more_server_side_channels_than_allowed_close_3505(serve: Any) -> None:
    srv = await serve(cf_app(max_subscriptions=2))
    subs: dict[str, Any] = {f"many:{i}": {} for i in range(3)}
    async with connect(srv.ws + PATH) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": token("gus", subs=subs)}}))
        assert await closed_with(ws) == (3505, "channel limit")
    # the client's own connect subs are capped the same way
    asked = {f"mine:{i}": {"recover": True, "offset": 0, "epoch": ""} for i in range(3)}
    async with connect(srv.ws + PATH) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": token("gus"), "subs": asked}}))
        assert await closed_with(ws) == (3505, "channel limit")


async def test_connect_subs_are_only_the_channels_the_client_may_subscribe(
        serve: Any) -> None:
    """A reconnecting client names channels in its connect ``subs``: those it may
    subscribe to are recovered as server-side ones, the others are left out."""
    app = cf_app()
    srv = await serve(app)
    await app.hub.publish("open:1", "before")
    tok = token("hal", topics={"subscribe": ["open:*"]})
    asked = {"open:1": {"recover": True, "offset": 0, "epoch": ""},
             "closed:1": {"recover": True, "offset": 0, "epoch": ""}}
    async with connect(srv.ws + PATH) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": tok, "subs": asked}}))
        reply = json.loads(await ws.recv())["connect"]
        assert list(reply["subs"]) == ["open:1"]
        sub = reply["subs"]["open:1"]
        assert sub["recovered"] and sub["was_recovering"] and sub["offset"] == 0
        assert [p["data"] for p in sub["publications"]] == ["before"]


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_the_server_apis_subscribe_with_recover_since(serve: Any,
                                                            protobuf: bool) -> None:
    """``cent``'s subscribe: the SDK hears a subscribe push (its server-side
    ``subscribed`` event), and with ``recover_since`` what was published after that
    position, each offset once, before the live ones."""
    app = cf_app()
    srv = await serve(app)
    for i in range(4):
        await app.hub.publish("api:r", i)
    epoch = (await app.hub.history("api:r", None, 0)).position.epoch
    async with client_of(srv.ws + PATH, token("jo"), use_protobuf=protobuf) as (_, events), \
            AsyncClient(srv.http + "/api", API_KEY, timeout=5) as api:
        await events.next("connected")
        await api.subscribe(SubscribeRequest(
            user="jo", channel="api:r", recover_since=StreamPosition(offset=1, epoch=epoch)))
        ctx = await events.next("subscribed")
        assert ctx.channel == "api:r" and ctx.recoverable
        await app.hub.publish("api:r", 4)
        pubs = [await events.next("publication") for _ in range(3)]
        assert [(p.pub.offset, data_of(p)) for p in pubs] == [(2, 1), (3, 2), (4, 3)]
        assert (await events.next("publication")).pub.offset == 5
        await api.subscribe(SubscribeRequest(user="jo", channel="api:plain"))
        assert (await events.next("subscribed")).channel == "api:plain"


async def test_a_token_refresh_keeps_server_side_subscriptions(serve: Any) -> None:
    """They were granted by the server, not by the token's permissions: a refresh
    re-checks the client's own subscriptions only."""
    app = cf_app()
    srv = await serve(app)
    limits = {"subscribe": ["open:*"]}
    async with connect(srv.ws + PATH) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {
            "token": token("kim", subs={"srv:k": {}}, topics=limits)}}))
        assert list(json.loads(await ws.recv())["connect"]["subs"]) == ["srv:k"]
        await ws.send(json.dumps({"id": 2, "refresh": {"token": token("kim", topics=limits)}}))
        assert "refresh" in json.loads(await ws.recv())
        await app.hub.publish("srv:k", "still")
        push = json.loads(await ws.recv())["push"]
        assert (push["channel"], push["pub"]["data"]) == ("srv:k", "still")


def test_the_config_files_personal_channel_maps_onto_settings() -> None:
    values, ignored = settings_from({"client": {"subscribe_to_user_personal_channel": {
        "enabled": True, "personal_channel_namespace": "personal",
        "single_connection": True}}})
    assert (values["personal_channel"], values["personal_channel_namespace"]) == (
        True, "personal")
    assert ignored == ["client.subscribe_to_user_personal_channel.single_connection"]
    _, quiet = settings_from({"client": {"subscribe_to_user_personal_channel": {
        "enabled": False, "single_connection": False}}})
    assert quiet == []
    with pytest.raises(ConfigError, match="personal_channel_namespace"):
        settings_from({"client": {"subscribe_to_user_personal_channel": {
            "personal_channel_namespace": "a b"}}})


async def test_a_config_file_subscribes_the_personal_channel(serve: Any,
                                                             tmp_path: Path) -> None:
    secret = "file-secret-0123456789abcdef0123"
    config = {"client": {"token": {"hmac_secret_key": secret},
                         "subscribe_to_user_personal_channel": {
                             "enabled": True, "personal_channel_namespace": "personal"}},
              "channel": {"namespaces": [{"name": "personal", "history_size": 10,
                                          "history_ttl": "60s"}]}}
    app = file_app(tmp_path, config)
    srv = await serve(app)
    tok = jwt.encode({"sub": "lee"}, secret, algorithm="HS256")
    async with client_of(srv.ws + PATH, tok) as (_, events):
        ctx = await events.next("subscribed")
        assert ctx.channel == "personal:#lee" and ctx.recoverable
        await app.hub.publish("personal:#lee", "for lee")
        pub = await events.next("publication")
        assert (pub.channel, data_of(pub), pub.pub.offset) == ("personal:#lee", "for lee", 1)


async def test_recovery_through_redis(serve: Any, redis_url: str) -> None:
    """On Redis every step awaits the broker (subscribe, position, history read): the
    connect reply still comes before any live publication of its channels."""
    url = redis_url + f"?prefix=ssub-{uuid.uuid4().hex[:8]}:"
    app = cf_app(broker=url, personal_channel=True)
    srv = await serve(app)
    tok = token("max", subs={f"r:{i}": {} for i in range(5)})
    channels = ["#max", *(f"r:{i}" for i in range(5))]
    async with client_of(srv.ws + PATH, tok) as (_, events):
        assert {(await events.next("subscribed")).channel for _ in channels} == set(channels)
        drop_every_connection(srv)
        for channel in channels:
            await app.hub.publish(channel, "missed")
        publishing = asyncio.create_task(_keep_publishing(app, channels))
        try:
            again = [await events.next("subscribed", within=10) for _ in channels]
        finally:
            publishing.cancel()
        assert all(c.was_recovering and c.recovered for c in again), again
        await asyncio.sleep(0.2)
        for channel in channels:
            await app.hub.publish(channel, "last")
        seen: dict[str, list[int]] = {ch: [] for ch in channels}
        done: set[str] = set()
        async with asyncio.timeout(5):
            while len(done) < len(channels):  # every publication event, in order
                ctx = await events.next("publication")
                seen[ctx.channel].append(ctx.pub.offset)
                if data_of(ctx) == "last":
                    done.add(ctx.channel)
        for channel, offs in seen.items():  # each offset once, in order, none missing
            assert offs == list(range(1, len(offs) + 1)), (channel, offs)


async def _keep_publishing(app: Any, channels: list[str]) -> None:
    """Live publications racing the reconnect's recovery."""
    for i in range(1000):
        for channel in channels:
            await app.hub.publish(channel, i)
        await asyncio.sleep(0.005)


async def test_no_live_publication_overtakes_the_connect_reply(serve: Any,
                                                              redis_url: str) -> None:
    """On the raw wire, on Redis (each new channel awaits the broker) while every
    channel is published to without pause: the connect reply is the first message, and
    after its recovered publications each channel's pushes continue without a hole or a
    repeat."""
    url = redis_url + f"?prefix=ssub-{uuid.uuid4().hex[:8]}:"
    app = cf_app(broker=url)
    srv = await serve(app)
    channels = [f"race:{i}" for i in range(20)]
    for channel in channels:
        await app.hub.publish(channel, 0)
    stop = asyncio.Event()

    async def publish() -> None:
        for i in range(1, 100_000):
            if stop.is_set():
                return
            await app.hub.publish(channels[i % len(channels)], i)

    publishing = asyncio.create_task(publish())
    try:
        async with connect(srv.ws + PATH) as ws:
            asked = {ch: {"recover": True, "offset": 0, "epoch": ""} for ch in channels}
            await ws.send(json.dumps({"id": 1, "connect": {
                "token": token("ned", subs={ch: {} for ch in channels}), "subs": asked}}))
            first = [json.loads(line) for line in (await ws.recv()).split("\n")]
            reply = first[0]["connect"]
            last = {}
            for channel, sub in reply["subs"].items():
                assert sub["recovered"], channel
                offsets = [p["offset"] for p in sub["publications"]]
                assert offsets == list(range(1, len(offsets) + 1)), channel
                last[channel] = offsets[-1]
            pushes = first[1:]
            async with asyncio.timeout(5):
                while len(pushes) < 200:
                    pushes += [json.loads(line) for line in (await ws.recv()).split("\n")]
    finally:
        stop.set()
        await publishing
    for push in pushes:
        channel, offset = push["push"]["channel"], push["push"]["pub"]["offset"]
        assert offset == last[channel] + 1, (channel, offset, last[channel])
        last[channel] = offset
