"""Centrifuge (centrifuge-python) and the reply rules of issue 15: recovery needs the
history permission, reverse history pages stop at the byte cap from the newest end,
join/leave pushes go only to subscribers allowed presence."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from centrifuge import StreamPosition
from tests.centrifuge.conftest import PATH, cf_app, token
from tests.centrifuge.test_sdk import drop_every_connection, sdk, subscribed

NO_HISTORY = {"subscribe": ["*"], "publish": ["*"], "presence": ["*"]}


async def test_recover_without_the_history_permission_is_recovered_false(serve: Any) -> None:
    app = cf_app()
    srv = await serve(app)
    async with sdk(srv.ws + PATH, token=token("mallory", topics=NO_HISTORY)) as (client, _):
        sub, sub_ev = await subscribed(client, "chat:h", recoverable=True)
        await sub_ev.next("subscribed")
        await sub.publish("a")
        assert (await sub_ev.next("publication")).pub.offset == 1
        drop_every_connection(srv)
        for i in range(3):  # missed while away: only history could replay them
            await app.hub.publish("chat:h", {"secret": i})
        again = await sub_ev.next("subscribed", within=10)
        assert again.was_recovering and not again.recovered
        assert again.stream_position.offset == 4  # continues live from the top
        await sub.publish("b")
        assert (await sub_ev.next("publication")).pub.offset == 5  # none of the missed


async def test_reverse_history_pages_keep_the_newest_end_under_the_byte_cap(
        serve: Any) -> None:
    srv = await serve(cf_app(history_reply_bytes=250))
    async with sdk(srv.ws + PATH, token=token("alice")) as (client, _):
        sub, sub_ev = await subscribed(client, "chat:rev", recoverable=True)
        await sub_ev.next("subscribed")
        for n in range(1, 7):
            await sub.publish({"n": n, "pad": "x" * 80})  # ~100 bytes each
        newest = await sub.history(limit=10, reverse=True)  # from the newest end
        pages = [[p.offset for p in newest.publications]]
        since = pages[-1][-1]
        for _ in range(6):  # bounded: the client pages back with since
            page = await sub.history(limit=10, since=StreamPosition(since, newest.epoch),
                                     reverse=True)
            if not page.publications:
                break
            pages.append([p.offset for p in page.publications])
            since = pages[-1][-1]
        assert pages == [[6, 5], [4, 3], [2, 1]]
        forward = await sub.history(limit=10)  # the newest 10, cut short: client pages on
        assert [p.offset for p in forward.publications] == [1, 2]


@pytest.mark.parametrize("claim", [None, {"subscribe": ["*"]}])
async def test_join_leave_reach_only_subscribers_allowed_presence(
        serve: Any, claim: dict[str, list[str]] | None) -> None:
    srv = await serve(cf_app())
    url = srv.ws + PATH
    bob_token = token("bob") if claim is None else token("bob", topics=claim)
    async with sdk(url, token=token("alice")) as (alice, _), \
            sdk(url, token=bob_token) as (bob, _):
        _sub_a, ev_a = await subscribed(alice, "room:j", join_leave=True)
        _sub_b, ev_b = await subscribed(bob, "room:j", join_leave=True)
        await ev_a.next("join", where=lambda c: c.info.user == "bob")
        async with sdk(url, token=token("carol", info={"secret": 1})) as (carol, _):
            await subscribed(carol, "room:j", join_leave=True)
            joined = await ev_a.next("join", where=lambda c: c.info.user == "carol")
            assert joined.info.conn_info == {"secret": 1}
        await ev_a.next("leave", where=lambda c: c.info.user == "carol")
        await asyncio.sleep(0.2)  # what bob would get has arrived by now
        seen = [(name, ctx.info.user) for name, ctx in ev_b.seen
                if name in ("join", "leave")]
        if claim is None:
            assert ("join", "carol") in seen and ("leave", "carol") in seen
        else:
            assert seen == []
