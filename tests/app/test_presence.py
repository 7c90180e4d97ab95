"""Presence with real clients on one node: presence and presence_stats replies, join and
leave once per user, presence_off, presence_events=False and the HTTP API. "Nothing
arrived" is proven with a sentinel publication read after it."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from pubsocket import App, pubsub
from pubsocket.auth import Authenticator
from tests.conftest import API_KEY, SECRET, make_settings

AUTH = Authenticator(API_KEY, SECRET)
TOPIC = "room:a"


def make_app(events: bool | None = None) -> App:
    app = App(make_settings())
    if events is None:
        pubsub("/ws/chat", app=app, secured=True, presence=["room:*"])
    else:
        pubsub("/ws/chat", app=app, secured=True, presence=["room:*"],
               presence_events=events)
    return app


async def client(srv: Any, sub: str, info: Any = None) -> ClientConnection:
    claims = {} if info is None else {"info": info}
    tok = AUTH.issue(sub, 60, claims)
    return await connect(f"{srv.ws}/ws/chat", subprotocols=["pubsocket.v1"],  # type: ignore[list-item]
                         additional_headers={"Authorization": f"Bearer {tok}"})


async def command(ws: ClientConnection, **cmd: Any) -> dict[str, Any]:
    """Send `cmd` and return its reply (pushes before it skipped)."""
    await ws.send(json.dumps(cmd))
    async with asyncio.timeout(5):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("id") == cmd["id"] and msg.get("type") != "message":
                return msg  # type: ignore[no-any-return]


async def subscribe(ws: ClientConnection, topic: str = TOPIC) -> None:
    assert (await command(ws, action="subscribe", topic=topic, id="sub"))["type"] == "ack"


async def stats(ws: ClientConnection, topic: str = TOPIC) -> tuple[int, int]:
    got = await command(ws, action="presence_stats", topic=topic, id="st")
    return got["connections"], got["users"]


async def wait_stats(ws: ClientConnection, want: tuple[int, int]) -> None:
    """Until the store counts `want` (leaves are removed in the background)."""
    async with asyncio.timeout(5):
        while await stats(ws) != want:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # the event published after the store update


async def before_sentinel(ws: ClientConnection, publisher: ClientConnection,
                          sentinel: str = "END") -> list[dict[str, Any]]:
    """Every frame `ws` receives before the sentinel publication to TOPIC."""
    await publisher.send(json.dumps({"action": "publish", "topic": TOPIC,
                                     "data": sentinel, "id": "sentinel"}))
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "message" and msg.get("data") == sentinel:
                return seen
            seen.append(msg)


def events(frames: list[dict[str, Any]], kind: str, user: str | None = None
           ) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("type") == kind
            and (user is None or f.get("user") == user)]


async def wait_event(ws: ClientConnection, kind: str, user: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == kind and msg.get("user") == user:
                return msg  # type: ignore[no-any-return]


def http(url: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {API_KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


async def ahttp(url: str) -> tuple[int, Any]:
    return await asyncio.to_thread(http, url)


# -- replies ----------------------------------------------------------------------------
async def test_presence_lists_clients_with_user_and_info(serve: Any) -> None:
    srv = await serve(make_app())
    alice = await client(srv, "alice", {"name": "Alice"})
    bob = await client(srv, "bob")
    try:
        await subscribe(alice)
        await subscribe(bob)
        got = await command(bob, action="presence", topic=TOPIC, id=1)
        assert set(got) == {"type", "id", "topic", "clients"}
        assert got["type"] == "presence" and got["id"] == 1 and got["topic"] == TOPIC
        assert len(got["clients"]) == 2
        assert sorted((c["user"], c["info"]) for c in got["clients"].values()
                      if c["info"] is not None) == [("alice", {"name": "Alice"})]
        assert sorted(c["user"] for c in got["clients"].values()) == ["alice", "bob"]
        assert all(set(c) == {"user", "info"} for c in got["clients"].values())
    finally:
        await alice.close()
        await bob.close()


async def test_presence_stats_counts_connections_and_users(serve: Any) -> None:
    srv = await serve(make_app())
    a1, a2, bob = (await client(srv, "alice"), await client(srv, "alice"),
                   await client(srv, "bob"))
    try:
        for ws in (a1, a2, bob):
            await subscribe(ws)
        got = await command(a1, action="presence_stats", topic=TOPIC, id=2)
        assert got == {"type": "presence_stats", "id": 2, "topic": TOPIC,
                       "connections": 3, "users": 2}
        listed = await command(a1, action="presence", topic=TOPIC, id=3)
        assert sorted(c["user"] for c in listed["clients"].values()) == [
            "alice", "alice", "bob"]
    finally:
        for ws in (a1, a2, bob):
            await ws.close()


async def test_presence_off_for_a_topic_outside_the_patterns(serve: Any) -> None:
    srv = await serve(make_app())
    ws = await client(srv, "alice")
    try:
        await subscribe(ws, "news")
        for action, cmd_id in (("presence", 4), ("presence_stats", 5)):
            got = await command(ws, action=action, topic="news", id=cmd_id)
            assert got["type"] == "error" and got["code"] == "presence_off"
            assert got["id"] == cmd_id
        # the connection still works
        assert (await command(ws, action="presence", topic=TOPIC, id=6))["type"] == \
            "presence"
    finally:
        await ws.close()


# -- join and leave ---------------------------------------------------------------------
async def test_join_and_leave_on_unsubscribe(serve: Any) -> None:
    srv = await serve(make_app())
    alice = await client(srv, "alice")
    bob = await client(srv, "bob", {"name": "Bob"})
    try:
        await subscribe(alice)
        await subscribe(bob)
        join = await wait_event(alice, "join", "bob")
        assert join["topic"] == TOPIC and join["info"] == {"name": "Bob"}
        assert set(join) == {"type", "topic", "user", "info", "client"}
        who = await command(alice, action="presence", topic=TOPIC, id=7)
        assert join["client"] in who["clients"]
        assert who["clients"][join["client"]] == {"user": "bob", "info": {"name": "Bob"}}
        await command(bob, action="unsubscribe", topic=TOPIC, id="u")
        leave = await wait_event(alice, "leave", "bob")
        assert leave["topic"] == TOPIC and leave["client"] == join["client"]
        await wait_stats(alice, (1, 1))
    finally:
        await alice.close()
        await bob.close()


async def test_leave_on_disconnect(serve: Any) -> None:
    srv = await serve(make_app())
    alice = await client(srv, "alice")
    bob = await client(srv, "bob")
    try:
        await subscribe(alice)
        await subscribe(bob)
        join = await wait_event(alice, "join", "bob")
        await bob.close()
        leave = await wait_event(alice, "leave", "bob")
        assert leave["client"] == join["client"] and leave["topic"] == TOPIC
        await wait_stats(alice, (1, 1))
        who = await command(alice, action="presence", topic=TOPIC, id=8)
        assert [c["user"] for c in who["clients"].values()] == ["alice"]
    finally:
        await alice.close()
        await bob.close()


async def test_second_connection_of_a_user_joins_and_leaves_silently(serve: Any) -> None:
    srv = await serve(make_app())
    alice = await client(srv, "alice")
    b1 = await client(srv, "bob")
    b2 = await client(srv, "bob")
    try:
        await subscribe(alice)
        await subscribe(b1)
        await wait_event(alice, "join", "bob")
        await subscribe(b2)
        await wait_stats(alice, (3, 2))
        seen = await before_sentinel(alice, alice, "after-second-join")
        assert events(seen, "join", "bob") == []
        # the first of bob's connections leaving: no leave
        await b1.close()
        await wait_stats(alice, (2, 2))
        seen = await before_sentinel(alice, alice, "after-first-leave")
        assert events(seen, "leave", "bob") == []
        # the last one leaving (unsubscribe): the leave
        await command(b2, action="unsubscribe", topic=TOPIC, id="u")
        leave = await wait_event(alice, "leave", "bob")
        assert leave["topic"] == TOPIC
        await wait_stats(alice, (1, 1))
        seen = await before_sentinel(alice, alice, "after-last-leave")
        assert events(seen, "leave") == []  # exactly one
    finally:
        for ws in (alice, b1, b2):
            await ws.close()


async def test_presence_events_off_still_answers_presence(serve: Any) -> None:
    srv = await serve(make_app(events=False))
    alice = await client(srv, "alice")
    bob = await client(srv, "bob", {"name": "Bob"})
    try:
        await subscribe(alice)
        await subscribe(bob)
        await wait_stats(alice, (2, 2))
        who = await command(alice, action="presence", topic=TOPIC, id=9)
        assert sorted(c["user"] for c in who["clients"].values()) == ["alice", "bob"]
        await bob.close()
        await wait_stats(alice, (1, 1))
        seen = await before_sentinel(alice, alice)
        assert events(seen, "join") == [] and events(seen, "leave") == []
    finally:
        await alice.close()
        await bob.close()


# -- HTTP ---------------------------------------------------------------------------------
async def test_http_presence_and_stats(serve: Any) -> None:
    srv = await serve(make_app())
    a1, a2 = await client(srv, "alice", {"name": "Alice"}), await client(srv, "alice")
    try:
        await subscribe(a1)
        await subscribe(a2)
        status, body = await ahttp(f"{srv.http}/api/presence?topic={TOPIC}")
        assert status == 200 and set(body) == {"topic", "clients"}
        assert body["topic"] == TOPIC and len(body["clients"]) == 2
        assert sorted(json.dumps(c, sort_keys=True) for c in body["clients"].values()) == [
            json.dumps({"info": None, "user": "alice"}, sort_keys=True),
            json.dumps({"info": {"name": "Alice"}, "user": "alice"}, sort_keys=True)]
        ws_view = await command(a1, action="presence", topic=TOPIC, id=10)
        assert ws_view["clients"] == body["clients"]
        status, body = await ahttp(f"{srv.http}/api/presence?topic={TOPIC}&stats=1")
        assert (status, body) == (200, {"topic": TOPIC, "connections": 2, "users": 1})
        status, body = await ahttp(f"{srv.http}/api/presence?topic=news")
        assert status == 404 and "presence_off" in json.dumps(body)
    finally:
        await a1.close()
        await a2.close()
