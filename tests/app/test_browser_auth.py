"""Browser-usable auth: a token in the subprotocol offer, `request.principal`, no leaks.

Real servers on port 0 and real `websockets` clients offering what a browser would:
``new WebSocket(url, ["pubsocket.v1", "bearer", token])``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import uvicorn
import websockets
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from pubsocket import App, ASGIApp, Websocket, pubsub, secured
from pubsocket.auth import Authenticator
from tests.conftest import API_KEY, SECRET, free_port, make_settings

TOKEN = Authenticator(None, SECRET).issue("alice", claims={"info": {"name": "Alice"}})
OTHER = Authenticator(None, SECRET).issue("bob")
BAD = Authenticator(None, "not-the-secret-0123456789abcdef0123456789").issue("mallory")


def offer(*entries: str) -> list[Subprotocol]:
    return [Subprotocol(e) for e in entries]


def who_app() -> App:
    app = App(make_settings())

    async def describe(request: Any, supported: list[str]) -> None:
        ws = await Websocket(request).connection(subprotocols=supported)
        p = request.principal
        await ws.send(json.dumps({
            "sub": p.sub, "client_id": p.client_id, "authenticated": p.authenticated,
            "is_api_key": p.is_api_key, "info": p.info, "subprotocol": ws.subprotocol,
            "claims_sub": (request.claims or {}).get("sub"),
        }))

    @app.get("/ws/who")
    @secured()
    async def who(request: Any, response: Any) -> None:
        await describe(request, ["pubsocket.v1"])

    @app.get("/ws/greedy")  # a handler that (wrongly) lists "bearer" as a subprotocol
    @secured()
    async def greedy(request: Any, response: Any) -> None:
        await describe(request, ["bearer", TOKEN, "pubsocket.v1"])

    @app.get("/ws/open")
    async def open_route(request: Any, response: Any) -> None:
        await describe(request, ["bearer", "pubsocket.v1"])

    return app


async def who(url: str, **kwargs: Any) -> tuple[dict[str, Any], str | None]:
    async with connect(url, **kwargs) as ws:
        return json.loads(await ws.recv()), ws.protocol.subprotocol


async def refused(url: str, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(url, **kwargs):
            pass
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = json.loads(response.body)
    assert body["error"] == "unauthorized"
    return body


async def test_token_in_subprotocol_offer_is_accepted_and_not_echoed(serve: Any) -> None:
    srv = await serve(who_app())
    seen, chosen = await who(f"{srv.ws}/ws/who", subprotocols=offer("pubsocket.v1", "bearer",
                                                                    TOKEN))
    assert chosen == "pubsocket.v1" and seen["subprotocol"] == "pubsocket.v1"
    assert seen["sub"] == "alice" and seen["claims_sub"] == "alice"
    assert seen["authenticated"] is True and seen["is_api_key"] is False
    assert seen["info"] == {"name": "Alice"}
    assert len(seen["client_id"]) >= 16


async def test_bearer_alone_selects_no_subprotocol(serve: Any) -> None:
    srv = await serve(who_app())
    seen, chosen = await who(f"{srv.ws}/ws/who", subprotocols=offer("bearer", TOKEN))
    assert chosen is None and seen["subprotocol"] is None and seen["sub"] == "alice"


async def test_bearer_and_token_are_never_selected_even_if_listed(serve: Any) -> None:
    srv = await serve(who_app())
    seen, chosen = await who(f"{srv.ws}/ws/greedy", subprotocols=offer("bearer", TOKEN))
    assert chosen is None and seen["subprotocol"] is None
    seen, chosen = await who(f"{srv.ws}/ws/greedy",
                             subprotocols=offer("bearer", TOKEN, "pubsocket.v1"))
    assert chosen == "pubsocket.v1"


async def test_api_key_in_subprotocol_is_the_api_key_principal(serve: Any) -> None:
    srv = await serve(who_app())
    seen, _ = await who(f"{srv.ws}/ws/who", subprotocols=offer("pubsocket.v1", "bearer",
                                                               API_KEY))
    assert seen["sub"] == "api_key" and seen["is_api_key"] is True


async def test_bad_or_malformed_offers_are_401_json_before_the_upgrade(serve: Any) -> None:
    srv = await serve(who_app())
    url = f"{srv.ws}/ws/who"
    body = await refused(url, subprotocols=offer("pubsocket.v1", "bearer", BAD))
    assert BAD not in json.dumps(body)
    await refused(url, subprotocols=offer("pubsocket.v1", "bearer"))  # no token after it
    await refused(url, subprotocols=offer("bearer", TOKEN, "bearer", OTHER))  # two tokens
    await refused(url, subprotocols=offer("pubsocket.v1", TOKEN))  # no "bearer" entry
    await refused(url, subprotocols=offer("pubsocket.v1", "Bearer", TOKEN))  # case matters


async def test_authorization_header_wins_over_the_offer(serve: Any) -> None:
    srv = await serve(who_app())
    url = f"{srv.ws}/ws/who"
    seen, _ = await who(url, additional_headers={"Authorization": f"Bearer {OTHER}"},
                        subprotocols=offer("pubsocket.v1", "bearer", TOKEN))
    assert seen["sub"] == "bob"
    seen, _ = await who(url, additional_headers={"Authorization": f"Bearer {OTHER}"},
                        subprotocols=offer("pubsocket.v1", "bearer", BAD))
    assert seen["sub"] == "bob"  # the offer is not read at all
    # An invalid header is final: no fallback to a good token in the offer.
    await refused(url, additional_headers={"Authorization": f"Bearer {BAD}"},
                  subprotocols=offer("pubsocket.v1", "bearer", TOKEN))


async def test_query_string_tokens_stay_refused(serve: Any) -> None:
    srv = await serve(who_app())
    await refused(f"{srv.ws}/ws/who?token={TOKEN}")
    await refused(f"{srv.ws}/ws/who?access_token={TOKEN}&bearer={TOKEN}")


async def test_open_route_reads_an_offered_token_else_anonymous(serve: Any) -> None:
    srv = await serve(who_app())
    first, chosen = await who(f"{srv.ws}/ws/open",
                              subprotocols=offer("bearer", TOKEN, "pubsocket.v1"))
    second, _ = await who(f"{srv.ws}/ws/open")
    assert chosen == "pubsocket.v1"  # "bearer" is listed by the handler, never chosen
    # A presented token is checked and used on open routes too (its topics claim
    # then limits the connection); without one the connection is anonymous.
    assert first["sub"] == "alice" and first["authenticated"] is True
    assert second["sub"] is None and second["authenticated"] is False
    assert second["claims_sub"] is None
    assert first["client_id"] != second["client_id"]


async def test_http_requests_get_a_principal_too(serve: Any) -> None:
    app = App(make_settings())

    @app.post("/whoami")
    async def whoami(request: Any, response: Any) -> Any:
        p = request.principal
        return response({"sub": p.sub, "api": p.is_api_key})

    srv = await serve(app)

    def post(headers: dict[str, str]) -> Any:
        import urllib.error
        import urllib.request
        req = urllib.request.Request(f"{srv.http}/whoami", data=b"{}", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code

    assert await asyncio.to_thread(post, {"Authorization": f"Bearer {TOKEN}"}) == {
        "sub": "alice", "api": False}
    assert await asyncio.to_thread(post, {"Authorization": f"Bearer {API_KEY}"}) == {
        "sub": "api_key", "api": True}
    # The subprotocol offer is an upgrade-only channel: plain HTTP ignores it.
    assert await asyncio.to_thread(post, {"Sec-WebSocket-Protocol": f"bearer, {TOKEN}"}) == 401


async def test_pubsub_endpoint_accepts_browser_auth_with_envelopes(serve: Any) -> None:
    app = App(make_settings())
    pubsub("/ws/chat", app=app, secured=True)
    srv = await serve(app)
    async with connect(f"{srv.ws}/ws/chat",
                       subprotocols=offer("pubsocket.v1", "bearer", TOKEN)) as ws:
        assert ws.protocol.subprotocol == "pubsocket.v1"
        await ws.send(json.dumps({"action": "subscribe", "topic": "room", "id": 1}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert (ack["type"], ack["id"], ack["topic"]) == ("ack", 1, "room")
    await refused(f"{srv.ws}/ws/chat", subprotocols=offer("pubsocket.v1", "bearer", BAD))


async def test_tokens_never_reach_the_logs(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = who_app()

    @app.get("/ws/boom")
    @secured()
    async def boom(request: Any, response: Any) -> None:
        await Websocket(request).connection(subprotocols=["pubsocket.v1"])
        raise RuntimeError("handler failed")  # the traceback is logged: no token in it

    srv = await serve(app)
    await who(f"{srv.ws}/ws/who", subprotocols=offer("pubsocket.v1", "bearer", TOKEN))
    await refused(f"{srv.ws}/ws/who", subprotocols=offer("pubsocket.v1", "bearer", BAD))
    await refused(f"{srv.ws}/ws/who?token={TOKEN}")
    await refused(f"{srv.ws}/ws/who", additional_headers={"Authorization": f"Bearer {BAD}"})
    async with connect(f"{srv.ws}/ws/boom",
                       subprotocols=offer("pubsocket.v1", "bearer", TOKEN)) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    # The test's own client logs its request headers at DEBUG: that is the client's
    # business. Everything the server side logged (pubsocket.*, websockets.server) counts.
    server_side = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in server_side)
    assert "handler failed" in text and "pubsocket.app" in {r.name for r in server_side}
    assert any(r.name.startswith("websockets.server") for r in server_side)
    for secret in (TOKEN, BAD, API_KEY, TOKEN.split(".")[2]):
        assert secret not in text


async def test_subprotocol_token_works_under_asgi() -> None:
    app = who_app()
    port = free_port()
    config = uvicorn.Config(ASGIApp(app), host="127.0.0.1", port=port, lifespan="on",
                            log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        url = f"ws://127.0.0.1:{port}"
        seen, chosen = await who(f"{url}/ws/who",
                                 subprotocols=offer("pubsocket.v1", "bearer", TOKEN))
        assert seen["sub"] == "alice" and chosen == "pubsocket.v1"
        seen, chosen = await who(f"{url}/ws/greedy", subprotocols=offer("bearer", TOKEN))
        assert chosen is None  # never echoed, also through the ASGI adapter
        with pytest.raises(websockets.InvalidStatus):
            async with connect(f"{url}/ws/who",
                               subprotocols=offer("pubsocket.v1", "bearer", BAD)):
                pass
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_request_claims_stay_a_plain_serializable_dict(serve: Any) -> None:
    app = App(make_settings())

    @app.get("/ws/claims")
    @secured()
    async def claims(request: Any, response: Any) -> None:
        ws = await Websocket(request).connection()
        assert type(request.claims) is dict
        await ws.send(response(request.claims).body.decode())  # orjson must accept it

    srv = await serve(app)
    async with connect(f"{srv.ws}/ws/claims", subprotocols=offer("bearer", TOKEN)) as ws:
        assert json.loads(await ws.recv())["sub"] == "alice"
