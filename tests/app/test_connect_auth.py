"""Connection hooks (web/connect_auth.py) on both transports: a session cookie admits a
socket without a token, only from the app's own origin; tokens keep working beside it.

The "session store" is a dict: the hook reads the ``sid`` cookie like a Django or
Starlette session would. Every case opens a real socket against a real server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect

from pubsocket import App, HTTPError, Principal, pubsub
from pubsocket.web.connect_auth import to_principal
from tests.conftest import API_KEY, make_settings

SESSIONS = {"s-alice": "alice", "s-bob": "bob", "s-mallory": "mallory"}


def cookie_app(hook_kind: str = "async", **settings: Any) -> tuple[App, list[str]]:
    """An app whose /ws/chat admits sessions from `SESSIONS`; returns it and the list of
    session ids the hook was asked about."""
    app = App(make_settings(**settings))
    asked: list[str] = []

    def lookup(request: Any) -> Mapping[str, Any] | None:
        sid = request.cookies.get("sid", "")
        asked.append(sid)
        user = SESSIONS.get(sid)
        if user == "mallory":
            raise HTTPError(403, "forbidden", "banned")
        if user is None:
            return None
        # alice may use every room, bob only his own: the claims limit topics.
        topics = ["room:*"] if user == "alice" else ["room:bob"]
        return {"sub": user, "info": {"name": user.title()},
                "topics": {"subscribe": topics, "publish": topics}}

    async def async_hook(request: Any) -> Mapping[str, Any] | None:
        await asyncio.sleep(0)
        return lookup(request)

    pubsub("/ws/chat", app=app, authenticate=async_hook if hook_kind == "async" else lookup)
    return app, asked


def upgrade(running: Any, sid: str | None = None, origin: str | None = "self",
            **kwargs: Any) -> Any:
    headers = dict(kwargs.pop("additional_headers", {}))
    if sid is not None:
        headers["Cookie"] = f"sid={sid}"
    if origin == "self":
        origin = running.http
    return connect(f"{running.ws}/ws/chat", additional_headers=headers, origin=origin,
                   subprotocols=["pubsocket.v1"], open_timeout=5, **kwargs)


async def refused(running: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(websockets.InvalidStatus) as info:
        async with upgrade(running, **kwargs):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def command(ws: Any, **body: Any) -> dict[str, Any]:
    await ws.send(json.dumps(body))
    while True:
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if reply.get("id") == body["id"]:
            return reply


@pytest.mark.parametrize("hook_kind", ["async", "sync"])
async def test_a_session_cookie_admits_a_socket_that_subscribes_and_receives(
        serve_any: Any, hook_kind: str) -> None:
    app, asked = cookie_app(hook_kind)
    running = await serve_any(app)
    async with upgrade(running, "s-alice") as alice, upgrade(running, "s-bob") as bob:
        assert (await command(alice, action="subscribe", topic="room:bob", id=1))["type"] == "ack"
        await command(bob, action="publish", topic="room:bob", data={"text": "hi"}, id=2)
        message = json.loads(await asyncio.wait_for(alice.recv(), 5))
        assert message["data"] == {"text": "hi"}
        # The sender is who the session says, with the hook's info.
        assert message["from"]["user"] == "bob"
        assert message["from"]["info"] == {"name": "Bob"}
        # The hook's topics claim limits bob like a token's would.
        denied = await command(bob, action="subscribe", topic="room:alice", id=3)
        assert (denied["type"], denied["code"]) == ("error", "forbidden")
    assert asked == ["s-alice", "s-bob"]


async def test_no_session_is_401_and_a_hook_refusal_keeps_its_status(serve_any: Any) -> None:
    running = await serve_any(cookie_app()[0])
    assert (await refused(running))[0] == 401
    assert (await refused(running, sid="s-nobody"))[0] == 401
    assert await refused(running, sid="s-mallory") == (
        403, {"error": "forbidden", "message": "banned"})


@pytest.mark.parametrize("origin", [
    "http://evil.example", "null", None, "http://127.0.0.1", "https://127.0.0.1.evil.example"])
async def test_a_foreign_or_missing_origin_is_refused_before_the_hook(
        serve_any: Any, origin: str | None) -> None:
    app, asked = cookie_app()
    running = await serve_any(app)
    assert await refused(running, sid="s-alice", origin=origin) == (
        403, {"error": "origin_not_allowed", "message": "origin not allowed"})
    assert asked == []  # the session was never looked at


async def test_the_origin_check_holds_even_when_origins_are_open_and_lists_admit(
        serve_any: Any) -> None:
    # No ALLOWED_ORIGINS (origins open for token-authenticated upgrades) still refuses
    # a foreign page's cookie upgrade; an origin on the list is admitted.
    open_app, _ = cookie_app()
    running = await serve_any(open_app)
    assert (await refused(running, sid="s-alice", origin="http://evil.example"))[0] == 403
    listed, _ = cookie_app(allowed_origins=("https://app.example",))
    running = await serve_any(listed)
    async with upgrade(running, "s-alice", origin="https://app.example") as ws:
        assert (await command(ws, action="subscribe", topic="room:x", id=1))["type"] == "ack"


async def test_a_token_still_authenticates_without_origin_and_skips_the_hook(
        serve_any: Any) -> None:
    app, asked = cookie_app()
    running = await serve_any(app)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with upgrade(running, origin=None, additional_headers=auth) as ws:
        assert (await command(ws, action="subscribe", topic="any", id=1))["type"] == "ack"
    bad = {"Authorization": "Bearer nope"}
    assert (await refused(running, sid="s-alice", additional_headers=bad))[0] == 401
    assert asked == []  # a presented token is the credential, never a fallback


def test_hook_results_map_to_principals() -> None:
    assert to_principal(None) is None and to_principal(False) is None
    assert to_principal("") is None
    user = to_principal("u1")
    assert user is not None and (user.sub, user.authenticated) == ("u1", True)
    given = Principal(sub="x", authenticated=True)
    assert to_principal(given) is given
    with pytest.raises(TypeError):
        to_principal(42)


def test_a_hook_is_refused_on_the_centrifuge_endpoint() -> None:
    with pytest.raises(ValueError, match="connect command"):
        pubsub("/c", app=App(make_settings()), protocol="centrifuge",
               authenticate=lambda request: "u")
