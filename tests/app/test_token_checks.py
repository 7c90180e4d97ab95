"""A presented token is always checked: an open hub accepts no token as anonymous, but
a bad one is a 401 with its reason (header or subprotocol offer, upgrade or HTTP), and
a good one limits the connection by its ``topics`` claim. Sync handlers are refused at
load time; an open hub says so at startup."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

import pubsocket.client
from pubsocket import App, pubsub
from pubsocket.auth import Authenticator
from pubsocket.errors import ConfigError
from tests.app.test_http import ahttp
from tests.conftest import API_KEY, SECRET, make_settings

AUTH = Authenticator(API_KEY, SECRET)
ROOMS_ONLY = {"topics": {"publish": ["room:*"], "subscribe": ["room:*"]}}


def open_hub() -> App:
    app = App(make_settings())
    pubsub("/ws/chat", app=app)

    @app.get("/open")
    async def open_page(request: Any, response: Any) -> Any:
        return response({"sub": request.principal.sub})

    return app


def expired() -> str:
    return AUTH.issue("alice", ttl=0, claims={"exp": int(time.time()) - 60})


def foreign() -> str:
    return Authenticator(None, "another-secret-0123456789abcdef0123456789ab").issue("x")


async def refusal(url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url, **kwargs):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body or b"{}")


@pytest.mark.parametrize(("token", "reason"), [
    (expired, "token expired"), (foreign, "bad signature"),
    (lambda: "not-a-token", "not the API key and not a valid JWT"),
])
async def test_open_hub_refuses_a_bad_token_with_its_reason(
        serve_any: Any, token: Any, reason: str) -> None:
    srv = await serve_any(open_hub())
    url = f"{srv.ws}/ws/chat"
    bad = token()
    status, body = await refusal(url, additional_headers={"Authorization": f"Bearer {bad}"})
    assert (status, body) == (401, {"error": "unauthorized", "message": reason})
    status, body = await refusal(url, subprotocols=["pubsocket.v1", "bearer", bad])
    assert (status, body["message"]) == (401, reason)
    status, _, raw = await ahttp("GET", f"{srv.http}/open",
                                 headers={"Authorization": f"Bearer {bad}"})
    assert (status, json.loads(raw)["message"]) == (401, reason)
    # Other schemes belong to the app, and no token at all is anonymous.
    status, _, raw = await ahttp("GET", f"{srv.http}/open",
                                 headers={"Authorization": "Basic eDp5"})
    assert (status, json.loads(raw)) == (200, {"sub": None})
    async with websockets.connect(url, subprotocols=["pubsocket.v1"]) as ws:
        assert ws.subprotocol == "pubsocket.v1"  # no token: anonymous, as before


async def test_a_good_token_limits_an_open_hub_by_its_topics_claim(serve_any: Any) -> None:
    srv = await serve_any(open_hub())
    token = AUTH.issue("alice", claims=ROOMS_ONLY)
    async with websockets.connect(f"{srv.ws}/ws/chat",
                                  subprotocols=["pubsocket.v1", "bearer", token]) as ws:
        for n, topic in enumerate(["secret:payroll", "room:lobby"]):
            await ws.send(json.dumps({"action": "publish", "topic": topic, "id": str(n),
                                      "data": 1}))
        replies = [json.loads(await ws.recv()) for _ in range(2)]
    by_id = {r["id"]: r for r in replies}
    assert by_id["0"]["type"] == "error" and by_id["0"]["code"] == "forbidden"
    assert by_id["1"]["type"] == "ack"


async def test_the_client_and_cli_say_why_the_token_was_refused(serve: Any) -> None:
    srv = await serve(open_hub())
    with pytest.raises(pubsocket.client.AuthError, match=r"\(401\): token expired"):
        async with pubsocket.client.connect(f"{srv.ws}/ws/chat", token=expired()):
            pass


def test_a_sync_handler_is_refused_at_load_time_by_name() -> None:
    app = App(make_settings())

    def hello(request: Any, response: Any) -> Any:
        return response("hi")

    with pytest.raises(ConfigError, match=r"hello for GET /hello must be `async def`"):
        app.get("/hello")(hello)
    assert app.router.match("GET", "/hello") is None


async def test_an_open_hub_says_so_at_startup(serve: Any,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pubsocket.app"):
        await serve(open_hub())
        secured = App(make_settings())
        pubsub("/ws/safe", app=secured, secured=True)
        await serve(secured)
    opened = [r.getMessage() for r in caplog.records if "is open" in r.getMessage()]
    assert opened == ["the hub at /ws/chat is open: anyone may connect without a token "
                      "(pubsub(..., secured=True) requires one)"]
