"""An expired token (valid signature and claims, only ``exp`` passed) is refused at every
front door as before (401 "token expired"; Centrifuge: 109) but is not charged to the
peer address's failed-authentication budget (web/limits.py `charged`); a forged one is.
Until now only the Centrifuge connect spared expired tokens: HTTP charged them, so users
coming back after their tokens expired locked their shared address out.

A real server with a small budget and real clients (urllib, websockets, raw HTTP
streams); every client is 127.0.0.1, so all doors share one address's budget. The
budget refills at 1 per 100 s: nothing refills during a test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import websockets
from websockets.asyncio.client import connect

from pubsocket import App, pubsub, secured
from pubsocket.auth import Authenticator, Principal
from pubsocket.web.uni_sse import UNI_SSE_PATH, uni_sse
from tests.app.test_http import ahttp
from tests.conftest import API_KEY, SECRET, Running, make_settings
from tests.fallback.client import HttpStream

BURST = 3
AUTH = Authenticator(API_KEY, SECRET)
EXPIRED = "401 token expired"
FORGED = "401 bad signature"
SPENT = "429 too many failed authentications, retry later"


def doors_app(**changes: Any) -> App:
    """A secured route, the secured seed endpoint (upgrade, HTTP fallback), the API
    routes, secured Centrifuge (its emulated streams) and uni_sse, on a small budget."""
    app = App(make_settings(auth_failure_limit=0.01, auth_failure_burst=BURST, **changes))

    @secured()
    @app.get("/private")
    async def private(request: Any, response: Any) -> Any:
        return response({"sub": request.claims["sub"]})

    pubsub("/ws/chat", app=app, secured=True)
    pubsub("/connection/websocket", app=app, protocol="centrifuge", secured=True)
    uni_sse(app=app, secured=True)
    return app


def answer(status: int, body: bytes | bytearray) -> str:
    """``"<status> <message>"`` of a JSON refusal (the status alone for another body)."""
    try:
        return f"{status} {orjson.loads(body)['message']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return str(status)


async def route(srv: Running, tok: str) -> str:
    status, _, body = await ahttp("GET", srv.http + "/private",
                                  headers={"Authorization": f"Bearer {tok}"})
    return answer(status, body)


async def api(srv: Running, tok: str) -> str:
    status, _, body = await ahttp("POST", srv.http + "/api/publish",
                                  orjson.dumps({"topic": "room:a", "data": 1}),
                                  {"Authorization": f"Bearer {tok}"})
    return answer(status, body)


async def upgrade(srv: Running, tok: str) -> str:
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(srv.ws + "/ws/chat", open_timeout=5,
                           additional_headers={"Authorization": f"Bearer {tok}"}):
            pass
    return answer(info.value.response.status_code, info.value.response.body or b"")


async def subprotocol(srv: Running, tok: str) -> str:
    """A browser's upgrade: the token in the subprotocol offer."""
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(srv.ws + "/ws/chat", open_timeout=5,
                           subprotocols=["bearer", tok]):  # type: ignore[list-item]
            pass
    return answer(info.value.response.status_code, info.value.response.body or b"")


async def fallback(srv: Running, tok: str) -> str:
    status, _, body = await ahttp("POST", srv.http + "/ws/chat?transport=http_stream",
                                  b"[]", {"Authorization": f"Bearer {tok}",
                                          "Content-Type": "application/json"})
    return answer(status, body)


async def sse(srv: Running, tok: str) -> str:
    connect_ = quote(json.dumps({"token": tok, "subs": {"room:a": {}}}))
    status, _, body = await ahttp("GET", f"{srv.http}{UNI_SSE_PATH}?cf_connect={connect_}")
    return answer(status, body)


async def centrifuge_stream(srv: Running, tok: str) -> str:
    """A Centrifuge http_stream opened with a connect: 109 for an expired token (the SDK
    fetches a new one), a 3500 disconnect for a forged one, 429 once the budget is spent
    (the answers the tests map to EXPIRED, FORGED and SPENT)."""
    stream = await HttpStream.post(srv.port, "/connection/http_stream",
                                   orjson.dumps({"id": 1, "connect": {"token": tok}}),
                                   {"Content-Type": "application/json"})
    try:
        if stream.status != 200:
            return answer(stream.status, await stream.body())
        reply = await stream.line()
    finally:
        await stream.close()
    if reply.get("error", {}).get("code") == 109:
        return EXPIRED
    if reply.get("push", {}).get("disconnect", {}).get("code") == 3500:
        return FORGED
    return repr(reply)


