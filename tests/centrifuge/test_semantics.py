"""Centrifuge semantics where they differ from pubsocket.v1, driven by centrifuge-python
(the real SDK) against a real server: an empty epoch means "any epoch", the
reject-unrecovered flag (error 112), join/leave per client (v1 keeps per-user).
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import connect

from centrifuge import StreamPosition
from pubsocket.brokers.base import HistoryPolicy
from tests.centrifuge.conftest import PATH, cf_app, token
from tests.centrifuge.test_sdk import drop_every_connection, sdk, subscribed


async def test_empty_epoch_recovers_from_the_offset_in_any_epoch(serve: Any) -> None:
    """get_state answering (0, "") subscribes with recover, offset 0, epoch "": every
    kept publication is replayed (old code: another epoch, recovered false, none)."""
    app = cf_app()
    srv = await serve(app)
    for i in range(3):
        await app.hub.publish("chat:e", {"i": i})
    calls = 0

    async def get_state(_channel: str) -> StreamPosition:
        nonlocal calls
        calls += 1
        return StreamPosition(offset=0, epoch="")

    async with sdk(srv.ws + PATH, token=token("alice")) as (client, _events):
        _sub, ev = await subscribed(client, "chat:e", get_state=get_state)
        got = await ev.next("subscribed")
        assert got.was_recovering and got.recovered
        pubs = [(await ev.next("publication")).pub for _ in range(3)]
        assert [p.data for p in pubs] == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert [p.offset for p in pubs] == [1, 2, 3]
        assert got.stream_position.epoch  # the real epoch, not the empty one asked
        assert calls == 1


async def test_history_since_with_an_empty_epoch_reads_on_from_the_offset(serve: Any) -> None:
    app = cf_app()
    srv = await serve(app)
    for i in range(4):
        await app.hub.publish("chat:h", i)
    async with sdk(srv.ws + PATH, token=token("alice")) as (client, _events):
        sub, _ev = await subscribed(client, "chat:h")
        page = await sub.history(since=StreamPosition(offset=1, epoch=""), limit=10)
        assert [p.offset for p in page.publications] == [2, 3, 4]
        assert [p.data for p in page.publications] == [1, 2, 3]
        back = await sub.history(since=StreamPosition(offset=3, epoch=""), limit=10,
                                 reverse=True)
        assert [p.offset for p in back.publications] == [2, 1]


async def test_reject_unrecovered_answers_112_and_the_sdk_reloads_state(serve: Any) -> None:
    """With get_state the SDK sets the reject-unrecovered flag: a position history no
    longer covers is error 112 (not ``recovered: false``), so it asks get_state again and
    subscribes from the fresh position (old code: one get_state call, a silent hole)."""
    app = cf_app(history={"small:*": HistoryPolicy(2, 300)})
    srv = await serve(app)
    calls = 0

    async def get_state(_channel: str) -> StreamPosition:
        nonlocal calls
        calls += 1
        page = await app.hub.history("small:1", None, 0)
        return StreamPosition(offset=page.position.offset, epoch=page.position.epoch)

    await app.hub.publish("small:1", "first")
    async with sdk(srv.ws + PATH, token=token("alice")) as (client, _events):
        _sub, ev = await subscribed(client, "small:1", get_state=get_state,
                                   min_resubscribe_delay=0.05, max_resubscribe_delay=0.05)
        await ev.next("subscribed")
        assert calls == 1
        drop_every_connection(srv)
        for i in range(5):  # history keeps 2: offsets 2..4 are gone for good
            await app.hub.publish("small:1", i)
        again = await ev.next("subscribed", within=10)
        assert calls == 2
        assert again.stream_position.offset == 6
        await app.hub.publish("small:1", "live")
        assert (await ev.next("publication")).pub.data == "live"
        assert app.hub.subscriber_count("small:1") == 1


async def test_two_clients_of_one_user_see_each_other_join_and_leave(serve: Any) -> None:
    """Centrifuge announces every client; pubsocket.v1 only a user's first and last."""
    app = cf_app()
    srv = await serve(app)
    url = srv.ws + PATH
    async with connect(srv.ws + "/ws/chat", subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
                       additional_headers={"Authorization": f"Bearer {token('42')}"}) as v1, \
            sdk(url, token=token("42")) as (one, _):
        await v1.send('{"action": "subscribe", "topic": "room:u", "id": 1}')
        assert '"ack"' in str(await v1.recv())
        _sub1, ev1 = await subscribed(one, "room:u", join_leave=True)
        async with sdk(url, token=token("42")) as (two, _):
            _sub2, _ev2 = await subscribed(two, "room:u", join_leave=True)
            joined = await ev1.next("join", where=lambda c: c.info.client != one.client_id)
            assert joined.info.client == two.client_id and joined.info.user == "42"
            two_id = two.client_id
        left = await ev1.next("leave")
        assert left.info.client == two_id
        # the v1 client (also user 42) joined first: the SDK clients were not the
        # user's first or last connection, so it heard no join or leave of theirs
        await app.hub.publish("room:u", "sentinel")
        frames = await _until_sentinel(v1)
        assert not [f for f in frames if one.client_id in f or two_id in f]
        assert not [f for f in frames if '"leave"' in f]


async def _until_sentinel(ws: Any) -> list[str]:
    frames: list[str] = []
    async with asyncio.timeout(5):
        while '"sentinel"' not in (frame := str(await ws.recv())):
            frames.append(frame)
    return frames



async def test_pubsocket_v1_keeps_an_empty_epoch_as_another_epoch(serve: Any) -> None:
    """docs/protocol.md: v1 recovers only within the epoch it names."""
    app = cf_app()
    srv = await serve(app)
    await app.hub.publish("chat:v", 1)
    async with connect(srv.ws + "/ws/chat", subprotocols=["pubsocket.v1"]) as v1:  # type: ignore[list-item]
        await v1.send('{"action": "subscribe", "topic": "chat:v", "id": 1,'
                      ' "since": {"offset": 0, "epoch": ""}}')
        ack = str(await v1.recv())
        assert '"ack"' in ack and '"recovered":false' in ack
