"""A Centrifuge connect token is charged to the app's per-address failed-authentication
budget, as an HTTP token is (web/limits.py): a spent address is closed with 3013
before its token is verified, and refused with 429 at the upgrade and stream open,
until the budget refills. Every test client is 127.0.0.1, so the refill is shown."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from pubsocket import App, pubsub
from pubsocket.auth import Authenticator, Principal
from tests.app.test_http import ahttp
from tests.centrifuge.conftest import PATH, token
from tests.centrifuge.test_sdk import sdk
from tests.centrifuge.test_wire import closed_with, replies
from tests.conftest import API_KEY, SECRET, make_settings


class Counting(Authenticator):
    """The app's authenticator, counting the connect tokens it verifies."""

    verified = 0

    def principal_of(self, token: str) -> Principal:
        Counting.verified += 1
        return super().principal_of(token)


async def serve_budget(serve: Any, rate: float, burst: int) -> Any:
    """A running server with a secured Centrifuge endpoint whose tokens are verified by
    `Counting` (reset), the address budget refilling `rate` a second up to `burst`."""
    app = App(make_settings(auth_failure_limit=rate, auth_failure_burst=burst))
    Counting.verified = 0
    pubsub(PATH, app=app, protocol="centrifuge", secured=True,
           authenticator=Counting(API_KEY, SECRET))
    return await serve(app)


def connect_with(tok: str) -> str:
    """The Centrifuge connect command carrying `tok`."""
    return json.dumps({"id": 1, "connect": {"token": tok}})


async def bad_connect(url: str, tok: str) -> tuple[int | None, str | None]:
    async with connect(url) as ws:
        await ws.send(connect_with(tok))
        return await closed_with(ws)


async def connects(url: str, tok: str) -> None:
    """A WebSocket connect with `tok` is answered `connect` (accepted)."""
    async with connect(url) as ws:
        await ws.send(connect_with(tok))
        assert "connect" in (await replies(ws, 1))[0]


async def upgrade_refused(url: str) -> Response:
    """The HTTP refusal of a WebSocket upgrade to `url` (it must be refused)."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url):
            pass
    return refused.value.response


async def test_bad_tokens_spend_the_address_then_it_is_refused_unverified(
        serve: Any) -> None:
    srv = await serve_budget(serve, rate=1, burst=3)
    url = srv.ws + PATH
    async with connect(url) as waiting:  # upgraded before the budget is spent
        forged = token("alice")[:-4] + "AAAA"  # bad signature
        for tok in ("not-a-jwt", forged, ""):  # malformed, forged, missing
            assert await bad_connect(url, tok) == (3500, "invalid token")
        assert Counting.verified == 2  # the missing one needed no verification
        # A valid token from the spent address: closed as too many, never verified.
        await waiting.send(connect_with(token("alice")))
        assert await closed_with(waiting) == (3013, "too many requests")
        assert Counting.verified == 2
    # A new upgrade and an emulated stream are refused before a session exists.
    refused = await upgrade_refused(url)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    status, _, _ = await ahttp("POST", srv.http + "/connection/http_stream",
                               connect_with(token("alice")).encode())
    assert status == 429
    assert Counting.verified == 2
    await asyncio.sleep(1.2)  # one token refills (1 a second)
    await connects(url, token("alice"))


async def test_expired_tokens_are_not_charged(serve: Any) -> None:
    # An SDK back from sleep sends its expired token, gets 109 and asks for a new one.
    srv = await serve_budget(serve, rate=0.1, burst=2)
    url = srv.ws + PATH
    for _ in range(4):
        async with connect(url) as ws:
            await ws.send(connect_with(token("alice", -10)))
            assert (await replies(ws, 1))[0]["error"]["code"] == 109
    await connects(url, token("alice"))


async def test_a_forged_refresh_token_is_charged(serve: Any) -> None:
    srv = await serve_budget(serve, rate=0.1, burst=1)
    url = srv.ws + PATH
    async with connect(url) as ws:
        await ws.send(connect_with(token("alice")))
        await replies(ws, 1)
        await ws.send(json.dumps({"id": 2, "refresh": {"token": "forged"}}))
        assert await closed_with(ws) == (3500, "invalid token")
    assert (await upgrade_refused(url)).status_code == 429


async def test_the_sdk_backs_off_while_spent_and_connects_after_the_refill(
        serve: Any) -> None:
    srv = await serve_budget(serve, rate=2, burst=2)
    url = srv.ws + PATH
    for _ in range(2):
        async with sdk(url, token="not-a-jwt") as (_client, events):
            assert (await events.next("disconnected")).code == 3500  # and stays so
    async with sdk(url, token=token("alice")) as (client, events):
        await events.next("connected", within=5)  # after the refill, by itself
        assert client.state.value == "connected"
    # While spent, each attempt was a 429 at the upgrade (an "error" event): no token
    # was verified, and the SDK retried with its backoff (0.05-0.3 s here), not in a loop.
    refused = [n for n, _ in events.seen].count("error")
    assert Counting.verified == 3 and 1 <= refused <= 40, (Counting.verified, refused)


async def test_bad_tokens_over_http_stream_spend_the_same_budget(serve: Any) -> None:
    srv = await serve_budget(serve, rate=0.1, burst=2)
    for _ in range(2):
        status, _, body = await ahttp("POST", srv.http + "/connection/http_stream",
                                      connect_with("forged").encode())
        assert status == 200 and b"3500" in body, body  # the disconnect push
    refused = await upgrade_refused(srv.ws + PATH)  # one budget for every transport
    assert refused.status_code == 429
    assert Counting.verified == 2