Door = Callable[[Running, str], Awaitable[str]]
DOORS: dict[str, Door] = {"route": route, "api": api, "upgrade": upgrade,
                          "subprotocol": subprotocol, "fallback": fallback, "uni_sse": sse,
                          "centrifuge_stream": centrifuge_stream}


def expired() -> str:
    return AUTH.issue("alice", ttl=-10)


def forged() -> str:
    return AUTH.issue("alice")[:-4] + "AAAA"  # a bad signature


@pytest.mark.parametrize("door", DOORS)
async def test_expired_tokens_are_refused_but_not_charged(serve: Any, door: str) -> None:
    srv = await serve(doors_app())
    knock = DOORS[door]
    assert [await knock(srv, expired()) for _ in range(BURST + 3)] == [EXPIRED] * (BURST + 3)
    # The budget is whole: a forged token is still 401, not 429, BURST times; then 429.
    assert [await knock(srv, forged()) for _ in range(BURST + 1)] == [FORGED] * BURST + [SPENT]
    # And a spent address is refused before its tokens are verified, expired ones too.
    assert await knock(srv, expired()) == SPENT


async def test_all_doors_spare_expired_tokens_together(serve: Any) -> None:
    # Many users behind one NAT coming back online: every door, one address.
    srv = await serve(doors_app())
    for name, knock in DOORS.items():
        assert [await knock(srv, expired()) for _ in range(2)] == [EXPIRED] * 2, name
    assert await route(srv, forged()) == FORGED  # 7 doors x 2 expired > BURST


async def test_a_secured_route_spares_expired_tokens_under_asgi_too(serve_any: Any) -> None:
    srv = await serve_any(doors_app())
    assert [await route(srv, expired()) for _ in range(BURST + 2)] == [EXPIRED] * (BURST + 2)
    assert [await route(srv, forged()) for _ in range(BURST + 1)] == [FORGED] * BURST + [SPENT]


class Counting(Authenticator):
    """Counts the requests' tokens it verifies."""

    verified = 0

    def authenticate(self, authorization: Sequence[str],
                     offered: Sequence[str] = ()) -> Principal:
        self.verified += 1
        return super().authenticate(authorization, offered)


async def test_an_expired_header_is_verified_once(serve: Any) -> None:
    # An expired token never becomes valid again; since it spends no budget, a flood
    # with one would otherwise cost a signature check per request for ever.
    app = doors_app()
    app.auth = counting = Counting(API_KEY, SECRET)
    srv = await serve(app)
    old = expired()
    for knock in (route, api, upgrade, fallback):
        assert [await knock(srv, old) for _ in range(3)] == [EXPIRED] * 3
    assert counting.verified == 1
    # Another expired token is verified (once), a valid one as ever.
    carol = AUTH.issue("carol", ttl=-10)
    assert [await route(srv, carol) for _ in range(2)] == [EXPIRED] * 2
    status, _, _ = await ahttp("GET", srv.http + "/private",
                               headers={"Authorization": f"Bearer {AUTH.issue('bob')}"})
    assert (status, counting.verified) == (200, 3)
    # Two Authorization headers are refused for that, not as the remembered token.
    assert await route_twice(srv, old) == "401 exactly one Authorization header is allowed"


async def route_twice(srv: Running, tok: str) -> str:
    """GET /private with `tok` in two Authorization headers (raw HTTP: urllib merges)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(f"GET /private HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     f"Authorization: Bearer {tok}\r\nAuthorization: Bearer {tok}\r\n"
                     f"\r\n".encode())
        async with asyncio.timeout(5):
            raw = await reader.read(-1)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return answer(int(head.split()[1]), body)


async def test_a_wrong_api_key_is_still_charged(serve: Any) -> None:
    # The server API takes only the API key, which never expires: every wrong one pays.
    srv = await serve(doors_app())
    statuses = []
    for _ in range(BURST + 1):
        status, _, _ = await ahttp("POST", srv.http + "/api/info", b"{}",
                                   {"X-API-Key": "wrong-key"})
        statuses.append(status)
    assert statuses == [401] * BURST + [429]
