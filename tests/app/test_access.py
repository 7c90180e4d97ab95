"""Per-topic permissions, live tokens and server-side control on a real server.

The ``topics`` claim and the app's ``authorize`` hook (sync, async, raising) over the v1
and plain WebSocket modes and the HTTP API; ``refresh`` (same user only, narrowed claims
drop subscriptions); the expiry notice, grace and 4001 close; ``disconnect_user`` and
``unsubscribe_user``. Every refusal is followed by a check that the connection and other
topics still work, and "nothing arrives" is proven with a sentinel publication.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from pubsocket import App, pubsub
from pubsocket.auth import Action, Authenticator, Principal
from pubsocket.errors import Forbidden
from tests.app.test_http import ahttp
from tests.conftest import API_KEY, SECRET, make_settings

AUTH = Authenticator(API_KEY, SECRET)
V1 = ["pubsocket.v1"]
LEAK = "HOOK-INTERNALS-7f3a"  # a raising hook's text: must never reach a client

CLAIM = {"subscribe": ["chat:*", "user:{sub}"], "publish": ["chat:*"],
         "presence": ["chat:*"], "history": ["chat:*"]}


def token(sub: str = "alice", ttl: float | None = 3600, **claims: Any) -> str:
    return AUTH.issue(sub, ttl, claims)


def exp_token(sub: str, seconds: float, **claims: Any) -> str:
    """A token with at least `seconds` (less than `seconds + 1`) left: exp is a whole
    second, as JWT libraries compare it."""
    return AUTH.issue(sub, None, {"exp": math.ceil(time.time() + seconds), **claims})


def app_with(authorize: Any = None, **settings: Any) -> App:
    app = App(make_settings(**settings))
    pubsub("/ws/chat", app=app, secured=True, authorize=authorize, presence=["*"])
    return app


async def client(srv: Any, tok: str, v1: bool = True, path: str = "/ws/chat"
                 ) -> ClientConnection:
    return await connect(f"{srv.ws}{path}", subprotocols=V1 if v1 else None,  # type: ignore[arg-type]
                         additional_headers={"Authorization": f"Bearer {tok}"})


async def recv(ws: ClientConnection, timeout: float = 3.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def send(ws: ClientConnection, action: str, topic: str | None = None,
               **extra: Any) -> None:
    body: dict[str, Any] = {"action": action, **extra}
    if topic is not None:
        body["topic"] = topic
    await ws.send(json.dumps(body))


async def reply_to(ws: ClientConnection, cmd_id: Any, timeout: float = 3.0) -> Any:
    """The next frame that answers `cmd_id` (deliveries and notices before it skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await recv(ws, timeout)
            if frame.get("id") == cmd_id and frame.get("type") in (
                    "ack", "error", "presence", "presence_stats", "history"):
                return frame


async def subscribe(ws: ClientConnection, topic: str, cmd_id: Any = "s") -> Any:
    await send(ws, "subscribe", topic, id=cmd_id)
    return await reply_to(ws, cmd_id)


async def frames_until_sentinel(ws: ClientConnection, sentinel: Any,
                                timeout: float = 3.0) -> list[Any]:
    """Every frame before the v1 delivery whose data is `sentinel`."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await recv(ws, timeout)
            if isinstance(frame, dict) and frame.get("type") == "message" \
                    and frame.get("data") == sentinel:
                return seen
            seen.append(frame)


def is_forbidden(frame: Any, cmd_id: Any) -> bool:
    return frame == {"type": "error", "code": "forbidden",
                     "message": "not allowed on this topic", "id": cmd_id}


# -- the topics claim ----------------------------------------------------------------
async def test_topics_claim_limits_every_action_with_sub_substitution(serve: Any) -> None:
    srv = await serve(app_with())
    ws = await client(srv, token("alice", topics=CLAIM))
    admin = await client(srv, API_KEY)  # no claim, no hook: may do anything
    try:
        assert (await subscribe(ws, "chat:lobby", 1))["type"] == "ack"
        assert (await subscribe(ws, "user:alice", 2))["type"] == "ack"
        assert is_forbidden(await subscribe(ws, "user:bob", 3), 3)
        assert is_forbidden(await subscribe(ws, "news", 4), 4)
        # publish: chat:* only ("user:{sub}" is a subscribe pattern here)
        await send(ws, "publish", "user:alice", data=1, id=5)
        assert is_forbidden(await reply_to(ws, 5), 5)
        await send(ws, "publish", "chat:lobby", data="hi", id=6)
        assert (await reply_to(ws, 6))["type"] == "ack"
        await send(ws, "history", "user:alice", id=7)
        assert is_forbidden(await reply_to(ws, 7), 7)
        await send(ws, "history", "chat:lobby", id=8)
        assert (await reply_to(ws, 8))["type"] == "history"
        await send(ws, "presence", "user:alice", id=9)
        assert is_forbidden(await reply_to(ws, 9), 9)
        await send(ws, "presence", "chat:lobby", id=10)
        assert (await reply_to(ws, 10))["type"] == "presence"
        # a refused subscription delivers nothing; the allowed ones still do
        await send(admin, "publish", "user:bob", data="private", id="p1")
        await send(admin, "publish", "news", data="news", id="p2")
        await send(admin, "publish", "user:alice", data="mine", id="p3")
        await send(admin, "publish", "chat:lobby", data="end", id="p4")
        seen = await frames_until_sentinel(ws, "end")
        data = [f.get("data") for f in seen if f.get("type") == "message"]
        assert "private" not in data and "news" not in data
        assert "mine" in data
    finally:
        await ws.close()
        await admin.close()


async def test_sub_with_glob_characters_matches_only_itself(serve: Any) -> None:
    srv = await serve(app_with())
    ws = await client(srv, token("*", topics={"subscribe": ["user:{sub}"]}))
    other = await client(srv, token("a?c", topics={"subscribe": ["user:{sub}"]}))
    try:
        assert is_forbidden(await subscribe(ws, "user:bob", 1), 1)
        assert is_forbidden(await subscribe(other, "user:abc", 2), 2)
    finally:
        await ws.close()
        await other.close()


async def test_malformed_claim_denies_everything(serve: Any, caplog: Any) -> None:
    srv = await serve(app_with())
    caplog.set_level(logging.WARNING, "pubsocket.auth")
    ws = await client(srv, token("alice", topics={"subcribe": ["*"]}))
    try:
        assert is_forbidden(await subscribe(ws, "chat:lobby", 1), 1)
        await send(ws, "publish", "chat:lobby", data=1, id=2)
        assert is_forbidden(await reply_to(ws, 2), 2)
    finally:
        await ws.close()
    assert "malformed 'topics' claim" in caplog.text


async def test_plain_mode_gets_the_forbidden_error_object(serve: Any) -> None:
    srv = await serve(app_with())
    ws = await client(srv, token("alice", topics=CLAIM), v1=False)
    admin = await client(srv, API_KEY, v1=False)
    try:
        await send(ws, "subscribe", "news", id=1)
        assert is_forbidden(await recv(ws), 1)
        await send(ws, "publish", "news", data=1)
        reply = await recv(ws)
        assert reply["type"] == "error" and reply["code"] == "forbidden"
        assert "id" not in reply
        # still usable: an allowed subscription delivers plain json(data)
        await send(ws, "subscribe", "chat:lobby")
        await asyncio.sleep(0.1)
        await send(admin, "publish", "news", data="hidden")
        await send(admin, "publish", "chat:lobby", data={"n": 1})
        assert await recv(ws) == {"n": 1}
    finally:
        await ws.close()
        await admin.close()


async def test_forbidden_counts_toward_the_protocol_error_limit(serve: Any) -> None:
    srv = await serve(app_with(max_protocol_errors=3))
    ws = await client(srv, token("alice", topics=CLAIM))
    try:
        for i in range(2):
            assert is_forbidden(await subscribe(ws, "news", i), i)
        await send(ws, "subscribe", "news", id=2)
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(3):
                while True:
                    await ws.recv()
        assert ws.close_code == 1008
    finally:
        await ws.close()


# -- the app hook ------------------------------------------------------------------------
async def test_sync_hook_sees_principal_action_topic_and_is_skipped_when_claim_denies(
        serve: Any) -> None:
    calls: list[tuple[str | None, Action, str]] = []

    def hook(principal: Principal, action: Action, topic: str) -> bool:
        calls.append((principal.sub, action, topic))
        return not topic.startswith("chat:secret")

    srv = await serve(app_with(hook))
    ws = await client(srv, token("alice", topics=CLAIM))
    try:
        assert (await subscribe(ws, "chat:lobby", 1))["type"] == "ack"
        assert is_forbidden(await subscribe(ws, "chat:secret", 2), 2)
        assert is_forbidden(await subscribe(ws, "news", 3), 3)  # claim denies first
        await send(ws, "publish", "chat:secret", data=1, id=4)
        assert is_forbidden(await reply_to(ws, 4), 4)
    finally:
        await ws.close()
    assert ("alice", Action.SUBSCRIBE, "chat:lobby") in calls
    assert ("alice", Action.SUBSCRIBE, "chat:secret") in calls
    assert ("alice", Action.PUBLISH, "chat:secret") in calls
    assert all(topic != "news" for _, _, topic in calls)
    assert all(isinstance(action, Action) for _, action, _ in calls)


async def test_async_hook_refuses_every_action(serve: Any) -> None:
    async def hook(principal: Principal, action: Action, topic: str) -> bool:
        await asyncio.sleep(0.01)
        return topic != "locked"

    srv = await serve(app_with(hook))
    ws = await client(srv, token("alice"))
    other = await client(srv, token("bob"))
    try:
        assert is_forbidden(await subscribe(ws, "locked", 1), 1)
        await send(ws, "publish", "locked", data=1, id=2)
        assert is_forbidden(await reply_to(ws, 2), 2)
        await send(ws, "history", "locked", id=3)
        assert is_forbidden(await reply_to(ws, 3), 3)
        await send(ws, "presence", "locked", id=4)
        assert is_forbidden(await reply_to(ws, 4), 4)
        await send(ws, "presence_stats", "locked", id=5)
        assert is_forbidden(await reply_to(ws, 5), 5)
        # allowed topics work after the refusals, in order
        assert (await subscribe(ws, "open", 6))["type"] == "ack"
        await send(other, "publish", "open", data="x", id=7)
        assert (await reply_to(other, 7))["type"] == "ack"
        msg = await recv(ws)
        while msg.get("type") != "message":
            msg = await recv(ws)
        assert msg["data"] == "x"
    finally:
        await ws.close()
        await other.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_raising_hook_refuses_without_leaking_and_is_logged(
        serve: Any, caplog: Any, kind: str) -> None:
    def sync_hook(principal: Principal, action: Action, topic: str) -> bool:
        if topic == "boom":
            raise RuntimeError(LEAK)
        return True

    async def async_hook(principal: Principal, action: Action, topic: str) -> bool:
        return sync_hook(principal, action, topic)

    caplog.set_level(logging.ERROR, "pubsocket.auth")
    srv = await serve(app_with(sync_hook if kind == "sync" else async_hook))
    ws = await client(srv, token("alice"))
    raw: list[str] = []
    try:
        await send(ws, "subscribe", "boom", id=1)
        await send(ws, "publish", "boom", data=1, id=2)
        await send(ws, "presence", "boom", id=3)
        await send(ws, "subscribe", "fine", id=4)
        async with asyncio.timeout(3):
            while True:
                text = await ws.recv()
                raw.append(str(text))
                if json.loads(text).get("id") == 4:
                    break
        status, _, body = await ahttp("POST", f"{srv.http}/api/publish",
                                      json.dumps({"topic": "boom", "data": 1}).encode(),
                                      {"Authorization": f"Bearer {token('alice')}",
                                       "Content-Type": "application/json"})
    finally:
        await ws.close()
    frames = [json.loads(t) for t in raw]
    assert [f["id"] for f in frames if f.get("code") == "forbidden"] == [1, 2, 3]
    assert frames[-1]["type"] == "ack"
    assert all(LEAK not in t for t in raw)
    assert status == 403 and LEAK.encode() not in body
    assert json.loads(body)["error"] == "forbidden"
    errors = [r for r in caplog.records if r.name == "pubsocket.auth" and LEAK in (
        r.exc_text or "" if r.exc_info is None else str(r.exc_info[1]))]
    assert errors, "the hook's exception must be logged with its traceback"
    assert all(r.exc_info is not None for r in errors)


async def test_hook_returning_non_bool_denies(serve: Any, caplog: Any) -> None:
    def hook(principal: Principal, action: Action, topic: str) -> Any:
        return 1 if topic == "truthy" else True

    caplog.set_level(logging.ERROR, "pubsocket.auth")
    srv = await serve(app_with(hook))
    ws = await client(srv, token("alice"))
    try:
        assert is_forbidden(await subscribe(ws, "truthy", 1), 1)
        assert (await subscribe(ws, "other", 2))["type"] == "ack"
    finally:
        await ws.close()
    assert "not bool" in caplog.text


# -- HTTP and hub.publish ------------------------------------------------------------
async def test_http_api_answers_403_when_refused(serve: Any) -> None:
    def hook(principal: Principal, action: Action, topic: str) -> bool:
        return topic != "chat:vault"

    srv = await serve(app_with(hook))
    limited = {"Authorization": f"Bearer {token('alice', topics=CLAIM)}",
               "Content-Type": "application/json"}

    async def post(topic: str, headers: dict[str, str]) -> tuple[int, Any]:
        status, _, body = await ahttp("POST", f"{srv.http}/api/publish",
                                      json.dumps({"topic": topic, "data": 1}).encode(),
                                      headers)
        return status, json.loads(body)

    async def get(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        status, _, body = await ahttp("GET", f"{srv.http}{path}", None, headers)
        return status, json.loads(body)

    status, body = await post("news", limited)  # the claim denies
    assert status == 403 and body["error"] == "forbidden"
    status, body = await post("chat:vault", limited)  # the hook denies
    assert status == 403 and body["error"] == "forbidden"
    status, body = await post("chat:vault", {"Authorization": f"Bearer {API_KEY}",
                                              "Content-Type": "application/json"})
    assert status == 403 and body["error"] == "forbidden"  # the hook limits the API key
    status, body = await post("chat:lobby", limited)
    assert status == 200 and body["ok"] is True

    for path in ("/api/history?topic=news", "/api/history?topic=chat:vault",
                 "/api/presence?topic=news", "/api/presence?topic=chat:vault",
                 "/api/presence?topic=chat:vault&stats=1"):
        status, body = await get(path, limited)
        assert (status, body["error"]) == (403, "forbidden"), path
    status, body = await get("/api/history?topic=chat:lobby", limited)
    assert status == 200 and [p["data"] for p in body["publications"]] == [1]
    status, body = await get("/api/presence?topic=chat:lobby", limited)
    assert status == 200 and body["clients"] == {}


async def test_hub_publish_with_principal_raises_forbidden(serve: Any) -> None:
    async def hook(principal: Principal, action: Action, topic: str) -> bool:
        return topic != "chat:vault"

    app = app_with(hook)
    srv = await serve(app)
    watcher = await client(srv, API_KEY)
    try:
        assert (await subscribe(watcher, "chat:lobby"))["type"] == "ack"
        limited = AUTH.authenticate([f"Bearer {token('alice', topics=CLAIM)}"])
        with pytest.raises(Forbidden):
            await app.hub.publish("news", {"x": 1}, principal=limited)
        with pytest.raises(Forbidden):
            await app.hub.publish("chat:vault", {"x": 2}, principal=limited)
        await app.hub.publish("chat:lobby", {"x": 3}, principal=limited)
        await app.hub.publish("chat:vault", {"x": 4})  # the server itself: no check
        await app.hub.publish("chat:lobby", "end")
        seen = await frames_until_sentinel(watcher, "end")
        assert [f["data"] for f in seen if f.get("type") == "message"] == [{"x": 3}]
    finally:
        await watcher.close()


# -- refresh ---------------------------------------------------------------------------
async def test_refresh_acks_with_the_new_expiry(serve: Any) -> None:
    srv = await serve(app_with())
    ws = await client(srv, token("alice", ttl=600))
    try:
        new = token("alice", ttl=7200)
        await send(ws, "refresh", token=new, id=1)
        reply = await reply_to(ws, 1)
        exp = AUTH.principal_of(new).claims["exp"]
        assert reply == {"type": "ack", "id": 1, "expires_at": exp}
    finally:
        await ws.close()


@pytest.mark.parametrize("bad", ["other_user", "expired", "garbage", "wrong_secret",
                                 "api_key"])
async def test_refresh_with_a_bad_token_is_invalid_token_and_changes_nothing(
        serve: Any, bad: str) -> None:
    srv = await serve(app_with())
    ws = await client(srv, token("alice", topics=CLAIM))
    admin = await client(srv, API_KEY)
    new = {
        "other_user": token("bob"),
        "expired": AUTH.issue("alice", None, {"exp": int(time.time()) - 10}),
        "garbage": "not.a.jwt",
        "wrong_secret": Authenticator(None, "x" * 40).issue("alice"),
        "api_key": API_KEY,
    }[bad]
    try:
        assert (await subscribe(ws, "chat:lobby", 1))["type"] == "ack"
        await send(ws, "refresh", token=new, id=2)
        reply = await reply_to(ws, 2)
        assert reply["type"] == "error" and reply["code"] == "invalid_token"
        assert reply["id"] == 2
        assert new not in json.dumps(reply)
        # the old claim still applies and the subscription is intact
        assert is_forbidden(await subscribe(ws, "news", 3), 3)
        await send(admin, "publish", "chat:lobby", data="still", id="p")
        seen = await frames_until_sentinel(ws, "still")
        assert all(f.get("type") != "unsubscribed" for f in seen)
    finally:
        await ws.close()
        await admin.close()


@pytest.mark.parametrize("hook_kind", ["none", "async"])
async def test_refresh_with_narrowed_claim_drops_subscriptions(serve: Any,
                                                              hook_kind: str) -> None:
    async def hook(principal: Principal, action: Action, topic: str) -> bool:
        await asyncio.sleep(0)
        return True

    srv = await serve(app_with(hook if hook_kind == "async" else None))
    wide = {"subscribe": ["chat:*", "news"], "publish": ["chat:*"]}
    narrow = {"subscribe": ["chat:lobby"], "publish": ["chat:*"]}
    ws = await client(srv, token("alice", topics=wide))
    admin = await client(srv, API_KEY)
    try:
        for i, topic in enumerate(["chat:lobby", "chat:ops", "news"]):
            assert (await subscribe(ws, topic, i))["type"] == "ack"
        await send(ws, "refresh", token=token("alice", topics=narrow), id="r")
        got = []
        async with asyncio.timeout(3):
            while True:
                frame = await recv(ws)
                got.append(frame)
                if frame.get("id") == "r":
                    break
        assert got[-1]["type"] == "ack"
        dropped = sorted(f["topic"] for f in got if f.get("type") == "unsubscribed")
        assert dropped == ["chat:ops", "news"]
        assert all(f["reason"] == "forbidden" for f in got if f.get("type") == "unsubscribed")
        # deliveries to the dropped topics stop; the kept one goes on
        for topic in ("chat:ops", "news"):
            await send(admin, "publish", topic, data=f"to {topic}")
        await send(admin, "publish", "chat:lobby", data="kept")
        seen = await frames_until_sentinel(ws, "kept")
        assert [f for f in seen if f.get("type") == "message"] == []
        # and the new claim governs new commands
        assert is_forbidden(await subscribe(ws, "chat:ops", "again"), "again")
    finally:
        await ws.close()
        await admin.close()


async def test_refresh_on_plain_mode_is_not_an_action(serve: Any) -> None:
    srv = await serve(app_with())
    ws = await client(srv, token("alice"), v1=False)
    try:
        await send(ws, "refresh", token=token("alice"), id=1)
        reply = await recv(ws)
        assert reply["type"] == "error" and reply["code"] == "bad_action"
    finally:
        await ws.close()


# -- token lifetime ------------------------------------------------------------------------
async def closed_code(ws: ClientConnection, timeout: float) -> tuple[int | None, list[Any]]:
    frames = []
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                frames.append(json.loads(await ws.recv()))
    return ws.close_code, frames


async def test_v1_client_hears_expiring_then_is_closed_4001_after_grace(serve: Any) -> None:
    srv = await serve(app_with(token_grace=0.3))
    tok = exp_token("alice", 1.0)
    exp = AUTH.principal_of(tok).claims["exp"]
    ws = await client(srv, tok)
    notice = await recv(ws, 2)
    assert notice == {"type": "expiring", "expires_at": exp}
    assert time.time() < exp  # announced at once: less than 30 s were left
    code, rest = await closed_code(ws, 4)
    closed_at = time.time()
    assert code == 4001
    assert rest == []
    assert closed_at >= exp + 0.3 - 0.05  # not before the grace ended
    assert closed_at < exp + 0.3 + 1.5


async def test_refresh_before_the_close_keeps_the_connection(serve: Any) -> None:
    srv = await serve(app_with(token_grace=0.3))
    tok = exp_token("alice", 1.0)
    exp = AUTH.principal_of(tok).claims["exp"]
    ws = await client(srv, tok)
    try:
        assert (await recv(ws, 2))["type"] == "expiring"
        new = token("alice", ttl=3600)
        await send(ws, "refresh", token=new, id=1)
        ack = await reply_to(ws, 1)
        assert ack["type"] == "ack" and ack["expires_at"] > exp
        await asyncio.sleep(max(0.0, exp + 0.3 - time.time()) + 0.7)
        assert (await subscribe(ws, "still:open", 2))["type"] == "ack"
        assert ws.close_code is None
    finally:
        await ws.close()


async def test_refresh_during_grace_keeps_the_connection(serve: Any) -> None:
    srv = await serve(app_with(token_grace=1.0))
    tok = exp_token("alice", 0.5)
    exp = AUTH.principal_of(tok).claims["exp"]
    ws = await client(srv, tok)
    try:
        assert (await recv(ws, 2))["type"] == "expiring"
        await asyncio.sleep(max(0.0, exp - time.time()) + 0.2)  # past exp, within grace
        await send(ws, "refresh", token=token("alice", ttl=3600), id=1)
        assert (await reply_to(ws, 1))["type"] == "ack"
        await asyncio.sleep(max(0.0, exp + 1.0 - time.time()) + 0.5)
        assert (await subscribe(ws, "alive", 2))["type"] == "ack"
    finally:
        await ws.close()


async def test_refreshed_token_expiring_again_gets_a_new_notice_and_close(serve: Any) -> None:
    srv = await serve(app_with(token_grace=0.2))
    ws = await client(srv, token("alice", ttl=3600))
    new = exp_token("alice", 0.8)
    exp = AUTH.principal_of(new).claims["exp"]
    await send(ws, "refresh", token=new, id=1)
    assert (await reply_to(ws, 1))["expires_at"] == exp
    assert await recv(ws, 2) == {"type": "expiring", "expires_at": exp}
    code, _ = await closed_code(ws, 4)
    assert code == 4001
    assert time.time() >= exp + 0.2 - 0.05


async def test_plain_client_is_closed_4001_at_exp_without_grace(serve: Any) -> None:
    srv = await serve(app_with(token_grace=3.0))
    tok = exp_token("alice", 0.8)
    exp = AUTH.principal_of(tok).claims["exp"]
    ws = await client(srv, tok, v1=False)
    code, frames = await closed_code(ws, 3)
    assert code == 4001
    assert frames == []  # no expiring notice in plain mode
    assert exp - 0.05 <= time.time() < exp + 1.5  # at exp, not after the 3 s grace


# -- server-side control ---------------------------------------------------------------
async def test_disconnect_user_closes_every_connection_of_that_user(serve: Any) -> None:
    app = app_with()
    srv = await serve(app)
    alice = [await client(srv, token("alice")), await client(srv, token("alice"), v1=False)]
    bob = await client(srv, token("bob"))
    try:
        for ws in alice:
            await send(ws, "subscribe", "room")
        assert (await subscribe(bob, "room"))["type"] == "ack"
        await asyncio.sleep(0.1)
        await app.hub.disconnect_user("alice")
        for ws in alice:
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(3):
                    while True:
                        await ws.recv()
            assert ws.close_code == 4003
        assert bob.close_code is None
        assert (await subscribe(bob, "other", 2))["type"] == "ack"
    finally:
        for ws in [*alice, bob]:
            await ws.close()


async def test_unsubscribe_user_drops_that_subscription_with_a_notice(serve: Any) -> None:
    app = app_with()
    srv = await serve(app)
    alice = await client(srv, token("alice"))
    alice_plain = await client(srv, token("alice"), v1=False)
    bob = await client(srv, token("bob"))
    try:
        for topic in ("room", "lobby"):
            assert (await subscribe(alice, topic, topic))["type"] == "ack"
            assert (await subscribe(bob, topic, topic))["type"] == "ack"
            await send(alice_plain, "subscribe", topic)
        await asyncio.sleep(0.1)
        await app.hub.unsubscribe_user("alice", "room")
        notice = await recv(alice)
        while notice.get("type") not in ("unsubscribed", "message"):
            notice = await recv(alice)
        assert notice == {"type": "unsubscribed", "topic": "room",
                          "reason": "unsubscribed by the server"}
        await app.hub.publish("room", "after")
        await app.hub.publish("lobby", "end")
        seen = await frames_until_sentinel(alice, "end")
        assert [f for f in seen if f.get("type") == "message"] == []
        assert await recv(alice_plain) == "end"  # plain: no notice, "after" not delivered
        bob_seen = await frames_until_sentinel(bob, "end")
        assert [f["data"] for f in bob_seen if f.get("type") == "message"] == ["after"]
    finally:
        for ws in (alice, alice_plain, bob):
            await ws.close()


async def test_browser_style_token_works_for_the_v1_endpoint(serve: Any) -> None:
    srv = await serve(app_with())
    tok = token("alice", topics=CLAIM, info={"name": "Alice"})
    async with connect(f"{srv.ws}/ws/chat",
                       subprotocols=["pubsocket.v1", "bearer", tok]) as ws:  # type: ignore[list-item]
        assert ws.protocol.subprotocol == "pubsocket.v1"
        assert tok not in str(ws.response.headers)
        assert (await subscribe(ws, "chat:lobby", 1))["type"] == "ack"
        assert is_forbidden(await subscribe(ws, "news", 2), 2)  # its claim applies
        await send(ws, "presence", "chat:lobby", id=3)
        reply = await reply_to(ws, 3)
        assert list(reply["clients"].values()) == [{"user": "alice",
                                                    "info": {"name": "Alice"}}]
        await send(ws, "refresh", token=token("alice", topics=CLAIM), id=4)
        assert (await reply_to(ws, 4))["type"] == "ack"

